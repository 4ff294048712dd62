"""The README and docs/ cannot rot: shell blocks marked ``bash run`` are executed as written
(offline, ``../shared`` as in a dev checkout), and every ``lafitebench`` command in any shell
block must name an existing command and only options that command declares."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer

from lafitebench.cli import app

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(bash|sh|console)([^\n]*)\n(.*?)^```", re.S | re.M)


def _blocks(marker: str | None = None) -> list[tuple[str, str]]:
    """(page:line, text) of the shell blocks of every page; only those marked ``marker`` if given."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if marker is None or m.group(2).split() == [marker]:
                out.append((f"{page.name}:{text[:m.start()].count(chr(10)) + 1}", m.group(3)))
    return out


def _commands(block: str) -> list[list[str]]:
    """The ``lafitebench`` invocations of a shell block, as argument lists after the program name."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("#") or not line:
            continue
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part.split(">")[0])
            except ValueError:
                continue
            while words and re.match(r"^[A-Z_]+=", words[0]):
                words.pop(0)
            if words[:1] == ["lafitebench"]:
                found.append(words[1:])
            elif words[:1] == ["torchrun"] and "lafitebench" in words and words[words.index("lafitebench") - 1] == "-m":
                found.append(words[words.index("lafitebench") + 1:])
    return found


def test_the_docs_have_marked_and_checked_blocks():
    assert len(_blocks("run")) >= 2
    assert sum(len(_commands(b)) for _, b in _blocks()) >= 40


@pytest.mark.parametrize("where, block", _blocks(), ids=[w for w, _ in _blocks()])
def test_every_documented_command_and_option_exists(where, block):
    root = typer.main.get_command(app)
    for args in _commands(block):
        cmd, rest = root, list(args)
        while hasattr(cmd, "commands") and rest and rest[0] in cmd.commands:
            cmd = cmd.commands[rest.pop(0)]
        assert not hasattr(cmd, "commands") or not rest or rest[0].startswith("-"), \
            f"{where}: `lafitebench {' '.join(args)}`: no command {rest[0]!r}"
        declared = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
        for tok in rest:
            if tok.startswith("--"):
                assert tok.split("=", 1)[0] in declared, f"{where}: `lafitebench {' '.join(args)}`: no option {tok}"


@pytest.mark.real_assets
@pytest.mark.parametrize("where, block", _blocks("run"), ids=[w for w, _ in _blocks("run")])
def test_marked_blocks_run_as_written(where, block, shared_dir, tmp_path):
    env = {**os.environ, "LAFITEBENCH_OFFLINE": "1", "COLUMNS": "80"}
    script = block.replace("../shared", str(shared_dir))
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"{where}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr
