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
   windows (behind the stream's privacy filters with --filters; every attacker then sees
   the filtered, anonymized windows), fresh noise per window, through the events round
   trip, judged on the clips a
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
5. the event rate out / in, on the test clips and (with the chosen variant's anonymizer, if
   the folder is there) on the real recordings.

Each seed's clean nets and then each variant x seed is one job (--jobs of them at once, the
trainings are in train.privacy_study); a job rewrites its row under DATA/seed<N>/rows/ after
every step, so a run stopped at a time limit keeps what it finished and --render reports it. The report (markdown + PNG) gives means over
seeds; with --ship the chosen variant's anonymizer from the seed chosen by the same rule
(choose_seed) becomes the stream's default.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO
from anonynoise.atomic import atomic_output
from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.filters import FilterConfig
from anonynoise.memory import keep_freed_memory
from anonynoise.models.classnet import WIDTH
from anonynoise.synth.dataset import DatasetConfig
from train.classify import FitConfig
from train.composite import CompositeConfig
from train.privacy_study import (ATTACKERS, BINS, WINDOW_MS, StudyConfig, Variant, collect,
                                 study_averaging, study_clean, study_variant, write_json)
from train.synth_check import dataset

log = logging.getLogger(__name__)
REAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"


POST = ("target_top1_post", "target_top1_post_denoised")
# the two privacy-utility bars: the strongest fresh attacker's rank-1 cut by at least
# this fraction of clean, the gesture's top-1 at most this far (a fraction) under clean
PRIVACY_CUT = 0.5
GESTURE_LOSS = 0.10


def gesture(row: dict) -> float:
    """The gesture top-1 a variant is judged by: the best consumer, as privacy is judged by
    the strongest attacker: the better of the target nets post-trained on anonymized clips
    without and with a denoiser in front (the reference's protocol). Results from before
    those rows existed fall back to the pipeline's own target net."""
    post = [row[k] for k in POST if k in row]
    return max(post) if post else row["target_top1_pipeline"]


def gesture_source(rows: list[dict]) -> str:
    if all(POST[1] in r for r in rows):
        return "the better target net post-trained on anonymized clips, without or with a denoiser"
    return ("target net post-trained on anonymized clips" if POST[0] in rows[0]
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


def _privacy_first(candidates: list, attacker, loss, clean_rank1) -> object:
    """The most private candidate (lowest attacker rank-1) of those that keep the gesture
    within GESTURE_LOSS of clean; if none does, the one that misses the two bars by the least
    in total (points of gesture over GESTURE_LOSS plus the attacker's rank-1 over
    1 - PRIVACY_CUT of clean, as fractions). Privacy first, but a stream nobody can use
    protects no one: an anonymizer that destroyed the gesture is "private" only because every
    net fails on its output, and must not beat one that barely misses both bars."""
    useful = [c for c in candidates if loss(c) <= GESTURE_LOSS]
    if useful:
        return min(useful, key=attacker)

    def missed(c):
        return (max(0.0, loss(c) - GESTURE_LOSS)
                + max(0.0, attacker(c) / clean_rank1(c) - (1 - PRIVACY_CUT)))

    return min(candidates, key=missed)


def choose_variant(results: list[dict], keys: list[str]) -> str:
    """The variant that ships, by _privacy_first on means over seeds (the strongest fresh
    attacker being the one strongest on average)."""
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])

    def attacker(k):
        rows = [r["weights"][k] for r in results]
        return np.mean([r["attackers"][strongest_attacker(rows)]["rank1"] for r in rows])

    def loss(k):
        return clean_t - np.mean([gesture(r["weights"][k]) for r in results])

    return _privacy_first(keys, attacker, loss, lambda k: clean_r1)


def choose_seed(results: list[dict], key: str) -> dict:
    """The seed whose anonymizer of the variant ships, by the same rule, each seed judged
    against its own clean nets and its own strongest attacker: the adversarial training can
    go over the edge on one seed (the gesture destroyed) while the other holds, and shipping
    the first seed's anonymizer regardless would have shipped that one."""

    def attacker(r):
        return max(a["rank1"] for a in r["weights"][key]["attackers"].values())

    def loss(r):
        return r["clean"]["target_top1"] - gesture(r["weights"][key])

    return _privacy_first(results, attacker, loss, lambda r: r["clean"]["rank1"])


