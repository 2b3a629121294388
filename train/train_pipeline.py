"""python -m train.train_pipeline: the reference's adversarial pipeline command.

    python -m train.train_pipeline --ename dvsg_pipeline --dataset dvsg --network resnet50 \
        --store_weight --dataset_path ./data/DVSGesture --batch_size 32 --lr0 5e-4 \
        --lr0_helper 1e-3 --epochs 300 --target_weights T.pt --id_weights ID.pt
"""

from __future__ import annotations

import logging
import sys

from anonynoise.cli_support import run
from anonynoise.memory import keep_freed_memory
from train.options import check, pipeline_parser
from train.stages import pipeline


def main(argv=None) -> int:
    keep_freed_memory()
    ap = pipeline_parser()
    args = check(ap.parse_args(argv), ap)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pipeline(args)
    return 0


def console() -> int:
    return run(main, prog="anonynoise-train-pipeline")


if __name__ == "__main__":
    sys.exit(run(main, prog="train_pipeline"))
