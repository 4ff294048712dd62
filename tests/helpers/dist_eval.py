"""Driver for tests/test_distributed.py: one evaluation, run alone or under torchrun.

Usage: python dist_eval.py SPEC.json OUT.json — SPEC holds the sample/reference folders and the
EvalConfig fields (plus an optional open_clip model config to register). Rank 0 writes the
result rows (floats at full precision) and the provenance's distributed block to OUT.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from lafitebench.data.sources.folder import folder_set, sample_set
from lafitebench.metrics.config import EvalConfig
from lafitebench.metrics.engine import evaluate
from lafitebench.runtime import distributed


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("clip_config"):
        import open_clip

        open_clip.add_model_config(spec["clip_config"])
    if spec.get("test_backbones"):
        sys.path.insert(0, str(Path(__file__).parents[1]))
        from helpers.tiny_backbones import register_specs

        register_specs()
    cfg = EvalConfig(**spec["config"])
    samples = sample_set(spec["samples"], resolution=cfg.resolution)
    reference = folder_set(spec["reference"], resolution=cfg.resolution) if spec.get("reference") else None
    result = evaluate(samples, reference, cfg)
    if distributed.is_main():
        rows = result.table.to_dict(orient="records")
        Path(out_path).write_text(json.dumps({"rows": rows, "distributed": result.provenance["distributed"],
                                              "forwards": result.provenance.get("inception_pass")}))
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
