"""Train the shipped anonymizer from its recipe: clean nets, then the adversarial pipeline.

    python -m train.train_anonymizer --config train/configs/default_anonymizer.toml --out DIR

The recipe (train.recipe, one TOML file) is the one the shipped model records; this trains it
and evaluates nothing: the privacy report (`python -m experiments.privacy_report --checkpoint
DIR/anonymizer.pt`) measures what fresh attackers get from its output. DIR receives
anonymizer.pt (the checkpoint the stream loads with --model), clean-target.pt and
clean-reid.pt (the nets the pipeline started from) and train.json (what was run, the
pipeline's per-epoch losses, how long it took). The benchmark goes to --data, shared
between runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

from anonynoise.atomic import atomic_output
from anonynoise.checkpoint import save_checkpoint
from anonynoise.cli_support import run
from anonynoise.memory import keep_freed_memory
from train.recipe import (Recipe, anonymizer_record, load_recipe, recipe_table,
                          representation, train_anonymizer, train_clean_nets, training_data)

log = logging.getLogger(__name__)
STAGE = "train.train_anonymizer"


def train(recipe: Recipe, out: Path, data_dir: Path, command: str) -> dict:
    """Train the recipe's nets into `out`; returns what train.json records."""
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    d = training_data(recipe, data_dir, out / "windows")
    target_clean, reid_clean = train_clean_nets(recipe, d)
    for net, name in ((target_clean, "target"), (reid_clean, "reid")):
        save_checkpoint(out / f"clean-{name}.pt", net, representation(),
                        {"stage": f"{STAGE} clean {name} net", "trained_on":
                         "synthetic people only", "recipe": recipe_table(recipe)})
    anon, _, _, history = train_anonymizer(recipe, d, target_clean, reid_clean)
    record = anonymizer_record(recipe, STAGE, command=command)
    save_checkpoint(out / "anonymizer.pt", anon, representation(), record)  # atomic
    summary = {"command": command, "recipe": recipe_table(recipe),
               "benchmark": str(d["root"]), "training_clips": len(d["clip_w"]),
               "pipeline": history, "seconds": round(time.time() - started, 1),
               "outputs": ["anonymizer.pt", "clean-target.pt", "clean-reid.pt"]}
    with atomic_output(out / "train.json") as part:
        part.write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> int:
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True, help="the recipe (train/configs/*.toml)")
    ap.add_argument("--out", required=True, help="the folder for anonymizer.pt and train.json")
    ap.add_argument("--data", default="runs/benchmarks",
                    help="where the synthetic benchmark is generated (reused when the same)")
    ap.add_argument("--device", default=None, help="overrides the recipe's device")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = load_recipe(args.config)
    if args.device is not None:
        recipe = replace(recipe, device=args.device)
    command = " ".join(["python -m train.train_anonymizer",
                        *(sys.argv[1:] if argv is None else argv)])
    summary = train(recipe, Path(args.out), Path(args.data), command)
    print(f"wrote {Path(args.out) / 'anonymizer.pt'} in {summary['seconds'] / 60:.1f} minutes")
    return 0


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the benchmark generator's workers are stopped too
    sys.exit(run(main, prog="train_anonymizer", sigterm_interrupts=True))
