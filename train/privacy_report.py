"""The privacy report: what an attacker with our weights learns from the anonymized stream.

    python -m train.privacy_report --device cuda --jobs 8 \
        --ship anonynoise/models/default_anonymizer.pt   # Re-ID weights 0.3, 1 x clean 0, 1
    python -m train.privacy_report --render --ship ...   # the report again, from DATA
    python -m train.privacy_report --averaging-only ...  # temporal averaging a run missed
    python -m train.privacy_report --tiny                # a smoke run for the test suite

Per seed (each a new synthetic benchmark, a new set of people), on a CPU-sized configuration:

1. clean target (gesture) and Re-ID nets on clean 3 s clips: the baseline;
2. for every variant (a --reid-weights value with a --clean-target-weights value), the
   adversarial pipeline (train.composite): the light anonymizer on the stream's 50 ms
   windows, fresh noise per window, through the events round trip, judged on the clips a
   consumer re-bins from them; then, as the reference's post-training does, the pipeline's
   target net trained on anonymized clips as long as every other net: the gesture accuracy a
   consumer of the stream gets;
3. fresh attackers, trained on anonymized clips (the attacker has our weights, so it can make
   as many paired clean / anonymized examples as it likes) from the clean Re-ID net, from the
   pipeline's adversary and from scratch, each with and without a denoiser in front (a
   smaller DnCNN than the reference's, labelled as such); the last epoch, evaluated on unseen
   people;
4. temporal averaging: the noise is fresh in every window, so re-binning longer spans averages
   it out; rank-1 over 1 to 6 s of stream, for the clean net, the 3 s attacker and an attacker
   trained on 6 s;
5. the event rate out / in, on the test clips and (with the shipped model, if the folder is
   there) on the real recordings.

Each seed's clean nets and then each variant x seed is one job (--jobs of them at once); a job
rewrites its row under DATA/seed<N>/rows/ after every step, so a run stopped at a time limit
keeps what it finished and --render reports it. The report (markdown + PNG) gives means over
seeds; with --ship the chosen variant's first-seed anonymizer becomes the stream's default.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import asdict, astuple, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO
from anonynoise.checkpoint import Representation, load_checkpoint, save_checkpoint
from anonynoise.cli import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import from_dvsgesture_array
from anonynoise.models import ClassNet, LightAnonNet
from anonynoise.models.denoise import DenoiseNet
from anonynoise.synth.dataset import DatasetConfig
from train.classify import FitConfig, fit_classnet, reid_accuracy, target_accuracy
from train.clips import anonymize_windows, clean_clips, compose_clips, recording_windows
from train.composite import CompositeConfig, train_composite
from train.datasets.dvsgesture import read_recording, scan, sensor_size
from train.synth_check import dataset

log = logging.getLogger(__name__)
WINDOW_MS = 50  # the stream's default window (stream.cli)
BINS = 5
REAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"
# the kinds of fresh attacker, the strongest seen first (a run stopped early keeps those)
ATTACKERS = [("from clean", "clean"), ("from adversary", "adversary"), ("scratch", None)]


@dataclass
class StudyConfig:
    data: DatasetConfig = field(default_factory=DatasetConfig)
    clip_s: float = 3.0
    long_s: float = 6.0
    fit: FitConfig = field(default_factory=FitConfig)
    pipeline: CompositeConfig = field(default_factory=CompositeConfig)
    reid_weights: tuple[float, ...] = (0.3, 1.0)
    clean_target_weights: tuple[float, ...] = (0.0, 1.0)
    full_table: bool = True     # every variant gets every attacker (else the first only)
    draws: int = 2              # anonymized copies of the training set for the attackers
    anon_width: int = 8
    anon_form: str = "mean_scale"
    denoise_width: int = 32     # the reference's DnCNN is 128 wide and 15 deep
    denoise_depth: int = 5

    @property
    def variants(self) -> list["Variant"]:
        return [Variant(w, c) for c in self.clean_target_weights for w in self.reid_weights]

    @property
    def clip_windows(self) -> int:
        return int(round(self.clip_s * 1000 / WINDOW_MS))

    @property
    def long_windows(self) -> int:
        return int(round(self.long_s * 1000 / WINDOW_MS))


def load_windows(root: Path, split: str, n_windows: int):
    """(N, n_windows, 2 * BINS, H, W) uint8 windows of every recording of a split, and the
    recordings (sorted as scan sorts them)."""
    recordings = scan(root, split)
    sensor = sensor_size(root)
    windows = np.stack([recording_windows(from_dvsgesture_array(read_recording(r.path), sensor),
                                          WINDOW_MS * 1000, n_windows, BINS)
                        for r in recordings])
    return windows, recordings


@torch.no_grad()
def anonymized_spans(anon, windows: np.ndarray, spans: list[int], clip_bins: int = BINS,
                     batch: int = 8, device: str = "cpu") -> dict[int, np.ndarray]:
    """One anonymization pass over the windows (fresh noise each), re-binned into clips of
    the first `span` windows for every span, scaled to the count level of the first span."""
    anon.eval()
    out: dict[int, list] = {s: [] for s in spans}
    for k in range(0, len(windows), batch):
        x = anonymize_windows(anon, torch.from_numpy(np.array(windows[k:k + batch]))
                              .to(device).float())
        for s in spans:
            out[s].append((compose_clips(x[:, :s], clip_bins) * (spans[0] / s)).cpu())
    return {s: torch.cat(v).numpy() for s, v in out.items()}


def clean_spans(windows: np.ndarray, spans: list[int]) -> dict[int, np.ndarray]:
    return {s: clean_clips(windows[:, :s]) * (spans[0] / s) for s in spans}


def _mass(x: np.ndarray) -> float:
    return float(np.clip(x, 0, None).sum())


@dataclass(frozen=True)
class Variant:
    """One anonymizer training of the sweep: the Re-ID term's weight and the frozen clean
    target net's weight in the anonymizer's loss."""
    reid_weight: float
    clean_target_weight: float = 0.0

    @property
    def key(self) -> str:  # results.json's key (a bare weight, as before the sweep had two)
        w = str(float(self.reid_weight))
        return w if not self.clean_target_weight else f"{w}+clean{float(self.clean_target_weight)}"

    @property
    def label(self) -> str:
        return f"Re-ID weight {self.reid_weight:g}" + (
            f", clean target weight {self.clean_target_weight:g}"
            if self.clean_target_weight else "")

    @classmethod
    def from_key(cls, key: str) -> "Variant":
        w, _, c = key.partition("+clean")
        return cls(float(w), float(c) if c else 0.0)


def _seed_data(config: StudyConfig, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's windows and labels. The windows are cached as .npy in seed_dir and opened
    memory-mapped, so the jobs of one seed share one copy in the page cache."""
    root = dataset(data_dir, config.data)
    seed_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("train", "test"):
        cache = seed_dir / f"{split}-windows.npy"
        recordings = scan(root, split)
        if not cache.is_file():
            windows, _ = load_windows(root, split, config.long_windows)
            part = cache.with_suffix(".partial.npy")
            np.save(part, windows)
            part.replace(cache)
        out[split] = np.load(cache, mmap_mode="r"), recordings
    train_w, rec_train = out["train"]
    test_w, rec_test = out["test"]
    users = sorted({r.user for r in rec_train})
    first_session = {}
    for r in rec_test:
        first_session.setdefault(r.user, r.lighting)
    return {"train_w": train_w, "test_w": test_w, "users": users,
            "t_train": np.array([r.target for r in rec_train]),
            "t_test": np.array([r.target for r in rec_test]),
            "u_test": np.array([r.user for r in rec_test]),
            "id_train": np.array([users.index(r.user) for r in rec_train]),
            "query": np.array([r.lighting == first_session[r.user] for r in rec_test]),
            "files": np.arange(len(rec_test))}