def real_rates(model: Path, real_dir: Path, out_dir: Path,
               filters: FilterConfig | None = None) -> dict:
    """Events out / in of the model (behind the filters) on each real recording (offline
    path, as the stream)."""
    from anonynoise.offline import anonymize_file

    rates = {}
    for f in sorted(real_dir.glob("*")):
        if f.suffix.lower() not in (".aedat4", ".raw", ".dat"):
            continue
        try:
            s = anonymize_file(f, out_dir / (f.stem + ".npy"), model, device="cpu",
                               filters=filters)
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
    keep_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return fn(*args)
    except Exception as e:
        # now: Pool.map raises it only once every other job has ended, maybe an hour later
        log.error("job %s failed: %s: %s", fn.__name__, type(e).__name__, e)
        raise


def _seeds(config: StudyConfig, seeds: list[int], data_dir: Path) -> list[tuple]:
    """(the seed's config, its folder) for every seed, each benchmark generated first (the
    generator uses every core by itself)."""
    out = [(replace(config, data=replace(config.data, seed=s)), data_dir / f"seed{s}")
           for s in seeds]
    for seed_config, _ in out:
        dataset(data_dir, seed_config.data)
    return out


def _run_jobs(jobs: list[tuple], parallel: int) -> list:
    if parallel <= 1:
        return [fn(*args) for fn, args in jobs]
    threads = max(1, (os.cpu_count() or 2) // parallel)
    with multiprocessing.get_context("spawn").Pool(parallel) as pool:
        return pool.map(_job, [(fn, args, threads) for fn, args in jobs], chunksize=1)


def _clean_baselines(seeds: list[tuple], data_dir: Path, jobs: int) -> list[dict]:
    """Every seed's clean nets (a report's first step, --clean-only's only one)."""
    return _run_jobs([(study_clean, (c, data_dir, d)) for c, d in seeds], min(jobs, len(seeds)))


def _stats(values) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    return (float(np.mean(values)), float(np.std(values))) if values else (float("nan"), 0.0)


def fmt(values) -> str:
    m, s = _stats(values)
    return f"{m:.3f} ± {s:.3f}"


def write_report(path: Path, plot: Path, config: StudyConfig, results: list[dict],
                 real: dict, seconds: float, command: str, main: str,
                 device: str, note: str = "", shipped_seed: int | None = None, *,
                 ships: bool) -> None:
    """ships: the run copied its chosen anonymizer to the stream's model (--ship); without it
    the report is a study of that configuration and must not call its anonymizer shipped."""
    keys = complete_keys(results)
    model = "shipped model" if ships else "chosen variant's anonymizer, not shipped"
    chosen = Variant.from_key(main)
    budget = config.budget_of(chosen)
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
        "# Privacy report: the shipped light anonymizer against fresh attackers" if ships else
        "# Privacy report: a light anonymizer against fresh attackers (a study: nothing "
        "shipped)", "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}: {seconds / 60:.1f} minutes "
        f"on {device}. Seeds {', '.join(str(r['seed']) for r in results)}, each a new "
        "synthetic benchmark (new people); numbers are means ± standard deviations over seeds.",
        "", *([note, ""] if note else []),
        *(["A quick probe (`--quick`), not the report: each variant met one fresh attacker "
           "(from the clean Re-ID net, with a denoiser) and no temporal averaging.", ""]
          if config.quick else []),
        "## Configuration", "",
        f"- Synthetic benchmark: {d.users} people ({d.users - d.test_users} train, "
        f"{d.test_users} unseen test), {d.reps} sessions, 11 gestures, {d.duration_s:g} s "
        f"recordings at {d.size}x{d.size}; "
        + (f"the nets train on every {config.clip_s:g} s span of each training recording "
           f"({config.long_windows // config.clip_windows} clips a recording)"
           if config.all_spans else f"the nets train on the first {config.clip_s:g} s of each "
           "training recording") + f", the tests are the first {config.clip_s:g} s.",
        f"- Stream: {WINDOW_MS} ms windows of {BINS} bins x 2 polarities; the anonymizer runs "
        "on each window with fresh noise; its output goes through the events round trip "
        "(negative values are no events, stochastic rounding); a consumer re-bins "
        f"{config.clip_s:g} s of windows into a {BINS}-bin clip, which is what every net below "
        "sees.",
        f"- Anonymizer: LightAnonNet width {config.anon_width}, form {config.anon_form}, "
        + ("starting as the identity (its output layer zero), "
           if config.anon_identity_start else "from a default initialisation, ") +
        f"trained by train.composite for {config.pipeline.epochs} epochs (Adam "
        f"{config.pipeline.lr_anon:g}; helpers {config.pipeline.lr_helper:g}) from the clean "
        f"nets, {chosen.label} (chosen by the rule below from "
        f"{'; '.join(Variant.from_key(k).label for k in keys)}), noise budget "
        f"{budget:g} x the input's events (penalty, "
        + ("on the anonymizer's own output" if all(
            "uncapped_event_rate_ratio" in r["weights"][k]["pipeline"]
            for r in results for k in keys)
           else "judged after the runtime's cap, which hid the output's scale: a run before "
           "that was fixed") + "), "
        + ("Re-ID term the adversary's posterior over identities pushed to uniform "
           "(anonynoise.losses.confusion_loss)" if config.pipeline.reid_push == "confusion"
           else f"Re-ID term cap {config.cap_of(chosen)}")
        + _bound_text(config.pipeline) + _adversary_text(config.pipeline)
        + _rollback_text(config.pipeline, results, main)
        + ", and the runtime's "
        f"cap of {DEFAULT_MAX_EVENT_RATIO:g} events out per event in, per window, in expectation "
        "(anonynoise.anonymizer.cap_event_rate).",
        *([_filters_text(config)] if config.filter_config else []),
        "- The clean target weight is the weight of a frozen copy of the clean target net's "
        "cross-entropy in the anonymizer's loss: a consumer's net trained on clean events "
        "must still work.",
        f"- The variant that {'ships' if ships else 'would ship'}: the most private (strongest "
        "fresh attacker) of those that "
        f"keep the gesture within {100 * GESTURE_LOSS:g} points of clean; if none does, the one "
        "that misses the two bars by the least in total (gesture points over the bar plus the "
        "attacker's rank-1 over its bar, as fractions of clean: an anonymizer that destroyed "
        "the gesture is not chosen for the privacy that comes with it)"
        + ("." if shipped_seed is None else
                  f"; its anonymizer is seed {shipped_seed}'s, the seed chosen by the same rule "
                  "(each seed judged against its own clean nets and strongest attacker)."),
        f"- Every ClassNet (clean baseline, attackers): {config.fit.network}"
        + (f" {config.fit.width} wide (the ResNet's first stage has {WIDTH} channels)"
           if config.fit.width != WIDTH else "") + ", "
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
           f"protocol) | | | {fmt([r[POST[0]] for r in rows])} |"] if POST[0] in rows[0] else []),
        *([f"| anonymized, the same with a denoiser in front (the reference's --denoisenet) "
           f"| | | {fmt([r[POST[1]] for r in rows])} |"]
          if all(POST[1] in r for r in rows) else []),
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
        f"| strongest fresh attacker ({strongest}) rank-1 reduced >= {100 * PRIVACY_CUT:g}% "
        "relative to clean | "
        f"{np.mean(best_r1):.3f}, reduced by {100 * reduction:.0f}% | "
        f"{'yes' if reduction >= PRIVACY_CUT else 'no'} |",
        f"| gesture top-1 ({gesture_source(rows)}) within {100 * GESTURE_LOSS:g} points of "
        "clean | "
        f"{np.mean(judged_t):.3f} vs {np.mean(clean_t):.3f} "
        f"({100 * (np.mean(judged_t) - np.mean(clean_t)):+.1f} points) | "
        f"{'yes' if np.mean(clean_t) - np.mean(judged_t) <= GESTURE_LOSS else 'no'} |",
        f"| event rate out / in <= 3, synthetic test clips | {fmt(rate)} | "
        f"{'yes' if max(rate) <= 3 else 'no'} |",
    ]
    if real:
        ok = [v["ratio"] for v in real.values() if "ratio" in v]
        lines.append(f"| event rate out / in <= 3, real recordings ({model}) | "
                     f"{min(ok):.2f} to {max(ok):.2f} | {'yes' if max(ok) <= 3 else 'no'} |"
                     if ok else "| event rate, real recordings | none readable | |")
    else:
        lines.append("| event rate, real recordings | not measured (../shared/data/real absent "
                     f"or no {model}) | |")
    if device.endswith("-core CPU"):  # the bar is the report's cost on a CPU (describe_device)
        lines.append(f"| the whole report <= 30 minutes on this CPU | {seconds / 60:.1f} "
                     f"minutes | {'yes' if seconds <= 30 * 60 else 'no'} |")
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
              "| gesture top-1 (post-trained) | events out / in | the anonymizer's own events "
              "/ in, before the runtime's cap (last pipeline epoch) | steps with the Re-ID push "
              "on (last pipeline epoch, with --target-ce-bound) |", "|---|---|---|---|---|---|---|"]
    for k in keys:
        rs = [r["weights"][k] for r in results]
        a = strongest_attacker(rs)
        n, kinds = len(common_attackers(rs)), len(ATTACKERS) * 2
        lines.append(f"| {Variant.from_key(k).label} | "
                     f"{fmt([r['attackers'][a]['rank1'] for r in rs])} ({a}"
                     f"{'' if n == kinds else f'; {n} of {kinds} ran'}) | "
                     f"{fmt([r['target_top1_pipeline'] for r in rs])} | "
                     f"{fmt([gesture(r) for r in rs]) if 'target_top1_post' in rs[0] else '-'} | "
                     f"{fmt([r['event_rate_ratio'] for r in rs])} | "
                     f"{_last_epoch(rs, 'uncapped_event_rate_ratio')} | "
                     f"{_last_epoch(rs, 'reid_active')} |")
    if real:
        lines += ["", f"## Real recordings (event rate of the {model})", "",
                  "| recording | events in | events out | out / in |", "|---|---|---|---|"]
        for name, v in real.items():
            lines.append(f"| {name} | {v['events_in']:,} | {v['events_out']:,} | "
                         f"{v['ratio']:.2f} |" if "ratio" in v else f"| {name} | "
                         f"unreadable: {v['error']} | | |")
    lines += ["", f"![privacy and utility]({plot.name})", "", "## Per seed", "", "```",
              json.dumps(results, indent=1), "```", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    _plot(plot, config, results, main, keys, "shipped" if ships else "chosen")


def _filters_text(config: StudyConfig) -> str:
    f = config.filter_config
    return (f"- Privacy filters in front of the anonymizer (`--filters {f.spec}`, "
            f"anonynoise.filters: {json.dumps(f.describe())}), run window by window as the "
            "stream runs them: the pipeline trains behind them and every net below sees the "
            "anonymizer's output on filtered windows (the clean rows excepted; a denoiser "
            "still learns to restore the unfiltered clip). Each recording has its own warp "
            f"(the stream holds one for {f.warp_period_s:g} s); each of the {config.draws} "
            "training copies has its own filter draws, the test clips others.")


def _bound_text(pipeline: CompositeConfig) -> str:
    if pipeline.target_ce_bound is None:
        return ""
    if pipeline.bound_dual_lr is None:
        return (" and switched off in steps where the pipeline's gesture net's cross-entropy "
                f"exceeds {pipeline.target_ce_bound:g}")
    return (" and scaled by a multiplier in [0, 1] that follows dual ascent on the pipeline's "
            f"gesture net's cross-entropy bound {pipeline.target_ce_bound:g} (step "
            f"{pipeline.bound_dual_lr:g})")


def _rollback_text(pipeline: CompositeConfig, results: list[dict], key: str) -> str:
    if not pipeline.rollback:
        return ""
    undone = [f"seed {r['seed']}: epoch "
              f"{', '.join(map(str, r['weights'][key]['rolled_back_epochs']))}"
              for r in results if r["weights"][key].get("rolled_back_epochs")]
    return ("; an epoch that ends with the pipeline's gesture net above chance (its "
            "cross-entropy over the last ~50 steps above ln of the gestures) is undone, every "
            "net and optimiser back to the previous epoch's end (here: "
            + ("; ".join(undone) if undone else "none") + ")")


def _adversary_text(pipeline: CompositeConfig) -> str:
    if (pipeline.adversary_steps == 1 and pipeline.lr_adversary is None
            and pipeline.adversaries == 1 and not pipeline.adversary_restart):
        return ""
    lr = pipeline.lr_helper if pipeline.lr_adversary is None else pipeline.lr_adversary
    times = "once" if pipeline.adversary_steps == 1 else f"{pipeline.adversary_steps} times"
    if pipeline.adversaries > 1:
        who = (f"each of the pipeline's {pipeline.adversaries} adversaries (the push is against "
               "their mean)")
    else:
        who = "the pipeline's adversary"
    restart = ""
    if pipeline.adversary_restart and pipeline.adversaries > 1:
        restart = "; each restarted from the clean Re-ID net once an epoch, at staggered steps"
    elif pipeline.adversary_restart:
        restart = "; restarted from the clean Re-ID net once an epoch"
    return f"; {who} updated {times} a batch (Adam {lr:g}){restart}"


def _last_epoch(rows: list[dict], name: str) -> str:
    """A last-epoch pipeline metric over seeds, "-" where it was not logged: the anonymizer's
    own event rate before 2026-11-27 (it was thousands of times the input's, the budget being
    judged after the cap, which scaled it back to 2.9), the push's share without a bound."""
    values = [r["pipeline"].get(name) for r in rows]
    return "-" if None in values else fmt(values)


def _plot(path: Path, config: StudyConfig, results: list[dict], main: str,
          keys: list[str], main_label: str) -> None:
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
                  label=main_label if key == main else None)
        a.annotate(f"w {v.reid_weight:g}" + (f", clean {v.clean_target_weight:g}"
                                             if v.clean_target_weight else "")
                   + (f", budget {v.noise_budget:g}" if v.noise_budget is not None else "")
                   + (f", cap {v.reid_cap:g}" if v.reid_cap is not None else ""),
                   (x, y), textcoords="offset points", xytext=(6, 8 - 14 * (i % 2)),
                   fontsize=8)
    a.scatter(clean_r1, clean_t, color="C3", marker="*", s=120, label="clean")
    a.axvline((1 - PRIVACY_CUT) * clean_r1, color="grey", ls="--", lw=0.8)
    a.axhline(clean_t - GESTURE_LOSS, color="grey", ls=":", lw=0.8)
    a.set_xlabel("Re-ID rank-1 of the strongest fresh attacker (lower is more private)\n"
                 f"dashed: -{100 * PRIVACY_CUT:g}% of clean; "
                 f"dotted: gesture {100 * GESTURE_LOSS:g} points under clean", fontsize=9)
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
    # a results.json from before the budget sweep saved one value
    budgets = args.noise_budget if isinstance(args.noise_budget, list) else [args.noise_budget]
    caps = getattr(args, "reid_cap", None)  # a results.json from before the cap sweep: one value
    caps = caps if isinstance(caps, list) else [caps]
    data = DatasetConfig(users=args.users, test_users=args.test_users, reps=2, size=args.size,
                         duration_s=6.0)
    # a results.json from before --width and the denoiser flags: the ResNet's width, 32 x 5
    fit = FitConfig(epochs=args.epochs, device=args.device,
                    width=getattr(args, "width", WIDTH))
    config = StudyConfig(data=data, fit=fit,
                         pipeline=CompositeConfig(
                             epochs=args.pipeline_epochs, noise_budget=budgets[0],
                             reid_cap=caps[0],
                             # a results.json from before --reid-push: the triplet
                             reid_push=getattr(args, "reid_push", "triplet"),
                             target_ce_bound=getattr(args, "target_ce_bound", None),
                             # a results.json from before these flags: the reference's one
                             # update a batch at lr_helper, the per-step switch
                             bound_dual_lr=getattr(args, "bound_dual_lr", None),
                             adversary_steps=getattr(args, "adversary_steps", 1),
                             lr_adversary=getattr(args, "adversary_lr", None),
                             adversaries=getattr(args, "adversaries", 1),
                             adversary_restart=getattr(args, "adversary_restart", False),
                             # a results.json from before the rollback: none
                             rollback=not getattr(args, "no_rollback", True)),
                         reid_weights=tuple(args.reid_weights),
                         clean_target_weights=tuple(_clean_target_weights(args)),
                         noise_budgets=tuple(budgets) if len(budgets) > 1 else (),
                         reid_caps=tuple(caps) if len(caps) > 1 else (),
                         # a results.json from before every span was used trained on the first
                         all_spans=not getattr(args, "first_span_only", True),
                         draws=args.draws,
                         denoise_width=getattr(args, "denoise_width", 32),
                         denoise_depth=getattr(args, "denoise_depth", 5),
                         quick=getattr(args, "quick", False),
                         # a results.json from before --filters: the net alone
                         filters=getattr(args, "filters", "none"),
                         filter_block=getattr(args, "jitter_block", 4),
                         filter_refractory_ms=getattr(args, "refractory_ms",
                                                      FilterConfig.refractory_ms),
                         # a results.json from before this flag: a default initialisation
                         anon_identity_start=not getattr(args, "random_start", True))
    if args.tiny:
        config = replace(config, data=replace(data, users=4, test_users=2, size=32,
                                              duration_s=1.0),
                         clip_s=0.5, long_s=1.0, fit=replace(config.fit, epochs=1, batch=8),
                         pipeline=replace(config.pipeline, epochs=1, batch=8),
                         draws=1, denoise_width=8, denoise_depth=3)
    config.data.check()
    config.filter_config  # checks the filters: an unknown one fails here, before any training
    if min(config.fit.width, config.denoise_width) < 1 or config.denoise_depth < 2:
        raise AnonyNoiseError("--width and --denoise-width must be at least 1 and "
                              "--denoise-depth at least 2")
    pipeline = config.pipeline
    if pipeline.reid_push == "confusion" and pipeline.reid_cap is not None:  # or --reid-caps
        raise AnonyNoiseError("--reid-cap caps the triplet push; the confusion push stops at "
                              "chance by itself (drop --reid-cap or --reid-push confusion)")
    if pipeline.adversary_steps < 1:
        raise AnonyNoiseError("--adversary-steps must be at least 1")
    if pipeline.lr_adversary is not None and pipeline.lr_adversary < 0:
        raise AnonyNoiseError("--adversary-lr must not be negative")
    if pipeline.adversaries < 1:
        raise AnonyNoiseError("--adversaries must be at least 1")
    if pipeline.adversaries > 1 and not pipeline.adversary_restart:
        # copies of one net trained on the same batches stay the same net
        raise AnonyNoiseError("--adversaries above 1 needs --adversary-restart (without "
                              "staggered restarts the copies stay identical)")
    if pipeline.bound_dual_lr is not None and (pipeline.target_ce_bound is None
                                               or pipeline.bound_dual_lr <= 0):
        raise AnonyNoiseError("--bound-dual-lr needs --target-ce-bound and must be positive")
    return config


def main(argv=None) -> int:
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--users", type=int, default=40)
    ap.add_argument("--test-users", type=int, default=10)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=45, help="every ClassNet's epochs")
    ap.add_argument("--width", type=int, default=None,
                    help=f"channels of every ClassNet's first stage (default the ResNet's: "
                         f"{WIDTH}; --tiny: 8)")
    ap.add_argument("--denoise-width", type=int, default=32,
                    help="the denoiser's channels (the reference's DnCNN: 128)")
    ap.add_argument("--denoise-depth", type=int, default=5,
                    help="the denoiser's layers (the reference's DnCNN: 15)")
    ap.add_argument("--pipeline-epochs", type=int, default=15)
    ap.add_argument("--reid-weights", type=float, nargs="+", default=None,
                    help="the sweep's Re-ID weights (default 0.3 1; --tiny: 1)")
    ap.add_argument("--noise-budget", "--noise-budgets", type=float, nargs="+", default=[3.0],
                    help="a penalty keeps the anonymizer's own events (before the runtime's cap) "
                         "under this many times the input's; several values sweep it too "
                         "(each with every weight)")
    ap.add_argument("--reid-cap", "--reid-caps", type=float, nargs="+", default=None,
                    help="cap the Re-ID term at this triplet loss (the margin, 4, is chance); "
                         "several values sweep it too")
    ap.add_argument("--reid-push", choices=["triplet", "confusion"], default="triplet",
                    help="the anonymizer's Re-ID term: minus the adversary's triplet loss (the "
                         "reference) or its posterior over identities pushed to uniform")
    ap.add_argument("--no-rollback", action="store_true",
                    help="keep a pipeline epoch that ends with the gesture net above chance "
                         "(the reference keeps the last epoch regardless); by default the nets "
                         "go back to the previous epoch's")
    ap.add_argument("--target-ce-bound", type=float, default=None,
                    help="push identities apart only in steps where the pipeline's gesture net's "
                         "cross-entropy is at most this (keeps the push from destroying the "
                         "gesture)")
    ap.add_argument("--bound-dual-lr", type=float, default=None,
                    help="with --target-ce-bound: scale the push by a multiplier in [0, 1] that "
                         "moves by this x (bound - cross-entropy) a step, not a per-step switch")
    ap.add_argument("--adversary-steps", type=int, default=1,
                    help="updates of the pipeline's Re-ID net per batch (the reference: 1)")
    ap.add_argument("--adversary-lr", type=float, default=None,
                    help="the pipeline's Re-ID net's learning rate (default: the helpers', "
                         "1e-4, as the reference)")
    ap.add_argument("--adversaries", type=int, default=1,
                    help="in-pipeline Re-ID nets the anonymizer pushes against (their mean); "
                         "above 1 needs --adversary-restart")
    ap.add_argument("--adversary-restart", action="store_true",
                    help="send every in-pipeline Re-ID net back to the clean Re-ID net once an "
                         "epoch (several: at staggered steps), so the anonymizer is judged by "
                         "adversaries that start where a fresh attacker does")
    ap.add_argument("--clean-target-weights", "--clean-target-weight", type=float, nargs="+",
                    default=None, help="weights of a frozen clean target net's CE in the "
                    "anonymizer's loss, each with every --reid-weights value (default 0 1; "
                    "--tiny: 0)")
    ap.add_argument("--random-start", action="store_true",
                    help="start the anonymizer from a default initialisation (as every run "
                         "before 2026-11-27), not as the identity")
    ap.add_argument("--draws", type=int, default=2)
    ap.add_argument("--filters", default="none", metavar="SPEC",
                    help="the stream's privacy filters in front of the anonymizer, trained "
                         "behind them (anonynoise.filters: warp, slots, refractory, jitter "
                         "joined by '+'; default none)")
    ap.add_argument("--jitter-block", type=int, default=4, help="jitter's tile, in pixels")
    ap.add_argument("--refractory-ms", type=float, default=FilterConfig.refractory_ms,
                    help="the refractory filter's period, in ms")
    ap.add_argument("--first-span-only", action="store_true",
                    help="train on the first clip-long span of each training recording only "
                         "(as every run before this option did), not on all of them")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings in parallel (a seed's clean nets, then each variant x seed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=None,
                    help="where benchmarks, results.json and the anonymizers go (default "
                         "runs/privacy; --tiny: runs/tiny/privacy)")
    ap.add_argument("--out", default=None,
                    help="default docs/privacy-report.md (--tiny: runs/tiny/privacy-report.md)")
    ap.add_argument("--ship", default=None,
                    help="copy the chosen variant's anonymizer (of the seed chosen by the same "
                         "rule) here")
    ap.add_argument("--real", default=None,
                    help=f"real recordings for the event rate (default {REAL_DIR.resolve()}; "
                         "--tiny: none, its 1280x720 files take minutes)")
    ap.add_argument("--render", action="store_true",
                    help="no training: write the report (and --ship) from DATA/results.json "
                         "(or from what a stopped run finished), measuring the real "
                         "recordings here")
    ap.add_argument("--averaging-only", action="store_true",
                    help="only temporal averaging, for the anonymizers a stopped run saved in "
                         "DATA (then --render)")
    ap.add_argument("--quick", action="store_true",
                    help="a probe, not a report: every variant gets one attacker (from the "
                         "clean Re-ID net, with a denoiser) and no temporal averaging")
    ap.add_argument("--clean-only", action="store_true",
                    help="only each seed's clean baseline (the first step of a report): whether "
                         "a configuration's clean Re-ID reaches the bar, before an hour of "
                         "anonymizer training")
    ap.add_argument("--tiny", action="store_true", help="a smoke run (meaningless numbers)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.tiny and args.seeds == [0, 1]:
        args.seeds = [0]
    # a smoke run is one small variant and no real recordings unless asked: with the full
    # defaults it took over 8 minutes here
    for name, full, tiny in (("width", WIDTH, 8), ("reid_weights", [0.3, 1.0], [1.0]),
                             ("clean_target_weights", [0.0, 1.0], [0.0]),
                             ("real", str(REAL_DIR), "none")):
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    if args.data is None:
        args.data = "runs/tiny/privacy" if args.tiny else "runs/privacy"
    data_dir = Path(args.data)
    results_file = data_dir / "results.json"
    command = ("python -m train.privacy_report " + " ".join(
        sys.argv[1:] if argv is None else argv)).strip()
    run_file = data_dir / "run.json"
    if args.clean_only:
        config = study_config(args)
        seeds = _seeds(config, args.seeds, data_dir)
        cleans = _clean_baselines(seeds, data_dir, args.jobs)
        for seed, clean in zip(args.seeds, cleans):
            print(f"seed {seed}: clean Re-ID rank-1 {clean['rank1']:.3f}, "
                  f"gesture top-1 {clean['target_top1']:.3f}")
        print(f"mean: clean Re-ID rank-1 {fmt([c['rank1'] for c in cleans])} (the report's bar: "
              f">= 0.90), gesture top-1 {fmt([c['target_top1'] for c in cleans])}; the nets "
              f"are in {data_dir}/seed<N>/clean-*.pt")
        return 0
    if args.averaging_only:
        config = study_config(args)
        seeds = _seeds(config, args.seeds, data_dir)
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
        write_json(run_file, {"args": vars(args), "command": command, "device": device,
                              "started": started})
        seeds = _seeds(config, args.seeds, data_dir)
        _clean_baselines(seeds, data_dir, args.jobs)
        variants = config.variants
        _run_jobs([(study_variant, (c, data_dir, d, v, config.every_attacker(v)))
                   for v in variants for c, d in seeds], args.jobs)
        results = [collect(d, c.data.seed) for c, d in seeds]
        seconds = time.time() - started
        note = ""
        write_json(results_file, {"args": vars(args), "results": results, "seconds": seconds,
                                  "command": command, "device": device})
    keys = complete_keys(results) if results else []
    if not keys:
        raise AnonyNoiseError(f"{data_dir}: no variant has finished on every seed")
    key = choose_variant(results, keys)
    seed = choose_seed(results, key)
    chosen = data_dir / f"seed{seed['seed']}" / f"anonymizer-{key}.pt"
    if args.ship:
        ship = Path(args.ship)
        ship.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(ship) as tmp:  # a copy cut short must not replace the stream's model
            shutil.copyfile(chosen, tmp)
        print(f"shipped {chosen} as {args.ship}")
        lost = seed["clean"]["target_top1"] - gesture(seed["weights"][key])
        if lost > GESTURE_LOSS:
            print(f"warning: no seed's anonymizer keeps the gesture within "
                  f"{100 * GESTURE_LOSS:g} points of clean; "
                  f"the shipped one loses {100 * lost:.0f}")
    real = {}
    real_dir = Path(args.real)
    if real_dir.is_dir() and chosen.is_file():
        out_dir = data_dir / "real-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        real = real_rates(chosen, real_dir, out_dir, config.filter_config)
    out = Path(args.out or ("runs/tiny/privacy-report.md" if args.tiny
                            else "docs/privacy-report.md"))
    # a render says "shipped" where the run it renders shipped, or where it ships itself
    ships = bool(args.ship or (args.render and saved["args"].get("ship")))
    write_report(out, out.with_suffix(".png"), config, results, real, seconds, command, key,
                 device, note, shipped_seed=seed["seed"], ships=ships)
    print(f"wrote {out}")
    return 0


def describe_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"this {os.cpu_count()}-core CPU"


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the benchmark generator's and the jobs' workers are stopped too
    sys.exit(run(main, prog="privacy_report", sigterm_interrupts=True))
