"""The privacy report: what an attacker with our weights learns from the anonymized stream.

    python -m train.privacy_report --jobs 2 --ship anonynoise/models/default_anonymizer.pt
    python -m train.privacy_report --render --ship ...   # report again from results.json
    python -m train.privacy_report --tiny          # a smoke run for the test suite

Per seed (each a new synthetic benchmark, a new set of people), on a CPU-sized configuration:

1. clean target (gesture) and Re-ID nets on clean 3 s clips: the baseline;
2. the adversarial pipeline (train.composite): the light anonymizer on the stream's 50 ms
   windows, fresh noise per window, through the events round trip, judged on the clips a
   consumer re-bins from them; for every --reid-weights value; then, as the reference's
   post-training does, the pipeline's target net trained on anonymized clips as long as
   every other net: the gesture accuracy a consumer of the stream gets;
3. fresh attackers, trained on anonymized clips (the attacker has our weights, so it can make
   as many paired clean / anonymized examples as it likes) from scratch, from the clean Re-ID
   net and from the pipeline's adversary, each without and with a denoiser in front (a smaller
   DnCNN than the reference's, labelled as such); the last epoch, evaluated on unseen people;
4. temporal averaging: the noise is fresh in every window, so re-binning longer spans averages
   it out; rank-1 over 1 to 6 s of stream, for the clean net, the 3 s attacker and an attacker
   trained on 6 s;
5. the event rate out / in, on the test clips and (with the shipped model, if the folder is
   there) on the real recordings.

The report (markdown + PNG) gives means over seeds. With --ship the first seed's anonymizer at
the main --reid-weight becomes the stream's default model.
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO
from anonynoise.checkpoint import Representation, save_checkpoint
from anonynoise.cli import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import from_dvsgesture_array
from anonynoise.models import LightAnonNet
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
ATTACKERS = [("scratch", None), ("from clean", "clean"), ("from adversary", "adversary")]


@dataclass
class StudyConfig:
    data: DatasetConfig = field(default_factory=DatasetConfig)
    clip_s: float = 3.0
    long_s: float = 6.0
    fit: FitConfig = field(default_factory=FitConfig)
    pipeline: CompositeConfig = field(default_factory=CompositeConfig)
    reid_weights: tuple[float, ...] = (1.0, 3.0, 10.0)
    full_table: bool = True     # every weight gets every attacker (else the first only)
    draws: int = 2              # anonymized copies of the training set for the attackers
    anon_width: int = 8
    anon_form: str = "mean_scale"
    denoise_width: int = 32     # the reference's DnCNN is 128 wide and 15 deep
    denoise_depth: int = 5

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
        x = anonymize_windows(anon, torch.from_numpy(windows[k:k + batch]).to(device).float())
        for s in spans:
            out[s].append((compose_clips(x[:, :s], clip_bins) * (spans[0] / s)).cpu())
    return {s: torch.cat(v).numpy() for s, v in out.items()}


def clean_spans(windows: np.ndarray, spans: list[int]) -> dict[int, np.ndarray]:
    return {s: clean_clips(windows[:, :s]) * (spans[0] / s) for s in spans}


def _mass(x: np.ndarray) -> float:
    return float(np.clip(x, 0, None).sum())


def study_seed(config: StudyConfig, data_dir: Path, save_dir: Path | None = None) -> dict:
    """Everything for one seed; returns the rows of the report. With save_dir, every
    weight's anonymizer is saved there (anonymizer-w<weight>.pt)."""
    started = time.time()
    seed = config.data.seed
    device = config.fit.device
    root = dataset(data_dir, config.data)
    n_clip, n_long = config.clip_windows, config.long_windows
    train_w, rec_train = load_windows(root, "train", n_long)
    test_w, rec_test = load_windows(root, "test", n_long)
    t_train = np.array([r.target for r in rec_train])
    t_test = np.array([r.target for r in rec_test])
    u_test = np.array([r.user for r in rec_test])
    users = sorted({r.user for r in rec_train})
    id_train = np.array([users.index(r.user) for r in rec_train])
    first_session = {}
    for r in rec_test:
        first_session.setdefault(r.user, r.lighting)
    query = np.array([r.lighting == first_session[r.user] for r in rec_test])
    files = np.arange(len(rec_test))
    fit = replace(config.fit, seed=seed)

    def reid(net, x, front=None) -> dict:
        return reid_accuracy(net, x, u_test, files, t_test, query, device, front=front).as_dict()

    clean_train = clean_clips(train_w[:, :n_clip])
    clean_test = clean_clips(test_w[:, :n_clip])
    log.info("seed %d: %d train / %d test recordings, %s", seed, len(rec_train), len(rec_test),
             train_w.shape[1:])
    target_clean = fit_classnet(clean_train, t_train, 11, False, fit)
    reid_clean = fit_classnet(clean_train, id_train, len(users), True, fit)
    result = {"seed": seed, "clean": {"target_top1": target_accuracy(target_clean, clean_test,
                                                                     t_test, device),
                                      **reid(reid_clean, clean_test)}}
    spans = [int(round(s * 1000 / WINDOW_MS)) for s in range(1, int(config.long_s) + 1)]
    spans = [n_clip] + [s for s in spans if s != n_clip]
    result["clean"]["averaging"] = {str(s): reid(reid_clean, c)["rank1"]
                                    for s, c in clean_spans(test_w, spans).items()}
    log.info("seed %d clean: %s", seed, json.dumps(result["clean"]))
    result["weights"] = {}
    for weight in config.reid_weights:
        main = config.full_table or weight == config.reid_weights[0]
        torch.manual_seed(seed)
        anon = LightAnonNet(2 * BINS, form=config.anon_form, width=config.anon_width)
        target_net, adversary = copy.deepcopy(target_clean), copy.deepcopy(reid_clean)
        history = train_composite(anon, target_net, adversary, train_w[:, :n_clip], t_train,
                                  id_train, replace(config.pipeline, reid_weight=weight,
                                                    seed=seed, device=device))
        test_spans = anonymized_spans(anon, test_w, spans if main else [n_clip], device=device)
        anon_test = test_spans[n_clip]
        row = {"pipeline": history[-1],
               "event_rate_ratio": _mass(anon_test) / _mass(clean_test),
               "target_top1_pipeline": target_accuracy(target_net, anon_test, t_test, device),
               "target_top1_clean_net": target_accuracy(target_clean, anon_test, t_test, device),
               "adversary": reid(adversary, anon_test), "attackers": {}}
        draws = [anonymized_spans(anon, train_w[:, :n_clip], [n_clip], device=device)[n_clip]
                 for _ in range(config.draws)]
        # the reference's post-training of the target: from the pipeline's last target net,
        # on anonymized clips, as long as every other ClassNet; what a consumer would deploy
        target_post = fit_classnet(draws, t_train, 11, False, fit, init=target_net)
        row["target_top1_post"] = target_accuracy(target_post, anon_test, t_test, device)
        log.info("seed %d weight %g target post-trained: %.3f", seed, weight,
                 row["target_top1_post"])
        inits = {"clean": reid_clean, "adversary": adversary}
        kinds = [(name, init, dn) for name, init in ATTACKERS for dn in (False, True)] if main \
            else [("from clean", "clean", False)]
        for name, init, with_denoiser in kinds:
            label = name + (" + denoiser" if with_denoiser else "")
            denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth) \
                if with_denoiser else None
            out = fit_classnet(draws, id_train, len(users), True, fit,
                               init=inits.get(init), denoiser=denoiser, clean=clean_train)
            net, front = out if with_denoiser else (out, None)
            row["attackers"][label] = reid(net, anon_test, front)
            if label == "from clean":
                attacker_clip = net
            log.info("seed %d weight %g %s: %s", seed, weight, label,
                     json.dumps(row["attackers"][label]))
        if main:
            # temporal averaging: the 3 s attacker on longer spans, and one trained on 6 s
            row["averaging"] = {f"attacker {config.clip_s:g} s": {
                str(s): reid(attacker_clip, c)["rank1"] for s, c in test_spans.items()}}
            long_draws = [anonymized_spans(anon, train_w, [n_long], device=device)[n_long]
                          for _ in range(config.draws)]
            attacker_6s = fit_classnet(long_draws, id_train, len(users), True, fit,
                                       init=reid_clean)
            row["averaging"][f"attacker {config.long_s:g} s"] = {
                str(s): reid(attacker_6s, c)["rank1"] for s, c in test_spans.items()}
        if save_dir is not None:
            _save_anonymizer(anon, save_dir / f"anonymizer-w{weight:g}.pt", config, weight, row)
        result["weights"][str(weight)] = row
        log.info("seed %d weight %g: %s", seed, weight, json.dumps(row))
    result["seconds"] = round(time.time() - started, 1)
    return result


