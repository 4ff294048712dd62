"""Exceptions with messages meant for users: each names the file, key or option and what to do."""


class LafitebenchError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(LafitebenchError, ValueError):
    """Bad user input: a file, option or data set that cannot be used as given."""


class WeightsError(LafitebenchError):
    """A weights file is missing, corrupt, has the wrong hash, or cannot be downloaded."""


class CheckpointError(LafitebenchError):
    """A checkpoint is unsafe, truncated, or does not match the architecture."""
