"""Exceptions with messages meant for users: each names the file, key or parameter and what to do.

Library errors speak of API parameters (``inception_weights``); an error may carry the name in
``param`` so that the CLI can name its flag instead (``--inception-weights``).
"""
from __future__ import annotations


class LafitebenchError(Exception):
    """Base class of every error this package raises on purpose.

    Args:
        message: what went wrong and what to do.
        param: the API parameter the error is about (``"device"``, ``"kid_subset_size"``), if any.
        short: the reason in a few words, for lists such as the metrics left out
            (``"weights file ViT-B-32.pt not available here"``); the message is used when absent.
    """

    def __init__(self, *args: object, param: str | None = None, short: str | None = None) -> None:
        super().__init__(*args)
        self.param = param
        self.short = short


class InputError(LafitebenchError, ValueError):
    """Bad user input: a file, option or data set that cannot be used as given."""


class WeightsError(LafitebenchError):
    """A weights file is missing, corrupt, has the wrong hash, or cannot be downloaded."""


class CheckpointError(LafitebenchError):
    """A checkpoint is unsafe, truncated, or does not match the architecture."""