def _save_anonymizer(anon, path: Path, config: StudyConfig, weight: float, row: dict) -> None:
    rep = Representation(bins=BINS, polarities=2, width=None, height=None,
                         window_us=WINDOW_MS * 1000)
    record = {"stage": "privacy_report", "trained_on": "synthetic people only",
              "command": "python -m " + " ".join(["train.privacy_report", *sys.argv[1:]]),
              "reid_weight": weight,
              "config": json.loads(json.dumps(asdict(config), default=str)),
              "metrics": {"event_rate_ratio": row["event_rate_ratio"],
                          "target_top1_pipeline": row["target_top1_pipeline"],
                          "adversary_rank1": row["adversary"]["rank1"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, copy.deepcopy(anon).cpu(), rep, record)
    log.info("saved %s", path)


def strongest(row: dict) -> str:
    return max(row["attackers"], key=lambda a: row["attackers"][a]["rank1"])


def gesture(row: dict) -> float:
    """The gesture top-1 a weight is judged by: the target net post-trained on anonymized
    clips (the reference's protocol); results from before that row existed fall back to the
    pipeline's own target net."""
    return row.get("target_top1_post", row["target_top1_pipeline"])


def gesture_source(rows: list[dict]) -> str:
    return ("target net post-trained on anonymized clips" if "target_top1_post" in rows[0]
            else "the pipeline's target net")


def choose_weight(results: list[dict], weights) -> float:
    """The weight that ships: the smallest whose strongest fresh attacker (mean over seeds)
    is cut by >= 50% relative to clean with the gesture within 10 points of clean; else the
    most private within the gesture bar; else the one that keeps the gesture best."""
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])

    def scores(w):
        rows = [r["weights"][str(w)] for r in results]
        names = list(rows[0]["attackers"])
        best = max(np.mean([r["attackers"][a]["rank1"] for r in rows]) for a in names)
        return 1 - best / clean_r1, clean_t - np.mean([gesture(r) for r in rows])

    both = [w for w in sorted(weights) if scores(w)[0] >= 0.5 and scores(w)[1] <= 0.10]
    if both:
        return both[0]
    useful = [w for w in weights if scores(w)[1] <= 0.10]
    if useful:
        return max(useful, key=lambda w: scores(w)[0])
    return min(weights, key=lambda w: scores(w)[1])


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
    # one seed per core beats two threads per seed (on a GPU machine: the cores shared out)
    torch.set_num_threads(job[-1])
    job = job[:-1]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return study_seed(*job)


