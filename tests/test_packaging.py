"""Packaging: the wheel holds the zoo manifests and the paper tables, and works outside the checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_every_package_is_listed_in_pyproject():
    listed = set(_toml(REPO / "pyproject.toml")["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lafitebench").rglob("__init__.py")}
    assert on_disk <= listed, f"packages missing from pyproject.toml: {sorted(on_disk - listed)}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The wheel built from a copy of the source tree, installed with --target (no dependencies)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("lafitebench", "zoo", "reports"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "runs"))
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True, capture_output=True, text=True, timeout=600)
    wheel = next(dist.glob("lafitebench-*.whl"))
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600)
    return wheel, target


def _run(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "COLUMNS": "120"}
    env.pop("LAFITEBENCH_ZOO", None)
    env.pop("LAFITEBENCH_REPORTS", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_wheel_contains_manifests_and_tables(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for m in (REPO / "zoo").glob("*.toml"):
        assert f"lafitebench/resources/zoo/{m.name}" in names
    assert "lafitebench/resources/reports/paper_tables.csv" in names
    assert "lafitebench/data/coco_mini/captions.json" in names


@pytest.mark.slow
def test_installed_wheel_works_from_any_directory(installed, tmp_path):
    _, target = installed
    r = _run(target, tmp_path, "-c", "import lafitebench, lafitebench.settings as s; "
                                     "print(lafitebench.__file__); print(s.data_dir('zoo')); print(s.data_dir('reports'))")
    assert r.returncode == 0, r.stderr
    where, zoo_dir, reports_dir = r.stdout.split()
    assert where.startswith(str(target)) and zoo_dir.startswith(str(target)) and reports_dir.startswith(str(target))
    r = _run(target, tmp_path, "-m", "lafitebench", "zoo", "list")
    assert r.returncode == 0, r.stderr
    assert "lafite-coco-g" in r.stdout and "lafite-cc3m-zeroshot" in r.stdout
    r = _run(target, tmp_path, "-m", "lafitebench", "zoo", "show", "lafite-coco-nn")
    assert r.returncode == 0 and '"variant": "nn"' in r.stdout, r.stderr
    r = _run(target, tmp_path, "-m", "lafitebench", "report", "--table", "lang_free")
    assert r.returncode == 0 and "Lafite" in r.stdout, r.stderr
