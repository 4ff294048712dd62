"""Shared test fixtures.

Real assets are found through ``LAFITEBENCH_SHARED`` or ``../shared`` beside the repository
root. Tests marked ``real_assets`` fail (not skip) when CI=true and the folder is missing, so
a CI run can never silently skip them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """Whether this is a CI run (``CI`` set to anything but empty): real-asset and browser tests
    then fail instead of skipping when their inputs are missing."""
    return bool(os.environ.get("CI"))


def _shared_dir() -> Path | None:
    env = os.environ.get("LAFITEBENCH_SHARED")
    cand = Path(env) if env else REPO_ROOT.parent / "shared"
    return cand if (cand / "assets").is_dir() else None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ``shared/`` folder with real assets; fails in CI and skips elsewhere when absent."""
    d = _shared_dir()
    if d is None:
        if in_ci():
            pytest.fail("shared assets not found: set LAFITEBENCH_SHARED or put shared/ beside the repo")
        pytest.skip("shared assets not found (set LAFITEBENCH_SHARED)")
    return d


@pytest.fixture(autouse=True)
def _offline_and_isolated_cache(tmp_path_factory, monkeypatch):
    """Every test runs offline with a private cache, so nothing reaches the network or ~/.cache."""
    monkeypatch.setenv("LAFITEBENCH_OFFLINE", "1")
    monkeypatch.setenv("LAFITEBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("LAFITEBENCH_WEIGHTS", raising=False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def pytest_collection_modifyitems(config, items):
    """Every test that reads ``../shared`` (its fixtures reach ``shared_dir``) is marked
    ``real_assets``, so ``-m real_assets`` / ``-m "not real_assets"`` select exactly them."""
    for item in items:
        if "shared_dir" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("real_assets"):
            item.add_marker(pytest.mark.real_assets)
