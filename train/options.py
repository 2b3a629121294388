"""The command lines of the seed-compatible scripts: the reference's flags, meanings and
defaults (so its README's commands run as written), then ours."""

from __future__ import annotations

import argparse
import os
import sys

from train.datasets import DATASETS

NETWORKS = ("resnet18", "resnet34", "resnet50")


def _reference_flags(ap: argparse.ArgumentParser, helper_lr: bool) -> None:
    g = ap.add_argument_group("the reference's flags")
    g.add_argument("--epochs", default=30, type=int, help="number of total epochs (30)")
    g.add_argument("--batch_size", default=16, type=int, help="batch size (16)")
    g.add_argument("--num_workers", default=6, type=int,
                   help="data loading processes (6; 0 loads in the main process)")
    g.add_argument("--dataset", default=None, choices=DATASETS, required=True,
                   help="dvsg, see, reid (Event-ReId v2) or synth (our synthetic benchmark)")
    g.add_argument("--dataset_path", default="./data/DVSGesture",
                   help="dataset root (default ./data/DVSGesture, the reference's)")
    g.add_argument("--network", default=None, choices=NETWORKS,
                   help="ClassNet backbone (resnet50; given weights decide when omitted)")
    g.add_argument("--lr0", default=1e-4, type=float, help="learning rate (1e-4)")
    if helper_lr:
        g.add_argument("--lr0_helper", default=1e-4, type=float,
                       help="learning rate of the target and Re-ID nets (1e-4)")
    g.add_argument("--ename", default="experiment", help="experiment name")
    g.add_argument("--resume", default=None, help="a state.pt written by an earlier run")
    g.add_argument("--store_weight", action="store_true",
                   help="accepted for compatibility: checkpoints are always written to --out")
    g.add_argument("--target_weights", default=None, help="target ClassNet weights")
    g.add_argument("--id_weights", default=None, help="Re-ID ClassNet weights")
    g.add_argument("--anon_weights", default=None, help="anonymizer weights")
    g.add_argument("--denoise_weights", default=None, help="denoiser weights")
    g.add_argument("--val_only", action="store_true", help="evaluate, do not train")
    g.add_argument("--noise_std", default=1.0, type=float, help="std of the input noise (1.0)")


def _our_flags(ap: argparse.ArgumentParser) -> None:
    g = ap.add_argument_group("beyond the reference")
    g.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda")
    g.add_argument("--out", default=None, help="output folder (runs/<ename>/)")
    g.add_argument("--window_ms", default=None, type=float,
                   help="train on windows of this length, as the stream cuts them, instead of "
                        "whole samples (dvsg, synth)")
    g.add_argument("--event_domain", action="store_true",
                   help="anonymize through the tensor -> events -> tensor round trip the stream "
                        "uses (straight-through gradient)")
    g.add_argument("--size", default=None, type=int,
                   help="shrink inputs to SIZE x SIZE (dvsg, synth; quick runs)")
    g.add_argument("--subset", default=None, type=float,
                   help="train on this fraction of the training samples (quick runs)")
    g.add_argument("--seed", default=42, type=int, help="training seed (42, the reference's)")


def _prog(module: str) -> str:
    """The console script's name when run as one, else the reference's `python -m` form."""
    name = os.path.basename(sys.argv[0])
    return name if name.startswith("anonynoise-") else f"python -m {module}"


def preposttrain_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=_prog("train.preposttrain_networks"),
        description="Pre-train the target or Re-ID ClassNet on clean data, or post-train an "
                    "attacker behind a frozen anonymizer (optionally with a denoiser).")
    _reference_flags(ap, helper_lr=False)
    g = ap.add_argument_group("the reference's flags (pre/post)")
    g.add_argument("--anno_type", default="target", choices=("target", "id"))
    g.add_argument("--prepostmode", default="pre", choices=("pre", "post"))
    g.add_argument("--class_weights", default=None,
                   help="initial ClassNet weights (post: the pipeline's target or Re-ID net)")
    g.add_argument("--denoisenet", action="store_true", help="put a denoiser before the ClassNet")
    _our_flags(ap)
    o = ap.add_argument_group("beyond the reference (post)")
    o.add_argument("--denoise_width", default=128, type=int, help="denoiser width (128)")
    o.add_argument("--denoise_depth", default=15, type=int, help="denoiser depth (15)")
    return ap


def pipeline_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=_prog("train.train_pipeline"),
        description="Train the anonymizer adversarially: keep the task, defeat the Re-ID net.")
    _reference_flags(ap, helper_lr=True)
    _our_flags(ap)
    g = ap.add_argument_group("beyond the reference (pipeline)")
    g.add_argument("--anonnet", default="paper", choices=("paper", "light"),
                   help="the paper's anonymizer or the light one the stream ships (paper)")
    g.add_argument("--reid_weight", default=1.0, type=float,
                   help="weight of the Re-ID term in the anonymizer's loss (1, the reference)")
    g.add_argument("--noise_budget", default=None, type=float,
                   help="at most this many anonymized events per input event; more is "
                        "penalised (the reference has no bound)")
    return ap


def check(args: argparse.Namespace, ap: argparse.ArgumentParser) -> argparse.Namespace:
    """Refuse nonsense values before anything is read (argparse's usage error, exit 2)."""
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    if args.num_workers < 0:
        ap.error("--num_workers must be >= 0")
    if args.window_ms is not None and args.window_ms <= 0:
        ap.error("--window_ms must be positive")
    if args.noise_std <= 0:
        ap.error("--noise_std must be positive")
    if getattr(args, "noise_budget", None) is not None and args.noise_budget <= 0:
        ap.error("--noise_budget must be positive")
    return args