def _spans(config: StudyConfig) -> list[int]:
    n_clip = config.clip_windows
    spans = [int(round(s * 1000 / WINDOW_MS)) for s in range(1, int(config.long_s) + 1)]
    return [n_clip] + [s for s in spans if s != n_clip]


def _reid(d: dict, net, x, device, front=None) -> dict:
    return reid_accuracy(net, x, d["u_test"], d["files"], d["t_test"], d["query"], device,
                         front=front).as_dict()


def _write_json(path: Path, value) -> None:
    part = path.with_suffix(".partial")
    part.write_text(json.dumps(value, indent=1))
    part.replace(path)  # a run stopped mid-write leaves the last complete version


def study_clean(config: StudyConfig, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's baseline: clean target and Re-ID nets (saved for the variants' jobs) and
    their numbers (seed_dir/clean.json)."""
    seed, device = config.data.seed, config.fit.device
    d = _seed_data(config, data_dir, seed_dir)
    n_clip = config.clip_windows
    fit = replace(config.fit, seed=seed)
    clean_train = clean_clips(d["train_w"][:, :n_clip])
    clean_test = clean_clips(d["test_w"][:, :n_clip])
    log.info("seed %d: %d train / %d test recordings, %s", seed, len(d["t_train"]),
             len(d["t_test"]), d["train_w"].shape[1:])
    target_clean = fit_classnet(clean_train, d["t_train"], 11, False, fit)
    reid_clean = fit_classnet(clean_train, d["id_train"], len(d["users"]), True, fit)
    clean = {"target_top1": target_accuracy(target_clean, clean_test, d["t_test"], device),
             **_reid(d, reid_clean, clean_test, device)}
    clean["averaging"] = {str(s): _reid(d, reid_clean, c, device)["rank1"]
                          for s, c in clean_spans(d["test_w"], _spans(config)).items()}
    torch.save({"target": target_clean.cpu().state_dict(), "reid": reid_clean.cpu().state_dict(),
                "n_ids": len(d["users"])}, seed_dir / "clean-nets.pt")
    _write_json(seed_dir / "clean.json", clean)
    log.info("seed %d clean: %s", seed, json.dumps(clean))
    return clean


def study_variant(config: StudyConfig, data_dir: Path, seed_dir: Path, variant: Variant,
                  main: bool = True) -> dict:
    """One anonymizer of the sweep on one seed, from that seed's clean nets: the pipeline,
    the post-trained target net, the fresh attackers (strongest kinds first) and temporal
    averaging. The row is rewritten to seed_dir/rows/<key>.json after every step, so a run
    stopped at a time limit keeps what it finished."""
    seed, device = config.data.seed, config.fit.device
    d = _seed_data(config, data_dir, seed_dir)
    n_clip, n_long = config.clip_windows, config.long_windows
    train_w, test_w = d["train_w"], d["test_w"]
    fit = replace(config.fit, seed=seed)
    saved = torch.load(seed_dir / "clean-nets.pt", map_location="cpu")
    target_clean = ClassNet(config.fit.network, 11, 2 * BINS)
    target_clean.load_state_dict(saved["target"])
    reid_clean = ClassNet(config.fit.network, saved["n_ids"], 2 * BINS)
    reid_clean.load_state_dict(saved["reid"])
    target_clean, reid_clean = target_clean.to(device).eval(), reid_clean.to(device).eval()
    clean_train = clean_clips(train_w[:, :n_clip])
    clean_test = clean_clips(test_w[:, :n_clip])
    row_file = seed_dir / "rows" / f"{variant.key}.json"
    row_file.parent.mkdir(parents=True, exist_ok=True)
    tag = f"seed {seed} {variant.label}"

    torch.manual_seed(seed)
    anon = LightAnonNet(2 * BINS, form=config.anon_form, width=config.anon_width)
    target_net, adversary = copy.deepcopy(target_clean), copy.deepcopy(reid_clean)
    history = train_composite(anon, target_net, adversary, train_w[:, :n_clip], d["t_train"],
                              d["id_train"], replace(
                                  config.pipeline, reid_weight=variant.reid_weight,
                                  clean_target_weight=variant.clean_target_weight, seed=seed,
                                  device=device))
    spans = _spans(config)
    test_spans = anonymized_spans(anon, test_w, spans if main else [n_clip], device=device)
    anon_test = test_spans[n_clip]
    row = {"variant": asdict(variant), "pipeline": history[-1],
           "event_rate_ratio": _mass(anon_test) / _mass(clean_test),
           "target_top1_pipeline": target_accuracy(target_net, anon_test, d["t_test"], device),
           "target_top1_clean_net": target_accuracy(target_clean, anon_test, d["t_test"], device),
           "adversary": _reid(d, adversary, anon_test, device), "attackers": {}}
    _save_anonymizer(anon, seed_dir / f"anonymizer-{variant.key}.pt", config, variant, row)
    _write_json(row_file, row)
    draws = [anonymized_spans(anon, train_w[:, :n_clip], [n_clip], device=device)[n_clip]
             for _ in range(config.draws)]
    # the reference's post-training of the target: from the pipeline's last target net, on
    # anonymized clips, as long as every other ClassNet; what a consumer would deploy
    target_post = fit_classnet(draws, d["t_train"], 11, False, fit, init=target_net)
    row["target_top1_post"] = target_accuracy(target_post, anon_test, d["t_test"], device)
    _write_json(row_file, row)
    log.info("%s target post-trained: %.3f", tag, row["target_top1_post"])
    inits = {"clean": reid_clean, "adversary": adversary}
    kinds = [(name, init, dn) for name, init in ATTACKERS for dn in (True, False)] if main \
        else [("from clean", "clean", True)]
    for name, init, with_denoiser in kinds:
        label = name + (" + denoiser" if with_denoiser else "")
        denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth) \
            if with_denoiser else None
        out = fit_classnet(draws, d["id_train"], len(d["users"]), True, fit,
                           init=inits.get(init), denoiser=denoiser, clean=clean_train)
        net, front = out if with_denoiser else (out, None)
        row["attackers"][label] = _reid(d, net, anon_test, device, front)
        if label == "from clean":
            attacker_clip = net
        _write_json(row_file, row)
        log.info("%s %s: %s", tag, label, json.dumps(row["attackers"][label]))
    if main:
        row["averaging"] = _temporal_averaging(config, d, anon, reid_clean, attacker_clip,
                                               test_spans, fit)
        _write_json(row_file, row)
    log.info("%s: %s", tag, json.dumps(row))
    return row


def _temporal_averaging(config: StudyConfig, d: dict, anon, reid_clean, attacker_clip,
                        test_spans: dict, fit: FitConfig) -> dict:
    """The noise is fresh in every window, so re-binning longer spans averages it out:
    rank-1 over 1 to 6 s of stream of the 3 s attacker, and of one trained on 6 s."""
    device, n_long = fit.device, config.long_windows
    out = {f"attacker {config.clip_s:g} s": {
        str(s): _reid(d, attacker_clip, c, device)["rank1"] for s, c in test_spans.items()}}
    long_draws = [anonymized_spans(anon, d["train_w"], [n_long], device=device)[n_long]
                  for _ in range(config.draws)]
    attacker_long = fit_classnet(long_draws, d["id_train"], len(d["users"]), True, fit,
                                 init=reid_clean)
    out[f"attacker {config.long_s:g} s"] = {
        str(s): _reid(d, attacker_long, c, device)["rank1"] for s, c in test_spans.items()}
    return out


def study_averaging(config: StudyConfig, data_dir: Path, seed_dir: Path,
                    variants: list[Variant]) -> None:
    """Temporal averaging alone, for anonymizers a stopped run saved (seed_dir/anonymizer-
    <key>.pt): the clean Re-ID net and the 3 s attacker from it are trained again (same
    recipe, new noise draws); written to seed_dir/rows/<key>.averaging.json, which collect
    merges into the row."""
    seed, device = config.data.seed, config.fit.device
    d = _seed_data(config, data_dir, seed_dir)
    n_clip = config.clip_windows
    fit = replace(config.fit, seed=seed)
    reid_clean = fit_classnet(clean_clips(d["train_w"][:, :n_clip]), d["id_train"],
                              len(d["users"]), True, fit)
    for variant in variants:
        anon = load_checkpoint(seed_dir / f"anonymizer-{variant.key}.pt").build(device)
        test_spans = anonymized_spans(anon, d["test_w"], _spans(config), device=device)
        draws = [anonymized_spans(anon, d["train_w"][:, :n_clip], [n_clip], device=device)
                 [n_clip] for _ in range(config.draws)]
        attacker_clip = fit_classnet(draws, d["id_train"], len(d["users"]), True, fit,
                                     init=reid_clean)
        averaging = _temporal_averaging(config, d, anon, reid_clean, attacker_clip,
                                        test_spans, fit)
        (seed_dir / "rows").mkdir(parents=True, exist_ok=True)
        _write_json(seed_dir / "rows" / f"{variant.key}.averaging.json", averaging)
        log.info("seed %d %s averaging: %s", seed, variant.label, json.dumps(averaging))


def collect(seed_dir: Path, seed: int) -> dict | None:
    """A seed's results from what its jobs wrote (None before its clean nets are done)."""
    if not (seed_dir / "clean.json").is_file():
        return None
    files = sorted((f for f in (seed_dir / "rows").glob("*.json")
                    if not f.name.endswith(".averaging.json")),
                   key=lambda f: astuple(Variant.from_key(f.stem)))
    rows = {f.stem: json.loads(f.read_text()) for f in files}
    for key, row in rows.items():
        separate = seed_dir / "rows" / f"{key}.averaging.json"
        if "averaging" not in row and separate.is_file():
            row["averaging"] = json.loads(separate.read_text())
    return {"seed": seed, "clean": json.loads((seed_dir / "clean.json").read_text()),
            "weights": rows}


def _save_anonymizer(anon, path: Path, config: StudyConfig, variant: Variant,
                     row: dict) -> None:
    rep = Representation(bins=BINS, polarities=2, width=None, height=None,
                         window_us=WINDOW_MS * 1000)
    record = {"stage": "privacy_report", "trained_on": "synthetic people only",
              "command": "python -m " + " ".join(["train.privacy_report", *sys.argv[1:]]),
              "reid_weight": variant.reid_weight,
              "clean_target_weight": variant.clean_target_weight,
              "config": json.loads(json.dumps(asdict(config), default=str)),
              "metrics": {"event_rate_ratio": row["event_rate_ratio"],
                          "target_top1_pipeline": row["target_top1_pipeline"],
                          "adversary_rank1": row["adversary"]["rank1"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, copy.deepcopy(anon).cpu(), rep, record)
    log.info("saved %s", path)


def gesture(row: dict) -> float:
    """The gesture top-1 a weight is judged by: the target net post-trained on anonymized
    clips (the reference's protocol); results from before that row existed fall back to the
    pipeline's own target net."""
    return row.get("target_top1_post", row["target_top1_pipeline"])


def gesture_source(rows: list[dict]) -> str:
    return ("target net post-trained on anonymized clips" if "target_top1_post" in rows[0]
            else "the pipeline's target net")


def _judged(row: dict) -> bool:
    # a post-trained target net and at least one fresh attacker; rows from before the
    # post-training existed (no "variant") are judged by the pipeline's target net
    return bool(row.get("attackers")) and ("target_top1_post" in row or "variant" not in row)


def complete_keys(results: list[dict]) -> list[str]:
    """The variants every seed has a judged row for, in the order the first seed has them."""
    return [k for k in results[0]["weights"]
            if all(k in r["weights"] and _judged(r["weights"][k]) for r in results)]


def common_attackers(rows: list[dict]) -> list[str]:
    """The attacker kinds every seed's row has (a stopped run may lack the last ones)."""
    return [a for a in rows[0]["attackers"] if all(a in r["attackers"] for r in rows)]


def strongest_attacker(rows: list[dict]) -> str:
    return max(common_attackers(rows),
               key=lambda a: np.mean([r["attackers"][a]["rank1"] for r in rows]))


def choose_variant(results: list[dict], keys: list[str]) -> str:
    """The variant that ships: the most private (strongest fresh attacker's rank-1, mean over
    seeds) of those that keep the gesture within 10 points of clean. If none does, the one
    that keeps the gesture best among those that cut the strongest attacker by >= 50%
    relative to clean, else among all. Privacy first, but a stream nobody can use protects
    no one."""
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])

    def attacker(k):
        rows = [r["weights"][k] for r in results]
        return np.mean([r["attackers"][strongest_attacker(rows)]["rank1"] for r in rows])

    def loss(k):
        return clean_t - np.mean([gesture(r["weights"][k]) for r in results])

    useful = [k for k in keys if loss(k) <= 0.10]
    if useful:
        return min(useful, key=attacker)
    private = [k for k in keys if attacker(k) <= 0.5 * clean_r1]
    return min(private or keys, key=loss)


def real_rates(model: Path, real_dir: Path, out_dir: Path) -> dict:
    """Events out / in of the model on each real recording (offline path, as the stream)."""
    from anonynoise.offline import anonymize_file

    rates = {}
    for f in sorted(real_dir.glob("*")):
        if f.suffix.lower() not in (".aedat4", ".raw", ".dat"):
            continue
        try:
            s = anonymize_file(f, out_dir / (f.stem + ".npy"), model, device="cpu")
        except Exception as e:  # a recording we cannot read is reported, not fatal
            rates[f.name] = {"error": str(e).splitlines()[0]}
            continue
        rates[f.name] = {"events_in": s["events_in"], "events_out": s["events_out"],
                         "ratio": s["events_out"] / max(s["events_in"], 1)}
        (out_dir / (f.stem + ".npy")).unlink(missing_ok=True)
    return rates


def _job(job):
    # one job per core or two beats many threads per job (on a GPU machine: the cores shared
    # out, and the GPU's time between the jobs)
    fn, args, threads = job
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return fn(*args)


def _run_jobs(jobs: list[tuple], parallel: int) -> list:
    if parallel <= 1:
        return [fn(*args) for fn, args in jobs]
    threads = max(1, (os.cpu_count() or 2) // parallel)
    with multiprocessing.get_context("spawn").Pool(parallel) as pool:
        return pool.map(_job, [(fn, args, threads) for fn, args in jobs], chunksize=1)


def _stats(values) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), 0.0)


def fmt(values) -> str:
    m, s = _stats(values)
    return f"{m:.3f} ± {s:.3f}"


def write_report(path: Path, plot: Path, config: StudyConfig, results: list[dict],
                 real: dict, seconds: float, command: str, main: str,
                 device: str, note: str = "") -> None:
    keys = complete_keys(results)
    shipped = Variant.from_key(main)
    rows = [r["weights"][main] for r in results]
    clean_r1 = [r["clean"]["rank1"] for r in results]
    attackers = common_attackers(rows)
    strongest = strongest_attacker(rows)
    best_r1 = [r["attackers"][strongest]["rank1"] for r in rows]
    reduction = 1 - np.mean(best_r1) / np.mean(clean_r1)
    clean_t = [r["clean"]["target_top1"] for r in results]
    pipe_t = [r["target_top1_pipeline"] for r in rows]
    judged_t = [gesture(r) for r in rows]
    d = config.data
    lines = [
        "# Privacy report: the shipped light anonymizer against fresh attackers", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}: {seconds / 60:.1f} minutes "
        f"on {device}. Seeds {', '.join(str(r['seed']) for r in results)}, each a new "
        "synthetic benchmark (new people); numbers are means ± standard deviations over seeds.",
        "", *([note, ""] if note else []),
        "## Configuration", "",
        f"- Synthetic benchmark: {d.users} people ({d.users - d.test_users} train, "
        f"{d.test_users} unseen test), {d.reps} sessions, 11 gestures, {d.duration_s:g} s "
        f"recordings at {d.size}x{d.size}.",
        f"- Stream: {WINDOW_MS} ms windows of {BINS} bins x 2 polarities; the anonymizer runs "
        "on each window with fresh noise; its output goes through the events round trip "
        "(negative values are no events, stochastic rounding); a consumer re-bins "
        f"{config.clip_s:g} s of windows into a {BINS}-bin clip, which is what every net below "
        "sees.",
        f"- Anonymizer: LightAnonNet width {config.anon_width}, form {config.anon_form}, "
        f"trained by train.composite for {config.pipeline.epochs} epochs (Adam "
        f"{config.pipeline.lr_anon:g}; helpers {config.pipeline.lr_helper:g}) from the clean "
        f"nets, {shipped.label} (chosen by the rule below from "
        f"{'; '.join(Variant.from_key(k).label for k in keys)}), noise budget "
        f"{config.pipeline.noise_budget} x the input's events (penalty), Re-ID term cap "
        f"{config.pipeline.reid_cap}, and the runtime's "
        f"cap of {DEFAULT_MAX_EVENT_RATIO:g} events out per event in, per window, in expectation "
        "(anonynoise.anonymizer.cap_event_rate).",
        "- The clean target weight is the weight of a frozen copy of the clean target net's "
        "cross-entropy in the anonymizer's loss: a consumer's net trained on clean events "
        "must still work.",
        "- The variant that ships: the most private (strongest fresh attacker) of those that "
        "keep the gesture within 10 points of clean; if none does, the one that keeps the "
        "gesture best among those that cut the strongest attacker by at least 50% (else among "
        "all).",
        f"- Every ClassNet (clean baseline, attackers): {config.fit.network}, "
        f"{config.fit.epochs} epochs, Adam {config.fit.lr:g} cosine, batch {config.fit.batch}, "
        "the reference's augmentation; the last epoch is evaluated. Attackers train on "
        f"{config.draws} anonymized draws of the training clips (alternating per epoch). "
        f"Denoiser: DnCNN width {config.denoise_width}, depth {config.denoise_depth} (smaller "
        "than the reference's 128 x 15), trained jointly with MSE to the clean clip.",
        "- Re-ID: one query per unseen person and gesture (first session), the rest is the "
        "gallery, same recording or same gesture is junk; rank-1 with the flip descriptor.", "",
        "## Result", "",
        "| row | Re-ID rank-1 | mAP | gesture top-1 |", "|---|---|---|---|",
        f"| clean | {fmt(clean_r1)} | {fmt([r['clean']['mAP'] for r in results])} | "
        f"{fmt(clean_t)} |",
        f"| anonymized, in-pipeline adversary / target net | "
        f"{fmt([r['adversary']['rank1'] for r in rows])} | "
        f"{fmt([r['adversary']['mAP'] for r in rows])} | {fmt(pipe_t)} |",
        f"| anonymized, clean target net (not retrained) | | | "
        f"{fmt([r['target_top1_clean_net'] for r in rows])} |",
        *([f"| anonymized, target net post-trained on anonymized clips (the reference's "
           f"protocol) | | | {fmt(judged_t)} |"] if "target_top1_post" in rows[0] else []),
    ]
    for a in attackers:
        lines.append(f"| fresh attacker {a} | {fmt([r['attackers'][a]['rank1'] for r in rows])} "
                     f"| {fmt([r['attackers'][a]['mAP'] for r in rows])} | |")
    rate = [r["event_rate_ratio"] for r in rows]
    lines += [
        "", "## Bars", "",
        "| bar | measured | holds |", "|---|---|---|",
        f"| clean Re-ID rank-1 >= 0.90 | {np.mean(clean_r1):.3f} | "
        f"{'yes' if np.mean(clean_r1) >= 0.9 else 'no'} |",
        f"| strongest fresh attacker ({strongest}) rank-1 reduced >= 50% relative to clean | "
        f"{np.mean(best_r1):.3f}, reduced by {100 * reduction:.0f}% | "
        f"{'yes' if reduction >= 0.5 else 'no'} |",
        f"| gesture top-1 ({gesture_source(rows)}) within 10 points of clean | "
        f"{np.mean(judged_t):.3f} vs {np.mean(clean_t):.3f} "
        f"({100 * (np.mean(judged_t) - np.mean(clean_t)):+.1f} points) | "
        f"{'yes' if np.mean(clean_t) - np.mean(judged_t) <= 0.10 else 'no'} |",
        f"| event rate out / in <= 3, synthetic test clips | {fmt(rate)} | "
        f"{'yes' if max(rate) <= 3 else 'no'} |",
    ]
    if real:
        ok = [v["ratio"] for v in real.values() if "ratio" in v]
        lines.append(f"| event rate out / in <= 3, real recordings (shipped model) | "
                     f"{min(ok):.2f} to {max(ok):.2f} | {'yes' if max(ok) <= 3 else 'no'} |"
                     if ok else "| event rate, real recordings | none readable | |")
    else:
        lines.append("| event rate, real recordings | not measured (../shared/data/real absent "
                     "or no shipped model) | |")
    lines += ["", "## Temporal averaging", ""]
    if all("averaging" in r for r in rows):
        averaged = list(rows[0]["averaging"])
        lines += ["The noise is fresh in every window; a consumer who re-bins a longer span "
                  "averages it. Rank-1 on clips of the first 1 to 6 s of each test recording "
                  f"(counts scaled to the {config.clip_s:g} s level):", "",
                  "| span | clean net, clean clips | " + " | ".join(averaged) + " |",
                  "|---|---|" + "---|" * len(averaged)]
        for span in sorted(rows[0]["averaging"][averaged[0]], key=int):
            secs = int(span) * WINDOW_MS / 1000
            cells = [fmt([r["averaging"][a][span] for r in rows]) for a in averaged]
            lines.append(f"| {secs:g} s | "
                         f"{fmt([r['clean']['averaging'][span] for r in results])} | "
                         + " | ".join(cells) + " |")
    else:
        lines.append("Not measured for this variant (the run stopped before it).")
    lines += ["", "## Privacy against utility over the anonymizer's loss weights", "",
              "| variant | strongest fresh attacker, rank-1 | gesture top-1 (pipeline) "
              "| gesture top-1 (post-trained) | events out / in |", "|---|---|---|---|---|"]
    for k in keys:
        rs = [r["weights"][k] for r in results]
        a = strongest_attacker(rs)
        n, kinds = len(common_attackers(rs)), len(ATTACKERS) * 2
        lines.append(f"| {Variant.from_key(k).label} | "
                     f"{fmt([r['attackers'][a]['rank1'] for r in rs])} ({a}"
                     f"{'' if n == kinds else f'; {n} of {kinds} ran'}) | "
                     f"{fmt([r['target_top1_pipeline'] for r in rs])} | "
                     f"{fmt([gesture(r) for r in rs]) if 'target_top1_post' in rs[0] else '-'} | "
                     f"{fmt([r['event_rate_ratio'] for r in rs])} |")
    if real:
        lines += ["", "## Real recordings (event rate of the shipped model)", "",
                  "| recording | events in | events out | out / in |", "|---|---|---|---|"]
        for name, v in real.items():
            lines.append(f"| {name} | {v['events_in']:,} | {v['events_out']:,} | "
                         f"{v['ratio']:.2f} |" if "ratio" in v else f"| {name} | "
                         f"unreadable: {v['error']} | | |")
    lines += ["", f"![privacy and utility]({plot.name})", "", "## Per seed", "", "```",
              json.dumps(results, indent=1), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    _plot(plot, config, results, main, keys)


def _plot(path: Path, config: StudyConfig, results: list[dict], main: str,
          keys: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])
    for i, key in enumerate(keys):
        rs = [r["weights"][key] for r in results]
        x = np.mean([r["attackers"][strongest_attacker(rs)]["rank1"] for r in rs])
        y = np.mean([gesture(r) for r in rs])
        v = Variant.from_key(key)
        a.scatter(x, y, color="C1" if key == main else "C0",
                  label="shipped" if key == main else None)
        a.annotate(f"w {v.reid_weight:g}" + (f", clean {v.clean_target_weight:g}"
                                             if v.clean_target_weight else ""),
                   (x, y), textcoords="offset points", xytext=(6, 8 - 14 * (i % 2)),
                   fontsize=8)
    a.scatter(clean_r1, clean_t, color="C3", marker="*", s=120, label="clean")
    a.axvline(0.5 * clean_r1, color="grey", ls="--", lw=0.8)
    a.axhline(clean_t - 0.10, color="grey", ls=":", lw=0.8)
    a.set_xlabel("Re-ID rank-1 of the strongest fresh attacker (lower is more private)\n"
                 "dashed: -50% of clean; dotted: gesture 10 points under clean", fontsize=9)
    a.set_ylabel("gesture top-1" + (" (post-trained)" if "target_top1_post" in rs[0] else ""))
    a.set_xlim(0, 1)
    a.set_ylim(0, 1)
    a.legend()
    a.set_title("privacy against utility")
    main = [r["weights"][main] for r in results]
    if all("averaging" in r for r in main):
        spans = list(main[0]["averaging"][f"attacker {config.clip_s:g} s"])
        secs = [int(s) * WINDOW_MS / 1000 for s in spans]
        order = np.argsort(secs)
        b.plot(np.array(secs)[order], [np.mean([r["clean"]["averaging"][spans[i]]
                                                for r in results]) for i in order],
               "o-", color="C3", label="clean")
        for k, name in enumerate(main[0]["averaging"]):
            b.plot(np.array(secs)[order], [np.mean([r["averaging"][name][spans[i]]
                                                    for r in main]) for i in order],
                   "o-", color=f"C{k}", label=name)
        b.legend()
    b.set_xlabel("seconds of stream re-binned")
    b.set_ylabel("Re-ID rank-1")
    b.set_ylim(0, 1)
    b.set_title("temporal averaging")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _clean_target_weights(args) -> list[float]:
    saved = getattr(args, "clean_target_weights", None)
    if saved is None:  # a results.json from before the sweep had one value
        saved = [getattr(args, "clean_target_weight", 0.0)]
    return list(saved)


