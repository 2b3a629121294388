"""Is the synthetic benchmark learnable, and where does identity come from?

    python -m experiments.synth_check --config experiments/configs/synth_check.toml --jobs 2
        # learnability and the identity-cue ablation, 2 seeds (~75 min on 2 cores)
    python -m experiments.synth_check --config experiments/configs/synth_check_tiny.toml
        # a smoke run for the test suite

For each seed it generates the benchmark (64x64 by default: CPU scale), trains a ClassNet for
the gesture on the training people and one for identity (cross-entropy + batch-hard
triplet), and evaluates both on the unseen test people: gesture top-1 accuracy, and Re-ID
rank-1 / mAP with the reference's protocol (one query per test person and gesture, junk =
same recording or same gesture). Two shortcut baselines check that neither label can be read
off trivial statistics (event count, centroid): a nearest-neighbour on those alone. The
results go to a markdown report (experiments/reports/synth-learnability.md by default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.checkpoint import load_net, save_checkpoint
from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.memory import keep_freed_memory
from anonynoise.models import ClassNet
from anonynoise.models.denoise import DenoiseNet
from anonynoise.synth.dataset import MANIFEST, DatasetConfig
from anonynoise.synth.people import ALL_CUES
from experiments.report import Report, benchmark_text, fmt, generated
from train.classify import FitConfig, fit_classnet, reid_accuracy, target_accuracy
from train.config_file import ConfigError, from_table, read_toml
from train.datasets.dvsgesture import load_split
from train.recipe import dataset

log = logging.getLogger(__name__)

ABLATIONS = {
    "all cues": ALL_CUES,
    "clothing only": ("clothing",),
    "motion only": ("motion",),
    "body and head only": ("body", "head"),
    "all but clothing": ("body", "head", "motion"),
}


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
    # the clips' size is in the key: clips summed to a smaller size are another net's input
    key = hashlib.sha256(((root / MANIFEST).read_bytes() +
                          json.dumps(asdict(fit), sort_keys=True).encode() +
                          str(clean_train.shape[-2:]).encode())).hexdigest()[:16]
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


def block_sums(x: np.ndarray, size: int | None) -> np.ndarray:
    """(N, C, H, W) clips -> (N, C, size, size), each block of H/size x W/size pixels summed
    (None or the clips' own size: unchanged)."""
    if size is None or x.shape[-2:] == (size, size):
        return x
    n, c, h, w = x.shape
    return x.reshape(n, c, size, h // size, size, w // size).sum((3, 5), dtype=np.float32)


def evaluate_seed(config: DatasetConfig, fit: FitConfig, data_dir: Path, task: bool = True,
                  transform=None, draws: int = 1, attacker: str = "scratch",
                  attack_size: int | None = None):
    """Gesture and Re-ID nets trained and evaluated on one seed's benchmark; with `transform`
    (an experiments.controls.ClipTransform) on its transformed clips, `draws` draws of the
    training clips where the transform is random (a random step on the events loads each draw
    anew). `attacker`: the Re-ID net trains from scratch, or starts from a Re-ID net trained on
    the clean clips ("clean"), or also behind a denoiser that learns to restore the clean clips
    ("clean+denoiser"). `attack_size`: every net sees the clips summed to that size."""
    if attacker not in ATTACKERS:
        raise ValueError(f"attacker must be one of {ATTACKERS}, got {attacker!r}")
    root = dataset(data_dir, config)
    on_events = transform is not None and transform.on_events
    # a random step on the events (the stream's filters) draws anew on every load of a split
    loads = draws if on_events and transform.events_random else 1

    def events_filter(draw: int):
        return transform.events_filter(1000 * config.seed + draw) if on_events else None

    def load(split: str, events_filter=None):
        # each load summed at once: four full-size loads of a large sensor are gigabytes
        x, recordings = load_split(root, split, events_filter=events_filter)
        return (x if transform is not None and transform.steps else
                block_sums(x, attack_size)), recordings

    x_test, rec_test = load("test", events_filter(loads))
    x_train, rec_train = load("train", events_filter(0))
    clean_train = x_train
    if attacker != "scratch" and on_events:
        clean_train, _ = load("train")
    if transform is not None:
        rng = np.random.default_rng(1000 + config.seed)
        x_train = [x_train] + [load("train", events_filter(d))[0] for d in range(1, loads)]
        if transform.random and loads == 1:
            x_train = [transform(x_train[0], rng) for _ in range(draws)]
        else:
            x_train = [transform(x, rng) for x in x_train]
        x_test = transform(x_test, rng)
        if transform.steps:  # the clip steps ran at the sensor's size: sum now
            x_train = [block_sums(x, attack_size) for x in x_train]
            x_test = block_sums(x_test, attack_size)
            clean_train = block_sums(clean_train, attack_size)
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


def column(rows: list[dict], key: str) -> list:
    """One measure of every seed's row (the rows that have it)."""
    return [r[key] for r in rows if key in r]


@dataclass
class SynthCheckConfig:
    """The learnability check: the benchmark, the nets, the seeds, and which parts run."""
    data: DatasetConfig = field(default_factory=lambda: DatasetConfig(size=64))
    fit: FitConfig = field(default_factory=lambda: FitConfig(epochs=45))
    seeds: tuple[int, ...] = (0, 1)
    ablation: bool = False   # also the identity-cue ablation
    reid_only: bool = False  # skip the gesture net

    def check(self) -> "SynthCheckConfig":
        self.data.check()
        if not self.seeds:
            raise ConfigError("seeds must not be empty")
        return self


def load_config(path: str | Path) -> SynthCheckConfig:
    # the seeds are the config's list; every net's and benchmark's seed comes from it
    fixed = {DatasetConfig: ("seed",), FitConfig: ("seed", "device")}
    return from_table(SynthCheckConfig, read_toml(path), str(path), fixed).check()


def report(path: Path, command: str, config: DatasetConfig, fit: FitConfig, main_rows,
           ablation, seconds: float) -> None:
    out = Report("Synthetic benchmark: learnability and identity cues").paragraph(
        generated(command, seconds, "this 2-core CPU"))
    out.paragraph(
        f"Benchmark: {benchmark_text(config)}. Nets: ClassNet {fit.network}, {fit.epochs} "
        f"epochs, Adam {fit.lr:g}, batch {fit.batch}, the reference's augmentation; the "
        "reference's representation (whole sample, 5 bins x 2 polarities). Re-ID: one query per "
        "test person and gesture (first session), the rest is the gallery; same recording or "
        "same gesture is junk. Means ± standard deviations over seeds "
        f"{', '.join(str(r['seed']) for r in main_rows)} (each seed a new set of people).")
    out.table(["measure", "value", "what it should be"], [
        ["gesture top-1, ClassNet", fmt(column(main_rows, "target_top1")), "0.90 to 0.98"],
        ["gesture top-1, shortcut (event count, centroid)",
         fmt(column(main_rows, "target_top1_shortcut")), "far below"],
        ["Re-ID rank-1, ClassNet", fmt(column(main_rows, "reid_rank1")), ">= 0.90"],
        ["Re-ID mAP, ClassNet", fmt(column(main_rows, "reid_mAP")), "reported"],
        ["Re-ID rank-5", fmt(column(main_rows, "reid_rank5")), ""],
        ["Re-ID rank-1, shortcut (event count, centroid)",
         fmt(column(main_rows, "reid_rank1_shortcut")),
         f"far below (chance {1 / config.test_users:.2f})"]])
    if ablation:
        out.section("Identity cues").paragraph(
            "The same Re-ID training on benchmarks where people differ only in some cues (the "
            "others are the same for everyone).")
        out.table(["people differ in", "Re-ID rank-1", "mAP"],
                  [[name, fmt(column(rows, "reid_rank1")), fmt(column(rows, "reid_mAP"))]
                   for name, rows in ablation.items()])
    out.section("Per seed").json_block({"main": main_rows, "ablation": ablation})
    out.write(path)


def add_job_args(ap: argparse.ArgumentParser) -> None:
    """--config, --jobs and --data, shared by the studies that run their trainings through
    run_jobs."""
    ap.add_argument("--config", required=True, help="the study's TOML file "
                    "(experiments/configs/)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings in parallel, one thread each (2 on a 2-core machine)")
    ap.add_argument("--data", default="runs/synth-check", help="where benchmarks are cached")


def main(argv=None) -> int:
    keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_job_args(ap)
    ap.add_argument("--out", default="experiments/reports/synth-learnability.md")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_config(args.config)
    config, fit, seeds = study.data, study.fit, list(study.seeds)
    start = time.time()
    data_dir = Path(args.data)
    jobs = [(replace(config, seed=seed), fit, data_dir, not study.reid_only) for seed in seeds]
    if study.ablation:
        jobs += [(replace(config, seed=s, cues=cues), fit, data_dir, False)
                 for name, cues in ABLATIONS.items() if cues != ALL_CUES for s in seeds]
    for job in jobs:  # generate every benchmark first (this uses all cores by itself)
        dataset(data_dir, job[0])
    results = run_jobs(jobs, args.jobs)
    main_rows = results[:len(seeds)]
    for row in main_rows:
        print(json.dumps(row), flush=True)
    ablation = {}
    if study.ablation:
        rest = iter(results[len(seeds):])
        for name, cues in ABLATIONS.items():
            ablation[name] = main_rows if cues == ALL_CUES else [next(rest) for _ in seeds]
            print(name, json.dumps(ablation[name]), flush=True)
    report(Path(args.out), " ".join(["python -m experiments.synth_check", *argv]), config, fit,
           main_rows, ablation, time.time() - start)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the benchmark generator's and the jobs' workers are stopped too
    sys.exit(run(main, prog="synth_check", sigterm_interrupts=True))
