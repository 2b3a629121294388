"""Split the Event-ReId v2 chunks into the reference's train and test sets.

    python -m train.reid_utils.split_train_test --data_dir ./output/Event_ReId_v2/ \
        [--out_dir ./data/Event_ReId_v2/]

Identities 2, 5, 8, ..., 32 are the test people, the others train. Train gets every chunk,
test every 5th (sorted by name, starting at the first), copied flat into OUT_DIR/train/ and
OUT_DIR/test/, the layout `--dataset reid` reads.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError

TEST_IDS = frozenset(range(2, 33, 3))  # 2, 5, 8, ..., 32
TEST_STEP = 5


def split(data_dir: Path, out_dir: Path) -> dict[str, int]:
    if not data_dir.is_dir():
        raise AnonyNoiseError(f"{data_dir}: no such folder (run train.reid_utils.event_partition "
                              "first)")
    ids = sorted(d for d in data_dir.iterdir() if d.is_dir() and d.name.isdigit())
    if not ids:
        raise AnonyNoiseError(f"{data_dir}: no identity folders (001, 002, ...)")
    counts = {"train": 0, "test": 0}
    for ident in ids:
        part = "test" if int(ident.name) in TEST_IDS else "train"
        step = TEST_STEP if part == "test" else 1
        (out_dir / part).mkdir(parents=True, exist_ok=True)
        # a .partial folder is what a killed event_partition left behind, not a camera
        for cam in sorted(d for d in ident.iterdir() if d.is_dir()
                          and not d.name.endswith(".partial")):
            files = sorted(f for f in cam.iterdir() if f.suffix == ".txt")
            for f in files[::step]:
                target = out_dir / part / f.name
                tmp = target.with_name(target.name + ".partial")
                shutil.copyfile(f, tmp)
                tmp.replace(target)
                counts[part] += 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Split Event-ReId v2 chunks into train and test")
    ap.add_argument("--data_dir", default="./output/Event_ReId_v2/")
    ap.add_argument("--out_dir", default="./data/Event_ReId_v2/")
    args = ap.parse_args(argv)
    counts = split(Path(args.data_dir), Path(args.out_dir))
    print(f"{counts['train']} train and {counts['test']} test chunks in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="split_train_test"))
