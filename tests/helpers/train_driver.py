"""Driver for tests/test_train.py under torchrun: register the test-only open_clip config, then
run :func:`lafitebench.jobs.train.run_train` with the options in ARGS.json.

Usage: train_driver.py ARGS.json  (``{"clip_config": path, "train": {TrainConfig fields}, "delay_rank1": s}``)
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import open_clip
import torch

from lafitebench.jobs.train import run_train
from lafitebench.runtime import distributed
from lafitebench.training.config import TrainConfig

if __name__ == "__main__":
    args = json.loads(Path(sys.argv[1]).read_text())
    open_clip.add_model_config(args["clip_config"])
    distributed.init(torch.device("cpu"))
    if distributed.rank() == 1 and args.get("delay_rank1"):  # a slower start-up of one process
        time.sleep(float(args["delay_rank1"]))
    run_train(TrainConfig(**args["train"]))
    distributed.shutdown()
