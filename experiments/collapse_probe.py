"""Why does the adversarial pipeline collapse with the Re-ID push off? (issue 38, point 3)

At 110 people the pipeline's gesture net went over the edge within an epoch (its
cross-entropy 3 to 4, chance 2.4) while the dual multiplier held the Re-ID push off in most
steps; the rollback hides it by undoing the epoch. This probe trains the recipe's pipeline on
one seed of a report's benchmark, from that report's clean nets, a few epochs for each
variant, with every step traced (train.composite's on_step), so the variants that collapse
and those that do not can be told apart:

    recipe           the recipe as it is
    push off         the Re-ID weight 0 (only the gesture terms and the noise budget)
    no clean target  the frozen clean gesture net's term off (clean_target_weight 0)
    neither          both off: the anonymizer only helps the pipeline's gesture net
    ..., clamp gradient   the events round trip's backward stopped below zero (a value
                     with no event gets no gradient), with the push off or as the recipe

    python -m experiments.collapse_probe --recipe train/configs/pool_anonymizer.toml \\
        --data runs/curve-pool --seed 1 --epochs 2 --out experiments/reports/collapse.md

The data folder is a privacy report's --data: the benchmark, and DATA/seedN with the clean
nets (clean-target.pt, clean-reid.pt) and the windows' caches. Trains no product model.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from experiments.privacy_study import load_clean_nets
from experiments.report import write_json
from train.composite import RECENT_STEPS
from train.recipe import load_recipe, train_anonymizer, training_data

log = logging.getLogger(__name__)
VARIANTS = {"recipe": {}, "push off": {"reid_weight": 0.0},
            "no clean target": {"clean_target_weight": 0.0},
            "neither": {"reid_weight": 0.0, "clean_target_weight": 0.0},
            # the round trip's gradient stopped below zero (train.event_domain)
            "push off, clamp gradient": {"reid_weight": 0.0, "round_trip_gradient": "clamp"},
            "recipe, clamp gradient": {"round_trip_gradient": "clamp"}}


def trace_summary(trace: list[dict], chance: float) -> list[dict]:
    """Per epoch: the gesture net's CE (mean, and its ~RECENT_STEPS moving average at the
    end and at its highest), the frozen clean net's CE, the anonymizer's own events per
    input event (mean, highest), the first step whose moving average passed chance."""
    out = []
    for epoch in sorted({t["epoch"] for t in trace}):
        steps = [t for t in trace if t["epoch"] == epoch]
        recent, high, over = None, -math.inf, None
        for t in steps:
            recent = t["loss_target"] if recent is None else \
                recent + (t["loss_target"] - recent) / RECENT_STEPS
            high = max(high, recent)
            if over is None and recent > chance:
                over = t["step"]
        uncapped = [t["uncapped_event_rate_ratio"] for t in steps]
        out.append({"epoch": epoch + 1, "steps": len(steps),
                    "loss_target": float(np.mean([t["loss_target"] for t in steps])),
                    "recent_end": recent, "recent_high": high, "first_over_chance": over,
                    "loss_clean_target": float(np.nanmean(
                        [t["loss_clean_target"] for t in steps]))
                    if any(not math.isnan(t["loss_clean_target"]) for t in steps) else None,
                    "uncapped_mean": float(np.mean(uncapped)),
                    "uncapped_high": float(np.max(uncapped)),
                    "push_on": float(np.mean([t["reid_weight"] > 0 for t in steps]))})
    return out


def probe(recipe_path: Path, data_dir: Path, seed: int, epochs: int,
          variants: list[str], done: Callable[[dict], None] = lambda result: None) -> dict:
    """Each variant trained in turn; `done` gets the result so far after each."""
    base = load_recipe(recipe_path)
    # the recipe's seed reaches its pipeline (Recipe.__post_init__)
    base = replace(base, seed=seed, pipeline=replace(base.pipeline, epochs=epochs,
                                                     rollback=False))
    seed_dir = data_dir / f"seed{seed}"
    for name in ("clean-target.pt", "clean-reid.pt"):
        if not (seed_dir / name).is_file():
            raise AnonyNoiseError(f"{seed_dir / name}: missing (run the report's clean nets "
                                  "first, or --clean-from into this folder)")
    d = training_data(base, data_dir, seed_dir, 1)
    results: dict = {}
    result = {"recipe": str(recipe_path), "seed": seed, "epochs": epochs,
              "chance": math.log(len(np.unique(d["t_clip"]))), "variants": results}
    target_clean, reid_clean = load_clean_nets(seed_dir, base.device)  # copied by each training
    for name in variants:
        recipe = replace(base, pipeline=replace(base.pipeline, **VARIANTS[name]))
        trace: list[dict] = []
        started = time.time()
        history = train_anonymizer(recipe, d, target_clean, reid_clean, trace.append)[3]
        results[name] = {"pipeline": dict(VARIANTS[name]),
                         "epochs": trace_summary(trace, result["chance"]), "history": history,
                         "minutes": round((time.time() - started) / 60, 1), "trace": trace}
        log.info("%s: %s", name, json.dumps(results[name]["epochs"]))
        done(result)
    return result


def markdown(result: dict, command: str) -> str:
    lines = ["# Why the pipeline collapses with the Re-ID push off (a study: nothing shipped)",
             "", f"Generated by `{command}`. Seed {result['seed']}, {result['epochs']} "
             "pipeline epochs a variant, no rollback, from the report's clean nets; chance "
             f"is a cross-entropy of {result['chance']:.2f}.", "",
             "| variant | epoch | gesture CE (mean) | moving CE at the end / highest | first "
             "step over chance | clean net's CE | anonymizer's own events / in (mean / "
             "highest) | steps with the push on |", "|---|---|---|---|---|---|---|---|"]
    for name, r in result["variants"].items():
        for e in r["epochs"]:
            clean = "" if e["loss_clean_target"] is None else f"{e['loss_clean_target']:.3f}"
            lines.append(
                f"| {name} | {e['epoch']} | {e['loss_target']:.3f} | {e['recent_end']:.3f} / "
                f"{e['recent_high']:.3f} | {e['first_over_chance'] or ''} | {clean} | "
                f"{e['uncapped_mean']:.2f} / {e['uncapped_high']:.2f} | {e['push_on']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="collapse_probe", description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a privacy report's --data")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", type=Path, required=True, help="the report (.md; .json beside)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.epochs < 1:
        raise AnonyNoiseError("--epochs must be at least 1")
    command = "python -m experiments.collapse_probe " + shlex.join(
        argv if argv is not None else sys.argv[1:])

    def write(result: dict) -> None:
        write_json(args.out.with_suffix(".json"), result)
        args.out.write_text(markdown(result, command))

    probe(args.recipe, args.data, args.seed, args.epochs, args.variants, write)
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, prog="collapse_probe", sigterm_interrupts=True))