def _stats(values) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), 0.0)


def fmt(values) -> str:
    m, s = _stats(values)
    return f"{m:.3f} ± {s:.3f}"


def write_report(path: Path, plot: Path, config: StudyConfig, results: list[dict],
                 real: dict, seconds: float, command: str, main_weight: float,
                 device: str, note: str = "") -> None:
    main = str(main_weight)
    rows = [r["weights"][main] for r in results]
    clean_r1 = [r["clean"]["rank1"] for r in results]
    attackers = list(rows[0]["attackers"])
    strongest = max(attackers, key=lambda a: np.mean([r["attackers"][a]["rank1"] for r in rows]))
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
        f"nets, Re-ID weight {main_weight:g} (chosen by the rule below from "
        f"{', '.join(f'{w:g}' for w in config.reid_weights)}), noise budget "
        f"{config.pipeline.noise_budget} x the input's events (penalty), Re-ID term cap "
        f"{config.pipeline.reid_cap}, frozen clean target net weight "
        f"{config.pipeline.clean_target_weight:g}, and the runtime's "
        f"cap of {DEFAULT_MAX_EVENT_RATIO:g} events out per event in, per window, in expectation "
        "(anonynoise.anonymizer.cap_event_rate).",
        "- The shipped weight: the smallest Re-ID weight whose strongest fresh attacker is cut "
        "by at least 50% relative to clean with the gesture within 10 points of clean; else "
        "the most private one within the gesture bar.",
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
    lines += ["", "## Temporal averaging", "",
              "The noise is fresh in every window; a consumer who re-bins a longer span averages "
              "it. Rank-1 on clips of the first 1 to 6 s of each test recording (counts scaled "
              f"to the {config.clip_s:g} s level):", "",
              "| span | clean net, clean clips | " + " | ".join(rows[0]["averaging"]) + " |",
              "|---|---|" + "---|" * len(rows[0]["averaging"])]
    for span in sorted(rows[0]["averaging"][f"attacker {config.clip_s:g} s"], key=int):
        secs = int(span) * WINDOW_MS / 1000
        cells = [fmt([r["averaging"][a][span] for r in rows]) for a in rows[0]["averaging"]]
        lines.append(f"| {secs:g} s | {fmt([r['clean']['averaging'][span] for r in results])} "
                     f"| " + " | ".join(cells) + " |")
    lines += ["", "## Privacy against utility over the Re-ID weight", "",
              "| Re-ID weight | strongest fresh attacker, rank-1 | gesture top-1 (pipeline) "
              "| gesture top-1 (post-trained) | events out / in |", "|---|---|---|---|---|"]
    for w in config.reid_weights:
        rs = [r["weights"][str(w)] for r in results]
        a = max(rs[0]["attackers"], key=lambda k: np.mean([r["attackers"][k]["rank1"]
                                                           for r in rs]))
        lines.append(f"| {w:g} | {fmt([r['attackers'][a]['rank1'] for r in rs])} ({a}) | "
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
    _plot(plot, config, results, main_weight)


def _plot(path: Path, config: StudyConfig, results: list[dict], main_weight: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])
    for w in config.reid_weights:
        rs = [r["weights"][str(w)] for r in results]
        x = max(np.mean([r["attackers"][k]["rank1"] for r in rs]) for k in rs[0]["attackers"])
        y = np.mean([gesture(r) for r in rs])
        a.scatter(x, y, color="C0")
        a.annotate(f"weight {w:g}", (x, y), textcoords="offset points", xytext=(5, 5))
    a.scatter(clean_r1, clean_t, color="C3", marker="*", s=120, label="clean")
    a.set_xlabel("Re-ID rank-1 of the strongest fresh attacker (lower is more private)")
    a.set_ylabel(f"gesture top-1 ({gesture_source(rs)})")
    a.set_xlim(0, 1)
    a.set_ylim(0, 1)
    a.legend()
    a.set_title("privacy against utility")
    main = [r["weights"][str(main_weight)] for r in results]
    spans = list(main[0]["averaging"][f"attacker {config.clip_s:g} s"])
    secs = [int(s) * WINDOW_MS / 1000 for s in spans]
    order = np.argsort(secs)
    b.plot(np.array(secs)[order], [np.mean([r["clean"]["averaging"][spans[i]] for r in results])
                                   for i in order], "o-", color="C3", label="clean")
    for k, name in enumerate(main[0]["averaging"]):
        b.plot(np.array(secs)[order], [np.mean([r["averaging"][name][spans[i]] for r in main])
                                       for i in order], "o-", color=f"C{k}", label=name)
    b.set_xlabel("seconds of stream re-binned")
    b.set_ylabel("Re-ID rank-1")
    b.set_ylim(0, 1)
    b.legend()
    b.set_title("temporal averaging")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def study_config(args) -> StudyConfig:
    data = DatasetConfig(users=args.users, test_users=args.test_users, reps=2, size=args.size,
                         duration_s=6.0)
    config = StudyConfig(data=data, fit=FitConfig(epochs=args.epochs, device=args.device),
                         pipeline=CompositeConfig(
                             epochs=args.pipeline_epochs, noise_budget=args.noise_budget,
                             reid_cap=getattr(args, "reid_cap", None),
                             clean_target_weight=getattr(args, "clean_target_weight", 0.0)),
                         reid_weights=tuple(args.reid_weights), draws=args.draws)
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
    ap.add_argument("--reid-weights", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    ap.add_argument("--noise-budget", type=float, default=3.0)
    ap.add_argument("--reid-cap", type=float, default=None,
                    help="cap the Re-ID term at this triplet loss (the margin, 4, is chance)")
    ap.add_argument("--clean-target-weight", type=float, default=0.0,
                    help="weight of a frozen clean target net's CE in the anonymizer's loss")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1, help="seeds in parallel")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default="runs/privacy",
                    help="where benchmarks, results.json and the anonymizers go")
    ap.add_argument("--out", default="docs/privacy-report.md")
    ap.add_argument("--ship", default=None,
                    help="copy the chosen weight's first-seed anonymizer here")
    ap.add_argument("--real", default=str(REAL_DIR), help="real recordings for the event rate")
    ap.add_argument("--render", action="store_true",
                    help="no training: write the report (and --ship) from DATA/results.json, "
                         "measuring the real recordings here")
    ap.add_argument("--tiny", action="store_true", help="a smoke run (meaningless numbers)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.tiny and args.seeds == [0, 1]:
        args.seeds = [0]
    data_dir = Path(args.data)
    results_file = data_dir / "results.json"
    command = ("python -m train.privacy_report " + " ".join(
        sys.argv[1:] if argv is None else argv)).strip()
    if args.render:
        if not results_file.is_file():
            raise AnonyNoiseError(f"{results_file}: no results to render (run without "
                                  "--render first)")
        saved = json.loads(results_file.read_text())
        config = study_config(argparse.Namespace(**saved["args"]))
        results, seconds, command, device = (saved["results"], saved["seconds"],
                                             saved["command"], saved["device"])
        note = saved.get("note", "")
    else:
        config = study_config(args)
        started = time.time()
        jobs = [(replace(config, data=replace(config.data, seed=s)), data_dir,
                 data_dir / f"seed{s}") for s in args.seeds]
        for job in jobs:  # generate every benchmark first (this uses all cores by itself)
            dataset(data_dir, job[0].data)
        if args.jobs > 1:
            threads = max(1, (os.cpu_count() or 2) // args.jobs)
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                results = pool.map(_job, [(*job, threads) for job in jobs], chunksize=1)
        else:
            results = [study_seed(*job) for job in jobs]
        seconds = time.time() - started
        device = describe_device(args.device)
        note = ""
        results_file.write_text(json.dumps({"args": vars(args), "results": results,
                                            "seconds": seconds, "command": command,
                                            "device": device}, indent=1))
    weight = choose_weight(results, config.reid_weights)
    shipped = data_dir / f"seed{results[0]['seed']}" / f"anonymizer-w{weight:g}.pt"
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
    write_report(out, out.with_suffix(".png"), config, results, real, seconds, command, weight,
                 device, note)
    print(f"wrote {out}")
    return 0


def describe_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"this {os.cpu_count()}-core CPU"


if __name__ == "__main__":
    sys.exit(run(main, prog="privacy_report"))
