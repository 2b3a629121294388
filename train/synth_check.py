"""Is the synthetic benchmark learnable, and where does identity come from?

    python -m train.synth_check --jobs 2             # learnability, 2 seeds (~35 min on 2 cores)
    python -m train.synth_check --ablation --jobs 2  # plus the identity-cue ablation (~75 min)
    python -m train.synth_check --tiny               # a smoke run for the test suite

For each seed it generates the benchmark (64x64 by default: CPU scale), trains a ClassNet for
the gesture on the training people and one for identity (cross-entropy + batch-hard
triplet), and evaluates both on the unseen test people: gesture top-1 accuracy, and Re-ID
rank-1 / mAP with the reference's protocol (one query per test person and gesture, junk =
same recording or same gesture). Two shortcut baselines check that neither label can be read
off trivial statistics (event count, centroid): a nearest-neighbour on those alone. The
results go to a markdown report (docs/synth-learnability.md by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.checkpoint import load_net, save_checkpoint
from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.memory import keep_freed_memory
from anonynoise.models import ClassNet
from anonynoise.models.denoise import DenoiseNet
from anonynoise.synth.dataset import (
    MANIFEST,
    DatasetConfig,
    generate_dataset,
    generator_fingerprint,
)
from anonynoise.synth.people import ALL_CUES
from train.classify import FitConfig, fit_classnet, reid_accuracy, target_accuracy
from train.datasets.dvsgesture import load_split

log = logging.getLogger(__name__)

ABLATIONS = {
    "all cues": ALL_CUES,
    "clothing only": ("clothing",),
    "motion only": ("motion",),
    "body and head only": ("body", "head"),
    "all but clothing": ("body", "head", "motion"),
}


def dataset(data_dir: Path, config: DatasetConfig) -> Path:
    """Generate the benchmark for `config` unless the same one is already there."""
    key = f"s{config.size}-u{config.users}-t{config.test_users}-r{config.reps}-seed{config.seed}" \
          f"-d{config.duration_s:g}-{'+'.join(config.cues)}"
    out = data_dir / key
    manifest = out / "DVSGesture" / MANIFEST
    if manifest.exists():
        saved = json.loads(manifest.read_text())
        if saved["config"] == json.loads(json.dumps(asdict(config))) and \
                saved.get("fingerprint") == generator_fingerprint():
            return out / "DVSGesture"
    return generate_dataset(out, config, force=True)


def shortcut_features(frames: np.ndarray) -> np.ndarray:
    """Log event count, centroid and spread per recording: what a shortcut would use."""
    counts = frames.sum(axis=1)  # (N, H, W)
    total = counts.sum(axis=(1, 2)) + 1e-9
    h, w = counts.shape[1:]
    ys, xs = np.mgrid[0:h, 0:w]
    cx = (counts * xs).sum(axis=(1, 2)) / total
    cy = (counts * ys).sum(axis=(1, 2)) / total
    sx = np.sqrt((counts * (xs - cx[:, None, None]) ** 2).sum(axis=(1, 2)) / total)
    sy = np.sqrt((counts * (ys - cy[:, None, None]) ** 2).sum(axis=(1, 2)) / total)
    return np.stack([np.log(total), cx, cy, sx, sy], 1)


def nearest_neighbour(train_f, train_y, test_f, test_y) -> float:
    """Top-1 of a 1-nearest-neighbour on standardised features."""
    mu, sd = train_f.mean(0), train_f.std(0) + 1e-9
    a, b = (train_f - mu) / sd, (test_f - mu) / sd
    d = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    return float((train_y[d.argmin(1)] == test_y).mean())


def shortcut_reid(test_f, users, targets, query) -> float:
    """Rank-1 of the shortcut features: nearest gallery item, same-gesture items skipped."""
    mu, sd = test_f.mean(0), test_f.std(0) + 1e-9
    f = (test_f - mu) / sd
    hits = 0
    for i in np.flatnonzero(query):
        gallery = np.flatnonzero(~query & (targets != targets[i]))
        j = gallery[((f[gallery] - f[i]) ** 2).sum(1).argmin()]
        hits += users[j] == users[i]
    return hits / max(int(query.sum()), 1)


ATTACKERS = ("scratch", "clean", "clean+denoiser")
DENOISE_WIDTH, DENOISE_DEPTH = 16, 5  # the privacy report's quick CPU denoiser


def clean_reid_net(root: Path, clean_train: np.ndarray, labels: np.ndarray, n_ids: int,
                   fit: FitConfig) -> ClassNet:
    """The Re-ID net trained on the clean training clips of the benchmark at `root`, trained
    once and kept beside the benchmark: every transform job of a seed starts its attacker from
    the same net, and training it again per job cost a minute each. The file's name holds the
    benchmark's manifest and the training configuration, so a changed benchmark or
    configuration trains a new one."""
    key = hashlib.sha256(((root / MANIFEST).read_bytes() +
                          json.dumps(asdict(fit), sort_keys=True).encode())).hexdigest()[:16]
    path = root.parent / f"clean-reid-{key}.pt"
    if path.exists():
        try:
            return load_net(path, "classnet")[0]
        except AnonyNoiseError as e:  # a cache: train again rather than fail
            log.warning("%s; training the clean Re-ID net again", e)
    net = fit_classnet(clean_train, labels, n_ids, reid=True, config=fit)
    # atomic: the parallel jobs of a seed may each write the same net
    save_checkpoint(path, net, training={"stage": "synth_check clean Re-ID net",
                                         "fit": asdict(fit), "trained_on": "synthetic people only"})
    return net


def evaluate_seed(config: DatasetConfig, fit: FitConfig, data_dir: Path, task: bool = True,
                  transform=None, draws: int = 1, attacker: str = "scratch"):
    """Gesture and Re-ID nets trained and evaluated on one seed's benchmark; with `transform`
    (a train.controls.ClipTransform) on its transformed clips, `draws` draws of the training
    clips where the transform is random (a random step on the events loads each draw anew). `attacker`: the Re-ID net trains
    from scratch, or starts from a Re-ID net trained on the clean clips ("clean"), or also
    behind a denoiser that learns to restore the clean clips ("clean+denoiser")."""
    if attacker not in ATTACKERS:
        raise ValueError(f"attacker must be one of {ATTACKERS}, got {attacker!r}")
    root = dataset(data_dir, config)
    on_events = transform is not None and transform.on_events
    # a random step on the events (the stream's filters) draws anew on every load of a split
    loads = draws if on_events and transform.events_random else 1

    def events_filter(draw: int):
        return transform.events_filter(1000 * config.seed + draw) if on_events else None

    x_test, rec_test = load_split(root, "test", events_filter=events_filter(loads))
    x_train, rec_train = load_split(root, "train", events_filter=events_filter(0))
    clean_train = x_train
    if attacker != "scratch" and on_events:
        clean_train, _ = load_split(root, "train")
    if transform is not None:
        rng = np.random.default_rng(1000 + config.seed)
        x_train = [x_train] + [load_split(root, "train", events_filter=events_filter(d))[0]
                               for d in range(1, loads)]
        if transform.random and loads == 1:
            x_train = [transform(x_train[0], rng) for _ in range(draws)]
        else:
            x_train = [transform(x, rng) for x in x_train]
        x_test = transform(x_test, rng)
    t_train = np.array([r.target for r in rec_train])
    t_test = np.array([r.target for r in rec_test])
    u_train = np.array([r.user for r in rec_train])
    u_test = np.array([r.user for r in rec_test])
    ids = {u: i for i, u in enumerate(sorted(set(u_train)))}
    first_session = {}
    for r in rec_test:
        first_session.setdefault(r.user, r.lighting)
    query = np.array([r.lighting == first_session[r.user] for r in rec_test])
    files = np.arange(len(rec_test))
    result = {"seed": config.seed, "train_recordings": len(rec_train),
              "test_recordings": len(rec_test)}
    f_train = shortcut_features(x_train[0] if isinstance(x_train, list) else x_train)
    f_test = shortcut_features(x_test)
    if task:
        net = fit_classnet(x_train, t_train, 11, reid=False, config=replace(fit, seed=config.seed))
        result["target_top1"] = target_accuracy(net, x_test, t_test)
        result["target_top1_shortcut"] = nearest_neighbour(f_train, t_train, f_test, t_test)
    id_labels = np.array([ids[u] for u in u_train])
    init = denoiser = None
    if attacker != "scratch":
        init = clean_reid_net(root, clean_train, id_labels, len(ids),
                              replace(fit, seed=config.seed))
    if attacker == "clean+denoiser":
        denoiser = DenoiseNet(clean_train.shape[1], DENOISE_WIDTH, DENOISE_DEPTH)
    net = fit_classnet(x_train, id_labels, len(ids), reid=True,
                       config=replace(fit, seed=config.seed), init=init, denoiser=denoiser,
                       clean=clean_train if denoiser is not None else None)
    if denoiser is not None:
        net, denoiser = net
    reid = reid_accuracy(net, x_test, u_test, files, t_test, query, front=denoiser)
    result.update({f"reid_{k}": v for k, v in reid.as_dict().items()})
    result["reid_rank1_shortcut"] = shortcut_reid(f_test, u_test, t_test, query)
    return result


def _job(job):
    torch.set_num_threads(1)  # one training per core beats two threads per training
    keep_freed_memory()
    return evaluate_seed(*job)


def run_jobs(jobs, processes: int):
    """Each (config, fit, data_dir, task[, transform, draws, attacker]) evaluated, in
    `processes` parallel processes."""
    if processes <= 1:
        return [evaluate_seed(*job) for job in jobs]
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return pool.map(_job, jobs, chunksize=1)


def mean_std(rows, key):
    values = [r[key] for r in rows if key in r]
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), 0.0)


def report(path: Path, args, config: DatasetConfig, fit: FitConfig, main_rows, ablation,
           seconds: float) -> None:
    def fmt(rows, key):
        m, s = mean_std(rows, key)
        return f"{m:.3f} ± {s:.3f}"

    lines = [
        "# Synthetic benchmark: learnability and identity cues", "",
        f"Generated by `python -m train.synth_check {' '.join(sys.argv[1:])}` on "
        f"{time.strftime('%Y-%m-%d')}, {seconds / 60:.1f} minutes on this 2-core CPU.", "",
        f"Benchmark: {config.users} people ({config.users - config.test_users} for training, "
        f"{config.test_users} unseen for testing), {config.reps} sessions each (different "
        f"lighting), 11 gestures, {config.duration_s:g} s per recording, "
        f"{config.size}x{config.size} sensor. Nets: ClassNet {fit.network}, {fit.epochs} "
        f"epochs, Adam {fit.lr:g}, batch {fit.batch}, the reference's augmentation; the "
        "reference's representation (whole sample, 5 bins x 2 polarities). Re-ID: one query per "
        "test person and gesture (first session), the rest is the gallery; same recording or "
        "same gesture is junk. Means ± standard deviations over seeds "
        f"{', '.join(str(r['seed']) for r in main_rows)} (each seed a new set of people).", "",
        "| measure | value | what it should be |", "|---|---|---|",
        f"| gesture top-1, ClassNet | {fmt(main_rows, 'target_top1')} | 0.90 to 0.98 |",
        f"| gesture top-1, shortcut (event count, centroid) | "
        f"{fmt(main_rows, 'target_top1_shortcut')} | far below |",
        f"| Re-ID rank-1, ClassNet | {fmt(main_rows, 'reid_rank1')} | >= 0.90 |",
        f"| Re-ID mAP, ClassNet | {fmt(main_rows, 'reid_mAP')} | reported |",
        f"| Re-ID rank-5 | {fmt(main_rows, 'reid_rank5')} | |",
        f"| Re-ID rank-1, shortcut (event count, centroid) | "
        f"{fmt(main_rows, 'reid_rank1_shortcut')} | far below (chance "
        f"{1 / config.test_users:.2f}) |", "",
    ]
    if ablation:
        lines += ["## Identity cues", "",
                  "The same Re-ID training on benchmarks where people differ only in some cues "
                  "(the others are the same for everyone).", "",
                  "| people differ in | Re-ID rank-1 | mAP |", "|---|---|---|"]
        for name, rows in ablation.items():
            lines.append(f"| {name} | {fmt(rows, 'reid_rank1')} | {fmt(rows, 'reid_mAP')} |")
        lines.append("")
    lines += ["## Per seed", "", "```", json.dumps({"main": main_rows, "ablation": ablation},
                                                  indent=1), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def parse_job_args(ap: argparse.ArgumentParser, argv) -> argparse.Namespace:
    """--jobs and --tiny, shared by the studies that run their trainings through run_jobs;
    parses and sets up logging."""
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings in parallel, one thread each (2 on a 2-core machine)")
    ap.add_argument("--tiny", action="store_true",
                    help="a smoke run (seconds, meaningless numbers)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return args


def main(argv=None) -> int:
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--test-users", type=int, default=10)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=45)
    ap.add_argument("--network", default="resnet18")
    ap.add_argument("--ablation", action="store_true", help="also run the identity-cue ablation")
    ap.add_argument("--reid-only", action="store_true", help="skip the gesture net (experiments)")
    ap.add_argument("--data", default="runs/synth-check", help="where datasets are cached")
    ap.add_argument("--out", default=None,
                    help="default docs/synth-learnability.md (--tiny: runs/tiny/, so a smoke "
                         "run never replaces the published report)")
    ap.add_argument("--threads", type=int, default=None)
    args = parse_job_args(ap, argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        args.size, args.users, args.test_users, args.reps = 32, 4, 2, 2
        args.duration, args.seeds, args.epochs = 0.5, [0], 1
    config = DatasetConfig(users=args.users, test_users=args.test_users, reps=args.reps,
                           size=args.size, duration_s=args.duration)
    config.check()
    fit = FitConfig(network=args.network, epochs=args.epochs)
    start = time.time()
    data_dir = Path(args.data)
    jobs = [(replace(config, seed=seed), fit, data_dir, not args.reid_only)
            for seed in args.seeds]
    if args.ablation:
        jobs += [(replace(config, seed=s, cues=cues), fit, data_dir, False)
                 for name, cues in ABLATIONS.items() if cues != ALL_CUES for s in args.seeds]
    for job in jobs:  # generate every benchmark first (this uses all cores by itself)
        dataset(data_dir, job[0])
    results = run_jobs(jobs, args.jobs)
    main_rows = results[:len(args.seeds)]
    for row in main_rows:
        print(json.dumps(row), flush=True)
    ablation = {}
    if args.ablation:
        rest = iter(results[len(args.seeds):])
        for name, cues in ABLATIONS.items():
            ablation[name] = main_rows if cues == ALL_CUES else \
                [next(rest) for _ in args.seeds]
            print(name, json.dumps(ablation[name]), flush=True)
    if args.out is None:  # a smoke run never replaces the published report
        args.out = f"{'runs/tiny' if args.tiny else 'docs'}/synth-learnability.md"
    report(Path(args.out), args, config, fit, main_rows, ablation, time.time() - start)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the benchmark generator's and the jobs' workers are stopped too
    sys.exit(run(main, prog="synth_check", sigterm_interrupts=True))
