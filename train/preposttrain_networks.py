"""python -m train.preposttrain_networks: the reference's pre- and post-training command.

    python -m train.preposttrain_networks --ename dvsg_pretrain_target --dataset dvsg \
        --network resnet50 --store_weight --dataset_path ./data/DVSGesture \
        --batch_size 32 --lr0 1e-4 --epochs 200 --anno_type target
"""

from __future__ import annotations

import logging
import sys

from anonynoise.cli_support import run
from anonynoise.memory import keep_freed_memory
from train.options import check, preposttrain_parser
from train.stages import preposttrain


def main(argv=None) -> int:
    keep_freed_memory()
    ap = preposttrain_parser()
    args = check(ap.parse_args(argv), ap)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    preposttrain(args)
    return 0


def console() -> int:
    return run(main, prog="anonynoise-preposttrain-networks")


if __name__ == "__main__":
    sys.exit(run(main, prog="preposttrain_networks"))
