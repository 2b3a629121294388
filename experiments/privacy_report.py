"""The privacy report: what an attacker with our weights learns from the anonymized stream.

    python -m experiments.privacy_report --config experiments/configs/privacy_report.toml \
        --checkpoint anonynoise/models/default_anonymizer.pt --jobs 2  # the shipped model
    python -m experiments.privacy_report --config experiments/configs/privacy_curve.toml \
        --jobs 2                              # train a sweep of variants and compare them
    python -m experiments.privacy_report --config ... --render        # again, from DATA
    python -m experiments.privacy_report --config ... --averaging-only  # what a run missed
    python -m experiments.privacy_report --config experiments/configs/privacy_report_tiny.toml

A run is described by its config (a StudyConfig: a recipe of train/configs/, the seeds, the
sweep, the attackers' sizes; experiments/configs/). Per seed (each a new synthetic
benchmark, a new set of people), on a CPU-sized configuration:

1. clean target (gesture) and Re-ID nets on clean 3 s clips: the baseline;
2. the anonymizer: with --checkpoint, that checkpoint, behind the filters it records (no
   training); else, for every variant of the sweep (Re-ID weight x clean target weight
   [x budget x cap]), the recipe's adversarial pipeline (train.recipe, train.composite);
3. then, as the reference's post-training does, a target net trained on anonymized clips as
   long as every other net: the gesture accuracy a consumer of the stream gets;
4. fresh attackers, trained on anonymized clips (the attacker has our weights, so it can make
   as many paired clean / anonymized examples as it likes) from the clean Re-ID net, from the
   pipeline's adversary (variants only) and from scratch, each with and without a denoiser in
   front (a smaller DnCNN than the reference's, labelled as such); the last epoch, evaluated
   on unseen people;
5. temporal averaging: the noise is fresh in every window, so re-binning longer spans averages
   it out; rank-1 over 1 to 6 s of stream, for the clean net, the 3 s attacker and an attacker
   trained on 6 s;
6. the event rate out / in, on the test clips and (if the folder is there) on the real
   recordings.

Each seed's clean nets and then each variant (or the checkpoint) x seed is one job (--jobs of
them at once, the jobs are in experiments.privacy_study); a job rewrites its row under
DATA/seed<N>/rows/ after every step, so a run stopped at a time limit keeps what it finished
and --render reports it. The report (markdown + PNG) gives means over seeds. Training the
shipped model is train.train_anonymizer's job, not the report's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO
from anonynoise.checkpoint import load_checkpoint, save_checkpoint
from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.filters import FilterConfig
from anonynoise.memory import keep_freed_memory
from anonynoise.models import ANONYMIZER_KINDS, LightAnonNet
from anonynoise.models.classnet import WIDTH
from experiments.privacy_study import (ATTACKERS, CHECKPOINT, StudyConfig, Variant, collect,
                                       study_averaging, study_checkpoint, study_clean,
                                       study_config, study_table, study_variant)
from experiments.report import Report, benchmark_text, fmt, generated, write_json
from train.composite import CompositeConfig
from train.recipe import BINS, WINDOW_MS, dataset, representation

log = logging.getLogger(__name__)
REAL_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real"

POST = ("target_top1_post", "target_top1_post_denoised")
# the two privacy-utility bars: the strongest fresh attacker's rank-1 cut by at least
# this fraction of clean, the gesture's top-1 at most this far (a fraction) under clean
PRIVACY_CUT = 0.5
GESTURE_LOSS = 0.10


def gesture(row: dict) -> float:
    """The gesture top-1 an anonymizer is judged by: the best consumer, as privacy is judged
    by the strongest attacker: the better of the target nets post-trained on anonymized
    clips without and with a denoiser in front (the reference's protocol)."""
    return max(row[k] for k in POST if k in row)


def _judged(row: dict) -> bool:
    # a post-trained target net and at least one fresh attacker
    return bool(row.get("attackers")) and POST[0] in row


def complete_keys(results: list[dict]) -> list[str]:
    """The rows every seed has judged, in the order the first seed has them."""
    return [k for k in results[0]["weights"]
            if all(k in r["weights"] and _judged(r["weights"][k]) for r in results)]


def common_attackers(rows: list[dict]) -> list[str]:
    """The attacker kinds every seed's row has (a stopped run may lack the last ones)."""
    return [a for a in rows[0]["attackers"] if all(a in r["attackers"] for r in rows)]


def strongest_attacker(rows: list[dict], among: list[str] | None = None) -> str:
    """The attacker with the highest mean rank-1 of those every seed ran (or of `among`)."""
    return max(among or common_attackers(rows),
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
    """The variant the report is about (the one that would ship), by _privacy_first on means
    over seeds (the strongest fresh attacker being the one strongest on average)."""
    clean_r1 = np.mean([r["clean"]["rank1"] for r in results])
    clean_t = np.mean([r["clean"]["target_top1"] for r in results])

    def attacker(k):
        rows = [r["weights"][k] for r in results]
        return np.mean([r["attackers"][strongest_attacker(rows)]["rank1"] for r in rows])

    def loss(k):
        return clean_t - np.mean([gesture(r["weights"][k]) for r in results])

    return _privacy_first(keys, attacker, loss, lambda k: clean_r1)


def choose_seed(results: list[dict], key: str) -> dict:
    """The seed whose anonymizer of the variant would ship, by the same rule, each seed
    judged against its own clean nets and its own strongest attacker: the adversarial
    training can go over the edge on one seed (the gesture destroyed) while the other holds
    (train/configs/default_anonymizer.toml's seed is the one this chose)."""

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


def _seeds(config: StudyConfig, data_dir: Path) -> list[tuple[int, Path]]:
    """(seed, its folder) for every seed, each benchmark generated first (the generator uses
    every core by itself)."""
    for seed in config.seeds:
        dataset(data_dir, config.recipe_for(seed).data)
    return [(seed, data_dir / f"seed{seed}") for seed in config.seeds]


def _run_jobs(jobs: list[tuple], parallel: int) -> list:
    if parallel <= 1:
        return [fn(*args) for fn, args in jobs]
    threads = max(1, (os.cpu_count() or 2) // parallel)
    with multiprocessing.get_context("spawn").Pool(parallel) as pool:
        return pool.map(_job, [(fn, args, threads) for fn, args in jobs], chunksize=1)


def _clean_baselines(config: StudyConfig, seeds: list[tuple], data_dir: Path,
                     jobs: int) -> list[dict]:
    """Every seed's clean nets (a report's first step, --clean-only's only one)."""
    return _run_jobs([(study_clean, (config, s, data_dir, d)) for s, d in seeds],
                     min(jobs, len(seeds)))


def _anonymizer_text(config: StudyConfig, results: list[dict], main: str, keys: list[str],
                     checkpoint: dict | None) -> str:
    """The configuration's bullet on the anonymizer: the checkpoint evaluated, or the
    recipe each variant was trained by."""
    recipe, pipeline = config.recipe, config.recipe.pipeline
    cap = (f" and the runtime's cap of {DEFAULT_MAX_EVENT_RATIO:g} events out per event in, "
           "per window, in expectation (anonynoise.anonymizer.cap_event_rate).")
    if checkpoint is not None:
        return (f"Anonymizer: the checkpoint `{checkpoint['path']}` (SHA-256 of the file "
                f"{checkpoint['sha256'][:16]}..., recorded stage "
                f"{checkpoint['training'].get('stage', 'unknown')}), not trained here, "
                f"behind the filters it records" + cap)
    chosen = Variant.from_key(main)
    return (
        f"Anonymizer: LightAnonNet width {recipe.anonymizer.width}, form "
        f"{recipe.anonymizer.form}, "
        + ("starting as the identity (its output layer zero), "
           if recipe.anonymizer.identity_start else "from a default initialisation, ")
        + f"trained by train.composite for {pipeline.epochs} epochs (Adam "
        f"{pipeline.lr_anon:g}; helpers {pipeline.lr_helper:g}) from the clean nets, "
        f"{chosen.label} (chosen by the rule below from "
        f"{'; '.join(Variant.from_key(k).label for k in keys)}), noise budget "
        f"{config.budget_of(chosen):g} x the input's events (penalty, on the anonymizer's own "
        "output), "
        + ("Re-ID term the adversary's posterior over identities pushed to uniform "
           "(anonynoise.losses.confusion_loss)" if pipeline.reid_push == "confusion"
           else f"Re-ID term cap {config.cap_of(chosen)}")
        + _bound_text(pipeline) + _adversary_text(pipeline)
        + _rollback_text(pipeline, results, main) + "," + cap)


def write_report(path: Path, plot: Path, config: StudyConfig, results: list[dict],
                 real: dict, seconds: float, command: str, main: str, device: str,
                 note: str = "", chosen_seed: int | None = None,
                 checkpoint: dict | None = None) -> None:
    """The markdown report and its plot: the row `main` (the chosen variant, or the given
    checkpoint) against the clean baseline, the bars, temporal averaging, the sweep."""
    keys = complete_keys(results)
    what = "the given checkpoint" if checkpoint else "the chosen variant's anonymizer"
    rows = [r["weights"][main] for r in results]
    clean_r1 = [r["clean"]["rank1"] for r in results]
    attackers = common_attackers(rows)
    strongest = strongest_attacker(rows)
    best_r1 = [r["attackers"][strongest]["rank1"] for r in rows]
    reduction = 1 - np.mean(best_r1) / np.mean(clean_r1)
    clean_t = [r["clean"]["target_top1"] for r in results]
    judged_t = [gesture(r) for r in rows]
    recipe, d = config.recipe, config.recipe.data
    fit = recipe.fit
    title = (f"Privacy report: {Path(checkpoint['path']).name} against fresh attackers"
             if checkpoint else "Privacy report: light anonymizers against fresh attackers "
             "(each trained here)")
    report = Report(title).paragraph(
        generated(command, seconds, device) + " Seeds "
        f"{', '.join(str(r['seed']) for r in results)}, each a new synthetic benchmark (new "
        "people); numbers are means ± standard deviations over seeds.")
    report.paragraph(note)
    if config.quick:
        report.paragraph("A quick probe (`quick = true`), not the report: each anonymizer met "
                         "one fresh attacker (from the clean Re-ID net, with a denoiser) and "
                         "no temporal averaging.")
    spans = (f"the nets train on every {recipe.clip_s:g} s span of each training recording "
             f"({recipe.clips_per_recording} clips a recording)" if recipe.all_spans else
             f"the nets train on the first {recipe.clip_s:g} s of each training recording")
    report.section("Configuration").bullets([
        f"Synthetic benchmark: {benchmark_text(d)}; {spans}, the tests are the first "
        f"{recipe.clip_s:g} s.",
        f"Stream: {WINDOW_MS} ms windows of {BINS} bins x 2 polarities; the anonymizer runs "
        "on each window with fresh noise; its output goes through the events round trip "
        "(negative values are no events, stochastic rounding); a consumer re-bins "
        f"{recipe.clip_s:g} s of windows into a {BINS}-bin clip, which is what every net below "
        "sees.",
        _anonymizer_text(config, results, main, keys, checkpoint),
        _filters_text(config) if recipe.filter_config else "",
        "" if checkpoint else "The clean target weight is the weight of a frozen copy of the "
        "clean target net's cross-entropy in the anonymizer's loss: a consumer's net trained "
        "on clean events must still work.",
        "" if checkpoint else "The variant that would ship: the most private (strongest fresh "
        f"attacker) of those that keep the gesture within {100 * GESTURE_LOSS:g} points of "
        "clean; if none does, the one that misses the two bars by the least in total (gesture "
        "points over the bar plus the attacker's rank-1 over its bar, as fractions of clean: "
        "an anonymizer that destroyed the gesture is not chosen for the privacy that comes "
        "with it)" + ("." if chosen_seed is None else f"; of its anonymizers, seed "
                      f"{chosen_seed}'s, the seed chosen by the same rule (each seed judged "
                      "against its own clean nets and strongest attacker)."),
        f"Every ClassNet (clean baseline, attackers): {fit.network}"
        + (f" {fit.width} wide (the ResNet's first stage has {WIDTH} channels)"
           if fit.width != WIDTH else "") + ", "
        f"{fit.epochs} epochs, Adam {fit.lr:g} cosine, batch {fit.batch}, "
        "the reference's augmentation; the last epoch is evaluated. Attackers train on "
        f"{config.draws} anonymized draws of the training clips (alternating per epoch). "
        f"Denoiser: DnCNN width {config.denoise_width}, depth {config.denoise_depth} (smaller "
        "than the reference's 128 x 15), trained jointly with MSE to the clean clip.",
        "Re-ID: one query per unseen person and gesture (first session), the rest is the "
        "gallery, same recording or same gesture is junk; rank-1 with the flip descriptor."])
    table = [["clean", fmt(clean_r1), fmt([r["clean"]["mAP"] for r in results]), fmt(clean_t)]]
    if not checkpoint:
        table.append(["anonymized, in-pipeline adversary / target net",
                      fmt([r["adversary"]["rank1"] for r in rows]),
                      fmt([r["adversary"]["mAP"] for r in rows]),
                      fmt([r["target_top1_pipeline"] for r in rows])])
    table += [
        ["anonymized, clean target net (not retrained)", "", "",
         fmt([r["target_top1_clean_net"] for r in rows])],
        ["anonymized, target net post-trained on anonymized clips (the reference's protocol)",
         "", "", fmt([r[POST[0]] for r in rows])]]
    if all(POST[1] in r for r in rows):
        table.append(["anonymized, the same with a denoiser in front (the reference's "
                      "--denoisenet)", "", "", fmt([r[POST[1]] for r in rows])])
    table += [[f"fresh attacker {a}", fmt([r["attackers"][a]["rank1"] for r in rows]),
               fmt([r["attackers"][a]["mAP"] for r in rows]), ""] for a in attackers]
    report.section("Result").table(["row", "Re-ID rank-1", "mAP", "gesture top-1"], table)
    rate = [r["event_rate_ratio"] for r in rows]
    bars = [
        ["clean Re-ID rank-1 >= 0.90", f"{np.mean(clean_r1):.3f}",
         _yes(np.mean(clean_r1) >= 0.9)],
        [f"strongest fresh attacker ({strongest}) rank-1 reduced >= {100 * PRIVACY_CUT:g}% "
         "relative to clean", f"{np.mean(best_r1):.3f}, reduced by {100 * reduction:.0f}%",
         _yes(reduction >= PRIVACY_CUT)],
        [f"gesture top-1 (the better target net post-trained on anonymized clips, without or "
         f"with a denoiser) within {100 * GESTURE_LOSS:g} points of clean",
         f"{np.mean(judged_t):.3f} vs {np.mean(clean_t):.3f} "
         f"({100 * (np.mean(judged_t) - np.mean(clean_t)):+.1f} points)",
         _yes(np.mean(clean_t) - np.mean(judged_t) <= GESTURE_LOSS)],
        ["event rate out / in <= 3, synthetic test clips", fmt(rate), _yes(max(rate) <= 3)]]
    ok = [v["ratio"] for v in real.values() if "ratio" in v]
    if ok:
        bars.append([f"event rate out / in <= 3, real recordings ({what})",
                     f"{min(ok):.2f} to {max(ok):.2f}", _yes(max(ok) <= 3)])
    else:
        bars.append(["event rate, real recordings", "none readable" if real else
                     "not measured (no folder of real recordings)", ""])
    if device.endswith("-core CPU"):  # the bar is the report's cost on a CPU (describe_device)
        bars.append(["the whole report <= 30 minutes on this CPU", f"{seconds / 60:.1f} minutes",
                     _yes(seconds <= 30 * 60)])
    report.section("Bars").table(["bar", "measured", "holds"], bars)
    report.section("Temporal averaging")
    if all("averaging" in r for r in rows):
        averaged = list(rows[0]["averaging"])
        report.paragraph(
            "The noise is fresh in every window; a consumer who re-bins a longer span averages "
            "it. Rank-1 on clips of the first 1 to 6 s of each test recording (counts scaled to "
            f"the {recipe.clip_s:g} s level):")
        report.table(["span", "clean net, clean clips", *averaged], [
            [f"{int(span) * WINDOW_MS / 1000:g} s",
             fmt([r["clean"]["averaging"][span] for r in results]),
             *[fmt([r["averaging"][a][span] for r in rows]) for a in averaged]]
            for span in sorted(rows[0]["averaging"][averaged[0]], key=int)])
    else:
        report.paragraph("Not measured for this anonymizer (the run stopped before it, or a "
                         "quick probe).")
    if not checkpoint:
        sweep = []
        for k in keys:
            rs = [r["weights"][k] for r in results]
            a = strongest_attacker(rs)
            n, kinds = len(common_attackers(rs)), len(ATTACKERS) * 2
            sweep.append([Variant.from_key(k).label,
                          f"{fmt([r['attackers'][a]['rank1'] for r in rs])} ({a}"
                          f"{'' if n == kinds else f'; {n} of {kinds} ran'})",
                          fmt([r["target_top1_pipeline"] for r in rs]),
                          fmt([gesture(r) for r in rs]), fmt([r["event_rate_ratio"] for r in rs]),
                          fmt([r["pipeline"]["uncapped_event_rate_ratio"] for r in rs]),
                          _last_epoch(rs, "reid_active")])
        report.section("Privacy against utility over the anonymizer's loss weights").table(
            ["variant", "strongest fresh attacker, rank-1", "gesture top-1 (pipeline)",
             "gesture top-1 (post-trained)", "events out / in", "the anonymizer's own events "
             "/ in, before the runtime's cap (last pipeline epoch)", "steps with the Re-ID "
             "push on (last pipeline epoch, with a target_ce_bound)"], sweep)
    if real:
        report.section(f"Real recordings (event rate of {what})").table(
            ["recording", "events in", "events out", "out / in"],
            [[name, f"{v['events_in']:,}", f"{v['events_out']:,}", f"{v['ratio']:.2f}"]
             if "ratio" in v else [name, f"unreadable: {v['error']}", "", ""]
             for name, v in real.items()])
    report.image("privacy and utility", plot.name)
    report.section("Per seed").json_block(results)
    report.write(path)
    _plot(plot, config, results, main, keys, "checkpoint" if checkpoint else "chosen")


def _short_label(key: str) -> str:
    """A point's label on the plot."""
    if key == CHECKPOINT:
        return key
    v = Variant.from_key(key)
    return (f"w {v.reid_weight:g}" + (f", clean {v.clean_target_weight:g}"
                                      if v.clean_target_weight else "")
            + (f", budget {v.noise_budget:g}" if v.noise_budget is not None else "")
            + (f", cap {v.reid_cap:g}" if v.reid_cap is not None else ""))


def _yes(holds) -> str:
    return "yes" if holds else "no"


def _filters_text(config: StudyConfig) -> str:
    f = config.recipe.filter_config
    return (f"Privacy filters in front of the anonymizer (`{f.spec}`, "
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
    """A last-epoch pipeline metric over seeds, "-" where it is not logged (the push's share
    without a bound)."""
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
        a.scatter(x, y, color="C1" if key == main else "C0",
                  label=main_label if key == main else None)
        a.annotate(_short_label(key), (x, y), textcoords="offset points",
                   xytext=(6, 8 - 14 * (i % 2)),
                   fontsize=8)
    a.scatter(clean_r1, clean_t, color="C3", marker="*", s=120, label="clean")
    a.axvline((1 - PRIVACY_CUT) * clean_r1, color="grey", ls="--", lw=0.8)
    a.axhline(clean_t - GESTURE_LOSS, color="grey", ls=":", lw=0.8)
    a.set_xlabel("Re-ID rank-1 of the strongest fresh attacker (lower is more private)\n"
                 f"dashed: -{100 * PRIVACY_CUT:g}% of clean; "
                 f"dotted: gesture {100 * GESTURE_LOSS:g} points under clean", fontsize=9)
    a.set_ylabel("gesture top-1 (post-trained)")
    a.set_xlim(0, 1)
    a.set_ylim(0, 1)
    a.legend()
    a.set_title("privacy against utility")
    main = [r["weights"][main] for r in results]
    if all("averaging" in r for r in main):
        spans = list(main[0]["averaging"][f"attacker {config.recipe.clip_s:g} s"])
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


def describe_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"one {torch.cuda.get_device_name()} ({os.cpu_count()} CPU cores)"
    return f"this {os.cpu_count()}-core CPU"


def filters_alone_checkpoint(table: dict, path: Path) -> Path:
    """The privacy filters alone as a checkpoint: the recipe's light net started as the
    identity (its output is its input), recording the recipe's filters, so the report measures
    the filters with everything else as for a trained net (the stream runs such a net behind
    filters that move events like the filters alone: anonynoise.anonymizer)."""
    recipe = study_config(table, str(path)).recipe
    if not recipe.filters.check().moves_events:
        raise AnonyNoiseError(f"--filters-alone: the recipe's filters {recipe.filters.spec!r} "
                              "leave every event at its pixel; there is nothing to evaluate")
    net = LightAnonNet(2 * BINS, form=recipe.anonymizer.form, width=recipe.anonymizer.width,
                       sampling=recipe.anonymizer.sampling).start_as_identity()
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, net, representation(),
                           {"stage": "experiments.privacy_report --filters-alone (an identity "
                                     "net: the filters alone)",
                            "filters": recipe.filters.describe()})


def _checkpoint_info(path: Path) -> dict:
    """What the report says of a given checkpoint (and uses: the filters it records)."""
    ckpt = load_checkpoint(path, ANONYMIZER_KINDS)  # a wrong file: one line, before any work
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "training": ckpt.training}


def run_config(args) -> tuple[dict, dict | None]:
    """The study's table (its file, the checkpoint's filters, the flags' overrides) and the
    checkpoint's info."""
    table = study_table(Path(args.config))
    checkpoint = None
    if args.checkpoint:
        checkpoint = _checkpoint_info(Path(args.checkpoint))
        # the attackers see what the stream sends: the checkpoint behind its own filters
        recorded = dict(checkpoint["training"].get("filters") or {"spec": "none"})
        table["recipe"]["filters"] = {k: v for k, v in recorded.items()
                                      if k in FilterConfig.__dataclass_fields__}
    if args.seeds:
        table["seeds"] = args.seeds
    if args.device:
        table["recipe"]["device"] = args.device
    return table, checkpoint


def main(argv=None) -> int:
    keep_freed_memory()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True,
                    help="the study (experiments/configs/*.toml): recipe, seeds, sweep")
    ap.add_argument("--checkpoint", default=None,
                    help="evaluate this anonymizer checkpoint (behind the filters it records) "
                         "instead of training the config's variants")
    ap.add_argument("--filters-alone", action="store_true",
                    help="evaluate the config's privacy filters alone, with no net, as a "
                         "checkpoint is evaluated (same clean nets, attackers and clips): an "
                         "identity net behind them, written to DATA/filters-alone.pt")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="overrides the config's")
    ap.add_argument("--device", default=None, help="overrides the recipe's")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings in parallel (a seed's clean nets, then each variant x seed)")
    ap.add_argument("--data", default="runs/privacy",
                    help="where benchmarks, results.json and the anonymizers go")
    ap.add_argument("--out", default="experiments/reports/privacy-report.md",
                    help="the report (its plot beside it, .png)")
    ap.add_argument("--real", default=str(REAL_DIR),
                    help="real recordings for the event rate ('none': not measured)")
    ap.add_argument("--render", action="store_true",
                    help="no training: write the report from DATA/results.json (or from what a "
                         "stopped run finished), measuring the real recordings here")
    ap.add_argument("--averaging-only", action="store_true",
                    help="only temporal averaging, for the anonymizers a stopped run saved in "
                         "DATA (then --render)")
    ap.add_argument("--clean-only", action="store_true",
                    help="only each seed's clean baseline (the first step of a report)")
    ap.add_argument("--clean-from", default=None, metavar="DIR",
                    help="take each seed's clean nets from an earlier run's DATA folder (it "
                         "may be --data itself) instead of training them: its recipe must be "
                         "this one's but for the filters, the anonymizer and the pipeline, "
                         "which the clean nets never see")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data_dir = Path(args.data)
    results_file, run_file = data_dir / "results.json", data_dir / "run.json"
    command = ("python -m experiments.privacy_report " + " ".join(
        sys.argv[1:] if argv is None else argv)).strip()
    if args.clean_from and (args.render or args.clean_only or args.averaging_only):
        raise AnonyNoiseError("--clean-from starts a report from earlier clean nets: not with "
                              "--render, --clean-only or --averaging-only")
    if args.filters_alone:
        if args.checkpoint:
            raise AnonyNoiseError("--filters-alone evaluates no checkpoint: give one or the other")
        args.checkpoint = str(filters_alone_checkpoint(study_table(Path(args.config)),
                                                       data_dir / "filters-alone.pt"))
    if args.render:
        saved = _saved_run(data_dir)
        table, checkpoint = saved["config"], saved["checkpoint"]
        config = study_config(table, str(run_file))
        results, seconds, note = saved["results"], saved["seconds"], saved.get("note", "")
        command, device = saved["command"], saved["device"]
    else:
        table, checkpoint = run_config(args)
        config = study_config(table, args.config)  # every value checked before any work
        if args.clean_from:  # never with --clean-only or --averaging-only (refused above)
            reuse_clean(Path(args.clean_from), table,
                        [(s, data_dir / f"seed{s}") for s in config.seeds])
        seeds = _seeds(config, data_dir)
        if args.clean_only:
            cleans = _clean_baselines(config, seeds, data_dir, args.jobs)
            for seed, clean in zip(config.seeds, cleans):
                print(f"seed {seed}: clean Re-ID rank-1 {clean['rank1']:.3f}, "
                      f"gesture top-1 {clean['target_top1']:.3f}")
            print(f"mean: clean Re-ID rank-1 {fmt([c['rank1'] for c in cleans])} (the "
                  f"report's bar: >= 0.90), gesture top-1 "
                  f"{fmt([c['target_top1'] for c in cleans])}; the nets are in "
                  f"{data_dir}/seed<N>/clean-*.pt")
            return 0
        ckpt_path = Path(checkpoint["path"]) if checkpoint else None
        if args.averaging_only:
            keys = [CHECKPOINT] if checkpoint else [v.key for v in config.variants]
            _run_jobs([(study_averaging, (config, s, data_dir, d, keys, ckpt_path))
                       for s, d in seeds], args.jobs)
            print(f"temporal averaging written under {data_dir}; report with --render")
            return 0
        started = time.time()
        device = describe_device(config.recipe.device)
        results_file.unlink(missing_ok=True)
        # a row left by an earlier run in this folder must not be read as this run's
        for _, seed_dir in seeds:
            for row in (seed_dir / "rows").glob("*.json"):
                row.unlink()
        write_json(run_file, {"config": table, "checkpoint": checkpoint, "command": command,
                              "device": device, "started": started})
        if not args.clean_from:
            _clean_baselines(config, seeds, data_dir, args.jobs)
        if checkpoint:
            jobs = [(study_checkpoint, (config, s, data_dir, d, ckpt_path)) for s, d in seeds]
        else:
            jobs = [(study_variant, (config, s, data_dir, d, v, config.every_attacker(v)))
                    for v in config.variants for s, d in seeds]
        _run_jobs(jobs, args.jobs)
        results = [collect(d, s) for s, d in seeds]
        seconds, note = time.time() - started, ""
        write_json(results_file, {"config": table, "checkpoint": checkpoint,
                                  "results": results, "seconds": seconds,
                                  "command": command, "device": device})
    keys = complete_keys(results) if results else []
    if not keys:
        raise AnonyNoiseError(f"{data_dir}: no anonymizer has finished on every seed")
    key = choose_variant(results, keys)
    seed = None if checkpoint else choose_seed(results, key)["seed"]
    model = Path(checkpoint["path"]) if checkpoint else \
        data_dir / f"seed{seed}" / f"anonymizer-{key}.pt"
    real = {}
    real_dir = Path(args.real)
    if real_dir.is_dir() and model.is_file():
        out_dir = data_dir / "real-out"
        out_dir.mkdir(parents=True, exist_ok=True)
        real = real_rates(model, real_dir, out_dir, config.recipe.filter_config)
    out = Path(args.out)
    write_report(out, out.with_suffix(".png"), config, results, real, seconds, command, key,
                 device, note, chosen_seed=seed, checkpoint=checkpoint)
    print(f"wrote {out}")
    return 0


CLEAN_FILES = ("clean.json", "clean-target.pt", "clean-reid.pt")


# What the clean nets do not depend on: they train on clean clips, before any anonymizer.
NOT_CLEAN = ("filters", "anonymizer", "pipeline")


def _clean_recipe(table: dict) -> dict:
    return {k: v for k, v in table["recipe"].items() if k not in NOT_CLEAN}


def reuse_clean(source: Path, table: dict, seeds: list[tuple[int, Path]]) -> None:
    """Copy each seed's clean nets (and their numbers) from an earlier run's folder, after
    checking that run's recipe is this one's but for the filters, the anonymizer and its
    pipeline: the clean nets are trained on clean clips only, so a report on another
    anonymizer (or another architecture, or Re-ID weight) can start from them."""
    saved = source / "run.json"
    if not saved.is_file():
        raise AnonyNoiseError(f"--clean-from: {saved}: no earlier run there")
    if _clean_recipe(json.loads(saved.read_text())["config"]) != _clean_recipe(table):
        raise AnonyNoiseError(f"--clean-from: {source} was run with another recipe; its clean "
                              "nets do not fit this one")
    for seed, seed_dir in seeds:
        for name in CLEAN_FILES:
            src, dst = source / f"seed{seed}" / name, seed_dir / name
            if not src.is_file():
                raise AnonyNoiseError(f"--clean-from: {src}: missing (seed {seed}'s clean "
                                      "nets did not finish there)")
            if src.resolve() != dst.resolve():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    log.info("clean nets of seeds %s taken from %s", [s for s, _ in seeds], source)


def _saved_run(data_dir: Path) -> dict:
    """A finished run's results.json, or what a stopped run's jobs finished (run.json and
    the rows), for --render."""
    results_file, run_file = data_dir / "results.json", data_dir / "run.json"
    if results_file.is_file():
        return json.loads(results_file.read_text())
    if not run_file.is_file():
        raise AnonyNoiseError(f"{results_file}: no results to render (run without --render "
                              "first)")
    saved = json.loads(run_file.read_text())
    seeds = saved["config"]["seeds"]
    saved["results"] = [r for r in (collect(data_dir / f"seed{s}", s) for s in seeds)
                        if r is not None]
    last = max((f.stat().st_mtime for f in data_dir.glob("seed*/rows/*.json")
                if not f.name.endswith(".averaging.json")), default=saved["started"])
    saved["seconds"] = last - saved["started"]
    saved["note"] = ("The run stopped before every job had finished; this report holds what "
                     "had (each row says which attackers ran).")
    return saved


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the benchmark generator's and the jobs' workers are stopped too
    sys.exit(run(main, prog="privacy_report", sigterm_interrupts=True))
