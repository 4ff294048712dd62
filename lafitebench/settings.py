"""Locations and switches that come from the environment (one place, so docs and code agree).

| variable | meaning |
| --- | --- |
| ``LAFITEBENCH_CACHE`` | cache root (default ``~/.cache/lafitebench``): downloaded weights, reference statistics |
| ``LAFITEBENCH_WEIGHTS`` | a folder searched for weights files by file name before the cache |
| ``LAFITEBENCH_OFFLINE`` | ``1`` forbids downloads: a missing file is an error that says where to put it |
| ``LAFITEBENCH_ZOO`` | a folder of model manifests instead of the bundled ``zoo/`` |
| ``LAFITEBENCH_REPORTS`` | a folder holding ``paper_tables.csv`` instead of the bundled ``reports/`` |
| ``LAFITEBENCH_ALLOW_MODIFIED_WEIGHTS`` | ``1`` accepts a file named like an official weights file whose hash differs (recorded in results) |
| ``LAFITEBENCH_SHARED`` | (tests) the folder of real test assets, default ``../shared`` |
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE = "LAFITEBENCH_CACHE"
ENV_WEIGHTS = "LAFITEBENCH_WEIGHTS"
ENV_OFFLINE = "LAFITEBENCH_OFFLINE"
ENV_ALLOW_MODIFIED = "LAFITEBENCH_ALLOW_MODIFIED_WEIGHTS"
ENV_ZOO = "LAFITEBENCH_ZOO"
ENV_REPORTS = "LAFITEBENCH_REPORTS"

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def cache_dir() -> Path:
    """Root of the user cache (weights, reference statistics)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "lafitebench"


def weights_dir() -> Path | None:
    """The folder named by ``LAFITEBENCH_WEIGHTS``, if set."""
    env = os.environ.get(ENV_WEIGHTS)
    return Path(env).expanduser() if env else None


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def allow_modified_weights() -> bool:
    """True when ``LAFITEBENCH_ALLOW_MODIFIED_WEIGHTS`` accepts official-named files with another hash."""
    return _flag(ENV_ALLOW_MODIFIED)


def offline() -> bool:
    """True when downloads are forbidden by ``LAFITEBENCH_OFFLINE``."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


def data_dir(name: str) -> Path:
    """The folder of bundled data ``name`` (``"zoo"`` or ``"reports"``).

    Order: the environment variable (``LAFITEBENCH_ZOO`` / ``LAFITEBENCH_REPORTS``), the copy
    inside an installed wheel (``lafitebench/resources/<name>``), the checkout's top-level
    ``<name>/`` (editable installs and source trees).
    """
    env = os.environ.get({"zoo": ENV_ZOO, "reports": ENV_REPORTS}.get(name, ""), "")
    if env:
        return Path(env).expanduser()
    bundled = PACKAGE_DIR / "resources" / name
    return bundled if bundled.is_dir() else REPO_ROOT / name