def study_config(args) -> StudyConfig:
    data = DatasetConfig(users=args.users, test_users=args.test_users, reps=2, size=args.size,
                         duration_s=6.0)
    config = StudyConfig(data=data, fit=FitConfig(epochs=args.epochs, device=args.device),
                         pipeline=CompositeConfig(
                             epochs=args.pipeline_epochs, noise_budget=args.noise_budget,
                             reid_cap=getattr(args, "reid_cap", None)),
                         reid_weights=tuple(args.reid_weights),
                         clean_target_weights=tuple(_clean_target_weights(args)),
                         draws=args.draws)
    if args.tiny:
        config = replace(config, data=replace(data, users=4, test_users=2, size=32,
                                              duration_s=1.0),
                         clip_s=0.5, long_s=1.0, fit=replace(config.fit, epochs=1, batch=8),
                         pipeline=replace(config.pipeline, epochs=1, batch=8),
                         draws=1, denoise_width=8, denoise_depth=3)
    config.data.check()
    return config


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--test-users", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=45, help="every ClassNet's epochs")
    ap.add_argument("--pipeline-epochs", type=int, default=15)
    # the defaults are the committed report's sweep
    ap.add_argument("--reid-weights", type=float, nargs="+", default=[0.3, 1.0])
    ap.add_argument("--noise-budget", type=float, default=3.0)
    ap.add_argument("--reid-cap", type=float, default=None,
                    help="cap the Re-ID term at this triplet loss (the margin, 4, is chance)")
    ap.add_argument("--clean-target-weights", "--clean-target-weight", type=float, nargs="+",
                    default=[0.0, 1.0], help="weights of a frozen clean target net's CE in the "
                    "anonymizer's loss (each with every --reid-weights value)")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings in parallel (a seed's clean nets, then each variant x seed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="runs/privacy",
                    help="where benchmarks, results.json and the anonymizers go")
    ap.add_argument("--out", default="docs/privacy-report.md")
    ap.add_argument("--ship", default=None,
                    help="copy the chosen variant's first-seed anonymizer here")
    ap.add_argument("--real", default=str(REAL_DIR), help="real recordings for the event rate")
    ap.add_argument("--render", action="store_true",
                    help="no training: write the report (and --ship) from DATA/results.json "
                         "(or from what a stopped run finished), measuring the real "
                         "recordings here")
    ap.add_argument("--averaging-only", action="store_true",
                    help="only temporal averaging, for the anonymizers a stopped run saved in "
                         "DATA (then --render)")
    ap.add_argument("--tiny", action="store_true", help="a smoke run (meaningless numbers)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.tiny and args.seeds == [0, 1]:
        args.seeds = [0]
    data_dir = Path(args.data)
    results_file = data_dir / "results.json"
    command = ("python -m train.privacy_report " + " ".join(
        sys.argv[1:] if argv is None else argv)).strip()
    run_file = data_dir / "run.json"
    if args.averaging_only:
        config = study_config(args)
        seeds = [(replace(config, data=replace(config.data, seed=s)), data_dir / f"seed{s}")
                 for s in args.seeds]
        for seed_config, _ in seeds:
            dataset(data_dir, seed_config.data)
        _run_jobs([(study_averaging, (c, data_dir, d, config.variants)) for c, d in seeds],
                  args.jobs)
        print(f"temporal averaging written under {data_dir}; report with --render")
        return 0
    if args.render:
        if results_file.is_file():
            saved = json.loads(results_file.read_text())
            results = saved["results"]
        elif run_file.is_file():  # a run stopped at a time limit: what its jobs finished
            saved = json.loads(run_file.read_text())
            results = [r for r in (collect(data_dir / f"seed{s}", s)
                                   for s in saved["args"]["seeds"]) if r is not None]
            last = max((f.stat().st_mtime for f in data_dir.glob("seed*/rows/*.json")
                        if not f.name.endswith(".averaging.json")), default=saved["started"])
            saved.setdefault("seconds", last - saved["started"])  # or as run.json says
            saved.setdefault("note", "The run stopped before every job had finished; this "
                             "report holds what had (each row says which attackers ran).")
        else:
            raise AnonyNoiseError(f"{results_file}: no results to render (run without "
                                  "--render first)")
        config = study_config(argparse.Namespace(**saved["args"]))
        seconds, command, device = saved["seconds"], saved["command"], saved["device"]
        note = saved.get("note", "")
    else:
        config = study_config(args)
        started = time.time()
        device = describe_device(args.device)
        data_dir.mkdir(parents=True, exist_ok=True)
        results_file.unlink(missing_ok=True)
        _write_json(run_file, {"args": vars(args), "command": command, "device": device,
                               "started": started})
        seeds = [(replace(config, data=replace(config.data, seed=s)), data_dir / f"seed{s}")
                 for s in args.seeds]
        for seed_config, _ in seeds:  # every benchmark first (this uses all cores by itself)
            dataset(data_dir, seed_config.data)
        _run_jobs([(study_clean, (c, data_dir, d)) for c, d in seeds],
                  min(args.jobs, len(seeds)))
        variants = config.variants
        _run_jobs([(study_variant, (c, data_dir, d, v, config.full_table or v == variants[0]))
                   for v in variants for c, d in seeds], args.jobs)
        results = [collect(d, c.data.seed) for c, d in seeds]
        seconds = time.time() - started
        note = ""
        _write_json(results_file, {"args": vars(args), "results": results, "seconds": seconds,
                                   "command": command, "device": device})
    keys = complete_keys(results) if results else []
    if not keys:
        raise AnonyNoiseError(f"{data_dir}: no variant has finished on every seed")
    key = choose_variant(results, keys)
    shipped = data_dir / f"seed{results[0]['seed']}" / f"anonymizer-{key}.pt"
    if args.ship:
        Path(args.ship).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped, args.ship)
        print(f"shipped {shipped} as {args.ship}")
    real = {}
    real_dir = Path(args.real)
    if real_dir.is_dir() and shipped.is_file():
        out_dir = data_dir / "real-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        real = real_rates(shipped, real_dir, out_dir)
    out = Path(args.out)
    write_report(out, out.with_suffix(".png"), config, results, real, seconds, command, key,
                 device, note)
    print(f"wrote {out}")
    return 0


def describe_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"this {os.cpu_count()}-core CPU"


if __name__ == "__main__":
    sys.exit(run(main, prog="privacy_report"))
