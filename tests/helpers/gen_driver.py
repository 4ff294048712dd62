"""Driver for tests/test_generate.py: register a test-only open_clip config, then run the CLI.

Usage: python gen_driver.py CLIP_CONFIG.json ARGS.json — ARGS.json is the list of CLI arguments
(a file, so that torchrun does not read them as its own options); under torchrun each rank
registers the config and runs the same command.
"""
from __future__ import annotations

import sys

import open_clip

from lafitebench.cli import app

if __name__ == "__main__":
    import json
    from pathlib import Path

    open_clip.add_model_config(sys.argv[1])
    app(json.loads(Path(sys.argv[2]).read_text()), prog_name="lafitebench")
