"""Fixed, non-learned transforms as controls: what does a transform that learns nothing buy
against a fresh attacker who trains on its output?

    python -m experiments.controls --config experiments/configs/controls.toml --jobs 2
        # the published controls (experiments/reports/privacy-controls.md)
    python -m experiments.controls --config experiments/configs/controls_tiny.toml
        # a smoke run for the test suite

A run is its config (ControlsConfig: the benchmark, the nets, the seeds, the attackers, the
transforms and their parameters); --transforms overrides the config's list.

For each seed and transform it trains, on the synthetic benchmark's transformed clips (the
reference's representation: whole sample, 5 bins x 2 polarities), a gesture net and a Re-ID
net (from scratch, or with `attackers` from a clean Re-ID net, behind a denoiser or not),
both as experiments.synth_check does, and reports gesture top-1 and Re-ID rank-1
on the transformed clips of the unseen test people, beside the untransformed baseline
("none"). The Re-ID net is a fresh attacker that knows the transform: a random transform is
drawn anew for every training clip, `draws` times (one draw per epoch, alternating).

Transforms, joined by "+" and applied left to right, each on a whole clip (slots first):

    slots  the first event of each pixel and polarity in each `slot_ms` slot, the rest
           dropped (on the events, before they are binned): what a stream can do to each of
           its windows' bins (50 ms windows of 5 bins: 10 ms slots)
    pool   means over `pool` x `pool` blocks, spread back over the block (a coarser
           picture at the same size; the events' count is kept)
    bin    1 where a pixel had an event in a bin and polarity, else 0 (no count, so no
           contrast: how many events an edge makes depends on the brightness step)
    warp   a random smooth warp held for the whole clip: an anisotropic scale (each axis
           by a factor in [1 / (1 + s), 1 + s], log-uniform; s = `warp_scale`) and a
           displacement field drawn on a `warp_grid` x `warp_grid` lattice (normal,
           `warp_displacement` of the half-width) spread by bicubic interpolation; bilinear
           resampling, the clip's event count kept

    stream:SPEC  the stream's own privacy filters (anonynoise.filters, SPEC of warp, slots,
           refractory, jitter joined by '+') run on each recording as the stream runs them:
           window by window (`window_ms`, 5 bins each), the warp held for the recording (the
           stream's default period is longer than a recording), jitter's block `pool`,
           refractory's period `refractory_ms`; the clip is binned from the filtered events
    net:SPEC   the stream's whole anonymizer (`net`, default the shipped one) behind the
           filters SPEC (none: the net alone), window by window as above, each recording a
           new stream: the net's noise fresh in every window, events sampled back

A stream holds one warp for a period (fresh from OS entropy each period) rather than one per
clip; these controls are seeded (studies, not the product).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from anonynoise.anonymizer import Anonymizer
from anonynoise.checkpoint import load_checkpoint
from anonynoise.cli_support import run
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from anonynoise.filters import FilterConfig, first_event_per_slot
from anonynoise.memory import keep_freed_memory
from anonynoise.models import ANONYMIZER_KINDS
from anonynoise.offline import default_model
from anonynoise.synth.dataset import DatasetConfig
from anonynoise.synth.people import ALL_CUES, CUES
from train.classify import FitConfig
from train.replay import anonymized_recording, stream_filtered
from experiments.report import Report, benchmark_text, fmt, generated, mean_std, write_json
from experiments.synth_check import ATTACKERS, add_job_args, column, run_jobs
from train.config_file import ConfigError, from_table, read_toml
from train.recipe import dataset

ATTACKER_TEXT = {
    "scratch": "from scratch",
    "clean": "from a Re-ID net trained on the clean clips",
    "clean+denoiser": "from a Re-ID net trained on the clean clips, behind a denoiser (DnCNN "
                      "width 16, depth 5) that learns to restore the clean clips",
}
STEPS = ("slots", "pool", "bin", "warp")
DEFAULT_TRANSFORMS = ("none", "pool", "bin", "bin+pool", "warp", "warp+pool", "warp+bin+pool",
                      "slots", "slots+pool", "warp+slots+pool")


def slots_from_zero(events: EventBatch, slot_us: int) -> EventBatch:
    """The first event of each pixel and polarity in each slot of `slot_us`, slots counted
    from t = 0 (over the whole recording); the others dropped."""
    if not len(events):
        return events
    n = int(events.t[-1]) // slot_us + 1
    return first_event_per_slot(events, 0, n * slot_us, n)


class _StreamNetRun:
    """events_filter for one load of a split through the stream's anonymizer (the net behind
    the filters): each recording starts a new stream, with its own seed (picklable; the
    anonymizer is built in the process that runs it)."""

    def __init__(self, net: str, config: FilterConfig | None, window_us: int, seed: int):
        self.net, self.config, self.window_us, self.seed = net, config, window_us, seed
        self.count, self.anonymizer = 0, None

    def __call__(self, events: EventBatch) -> EventBatch:
        if self.anonymizer is None:
            # a control runs the net behind the filters it names (none included) on purpose,
            # whatever the net was trained behind: the refusal protects a user, not a study
            self.anonymizer = Anonymizer(self.net, "cpu", seed=self.seed, filters=self.config,
                                         allow_weak=True)
        self.count += 1
        self.anonymizer.restart(seed=self.seed * 1_000_003 + self.count)
        return anonymized_recording(events, self.anonymizer, self.window_us)


class _StreamFilterRun:
    """events_filter for one load of a split: each recording gets its own seed (picklable)."""

    def __init__(self, config: FilterConfig, window_us: int, seed: int):
        self.config, self.window_us, self.seed, self.count = config, window_us, seed, 0

    def __call__(self, events: EventBatch) -> EventBatch:
        self.count += 1
        return stream_filtered(events, self.config, self.window_us, 5,
                               self.seed * 1_000_003 + self.count)


def block_means(x: np.ndarray, block: int) -> np.ndarray:
    """(N, C, H, W) -> the same size, each block x block tile replaced by its mean (H and W
    must be multiples of block)."""
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return F.interpolate(F.avg_pool2d(t, block), scale_factor=block, mode="nearest").numpy()


def binarize(x: np.ndarray) -> np.ndarray:
    """1 where a pixel had any event in that bin and polarity, else 0."""
    return (x > 0).astype(np.float32)


def random_warp(x: np.ndarray, rng: np.random.Generator, scale: float = 0.25,
                displacement: float = 0.15, grid: int = 3) -> np.ndarray:
    """One random smooth warp per sample (the same for its every bin and polarity): an
    anisotropic scale about the centre plus a bicubic displacement field, bilinear
    resampling with zeros outside, each sample's total kept."""
    n, c, h, w = x.shape
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    log_range = np.log1p(scale)
    sx = np.exp(rng.uniform(-log_range, log_range, n))
    sy = np.exp(rng.uniform(-log_range, log_range, n))
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = torch.from_numpy(1 / sx).float()  # output -> input: 1 / scale
    theta[:, 1, 1] = torch.from_numpy(1 / sy).float()
    base = F.affine_grid(theta, (n, c, h, w), align_corners=False)
    field = torch.from_numpy(rng.normal(0.0, displacement, (n, 2, grid, grid))).float()
    field = F.interpolate(field, size=(h, w), mode="bicubic", align_corners=True)
    out = F.grid_sample(t, base + field.permute(0, 2, 3, 1), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    # a warp moves events, it does not make or remove them
    mass_in = t.sum((1, 2, 3), keepdim=True)
    mass_out = out.sum((1, 2, 3), keepdim=True).clamp_min(1e-6)
    return (out * mass_in / mass_out).numpy()


@dataclass(frozen=True)
class ClipTransform:
    """A chain of control steps (see the module's doc), picklable for the job processes."""
    spec: str = "none"
    pool: int = 4
    warp_scale: float = 0.25
    warp_displacement: float = 0.15
    warp_grid: int = 3
    slot_ms: float = 10.0

    window_ms: float = 50.0
    net: str | None = None  # the anonymizer checkpoint of net:SPEC (None: the shipped one)
    refractory_ms: float = FilterConfig.refractory_ms
    # stream:/net: jitter tiles across the sensor's height (the tile follows the sensor, as
    # the stream's default does); None: tiles of `pool` pixels
    tiles: float | None = None

    @property
    def uses_net(self) -> bool:
        return self.spec.startswith("net:")

    @property
    def stream(self) -> FilterConfig | None:
        """The stream's privacy filters of a stream:SPEC or net:SPEC transform, else None."""
        prefix = next((p for p in ("stream:", "net:") if self.spec.startswith(p)), None)
        if prefix is None:
            return None
        return FilterConfig(self.spec.removeprefix(prefix),
                            block=None if self.tiles else self.pool,
                            tiles=self.tiles or FilterConfig.tiles, warp_scale=self.warp_scale,
                            warp_displacement=self.warp_displacement, warp_grid=self.warp_grid,
                            warp_period_s=3600.0, refractory_ms=self.refractory_ms)

    @property
    def steps(self) -> tuple[str, ...]:
        """The steps on clips (a stream:SPEC transform has none: it is all on the events)."""
        if self.spec == "none" or self.stream is not None:
            return ()
        return tuple(self.spec.split("+"))

    @property
    def random(self) -> bool:
        return "warp" in self.steps or self.events_random

    @property
    def events_random(self) -> bool:
        """Whether the event step draws anew on every load (so each draw loads again)."""
        return self.uses_net or (self.stream is not None and
                                 any(s in self.stream.steps for s in ("warp", "jitter")))

    @property
    def on_events(self) -> bool:
        return "slots" in self.steps or self.stream is not None

    def events_filter(self, seed: int):
        """The event-level step of one load of a split (slots, or the stream's filters with
        their draws seeded from `seed`), before binning."""
        window_us = max(1, round(self.window_ms * 1000))
        if self.uses_net:
            # a config without steps is no filter to the Anonymizer (net:none)
            return _StreamNetRun(str(self.net or default_model()), self.stream, window_us, seed)
        if self.stream is not None:
            return _StreamFilterRun(self.stream, window_us, seed)
        return self.events

    def events(self, events: EventBatch) -> EventBatch:
        """The slots step, before binning."""
        return slots_from_zero(events, max(1, round(self.slot_ms * 1000)))

    def check(self, size: int) -> None:
        if self.stream is not None:
            self.stream.check()
            if self.window_ms <= 0:
                raise AnonyNoiseError(f"transform.window_ms must be positive, got {self.window_ms}")
            if self.uses_net:  # a missing or wrong checkpoint: now, not in every job
                load_checkpoint(Path(self.net or default_model()), ANONYMIZER_KINDS)
            return
        unknown = [s for s in self.steps if s not in STEPS]
        if unknown:
            raise AnonyNoiseError(f"unknown transform step {unknown[0]!r} in {self.spec!r} "
                                  f"(steps: {', '.join(STEPS)}, joined by '+'; or 'none')")
        if self.on_events and self.slot_ms <= 0:
            raise AnonyNoiseError(f"transform.slot_ms must be positive, got {self.slot_ms}")
        if "pool" in self.steps and (self.pool < 2 or size % self.pool):
            raise AnonyNoiseError(f"transform.pool must be at least 2 and divide data.size {size}, "
                                  f"got {self.pool}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            if step == "slots":
                continue  # done on the events (self.events)
            if step == "pool":
                x = block_means(x, self.pool)
            elif step == "bin":
                x = binarize(x)
            elif step == "warp":
                x = random_warp(x, rng, self.warp_scale, self.warp_displacement, self.warp_grid)
            else:
                raise AnonyNoiseError(f"unknown transform step {step!r} (see check)")
        return x


def _fmt(rows: list[dict], key: str) -> str:
    values = column(rows, key)
    return fmt(values) if values else ""


def _rank1(seed_rows: list[dict]) -> float:
    return mean_std(column(seed_rows, "reid_rank1"))[0]


@dataclass
class ControlsConfig:
    """The controls: the benchmark, the nets, the seeds, the attackers and the transforms
    (each a ClipTransform spec, all with the parameters of `transform`)."""
    data: DatasetConfig = field(default_factory=lambda: DatasetConfig(users=60, size=48))
    fit: FitConfig = field(default_factory=lambda: FitConfig(width=16, epochs=45))
    seeds: tuple[int, ...] = (0, 1)
    draws: int = 4  # draws of a random transform over the training clips
    attackers: tuple[str, ...] = ("scratch",)
    transforms: tuple[str, ...] = DEFAULT_TRANSFORMS
    transform: ClipTransform = field(default_factory=ClipTransform)
    # the nets see the clips summed to attack_size x attack_size, as an attacker of a large
    # sensor may (None: at the sensor's size); the transforms run at the sensor's size
    attack_size: int | None = None

    def check(self) -> "ControlsConfig":
        self.data.check()
        if self.attack_size is not None and not (
                0 < self.attack_size <= self.data.size and self.data.size % self.attack_size == 0):
            raise ConfigError(f"attack_size must divide data.size {self.data.size}, got "
                              f"{self.attack_size}")
        if self.draws < 1 or not self.seeds or not self.attackers:
            raise ConfigError("draws must be at least 1, seeds and attackers not empty")
        unknown = [a for a in self.attackers if a not in ATTACKERS]
        if unknown:
            raise ConfigError(f"unknown attacker {unknown[0]!r} (attackers: "
                              f"{', '.join(ATTACKERS)})")
        unknown = [c for c in self.data.cues if c not in CUES]
        if unknown:
            raise ConfigError(f"unknown cue {unknown[0]!r} (cues: {', '.join(CUES)})")
        for spec in self.transforms:
            replace(self.transform, spec=spec).check(self.data.size)
        return self


def load_config(path: str | Path) -> ControlsConfig:
    fixed = {DatasetConfig: ("seed",), FitConfig: ("seed", "device"), ClipTransform: ("spec",)}
    return from_table(ControlsConfig, read_toml(path), str(path), fixed)


def report(path: Path, command: str, config: DatasetConfig, fit: FitConfig, draws: int,
           rows: dict[str, dict[str, list[dict]]], seconds: float,
           attack_size: int | None = None, transform: ClipTransform | None = None) -> None:
    """rows: transform -> attacker -> one result per seed (the first attacker's jobs also
    trained the gesture net)."""
    attackers = list(next(iter(rows.values())))
    cues = "all cues" if config.cues == ALL_CUES else \
        f"people differ in {', '.join(config.cues)} only (the other cues the same for everyone)"
    several = len(attackers) > 1
    who = "; ".join(f"{a}: {ATTACKER_TEXT[a]}" for a in attackers) if several else \
        ATTACKER_TEXT[attackers[0]]
    out = Report("Controls: fixed transforms against a fresh attacker").paragraph(
        generated(command, seconds, "this 2-core CPU"))
    out.paragraph(
        f"Synthetic benchmark: {benchmark_text(config)}, {cues}; whole "
        f"clips in 5 bins x 2 polarities"
        + (f", summed to {attack_size}x{attack_size} for every net (the transforms run at "
           f"{config.size}x{config.size})" if attack_size and attack_size != config.size else "")
        + (f"; the stream's filters with jitter tiles of "
           f"{FilterConfig(tiles=transform.tiles).block_for(config.size)} px (an "
           f"{transform.tiles:g}th of the height)" if transform and transform.tiles else "")
        + f". Nets: ClassNet {fit.network} width {fit.width}, "
        f"{fit.epochs} epochs, on the transformed clips, the Re-ID net "
        f"{'(the attacker) ' if several else ''}{who} (random transforms: "
        f"{draws} draws of the training clips, one per epoch in turn); the last epoch is "
        "evaluated on the transformed test clips. Re-ID: one query per test person and "
        "gesture (first session), rank-1 with the flip descriptor. Means ± standard "
        "deviations over seeds; the change is the mean's, relative to no transform"
        + (", of the strongest attacker's (the highest mean rank-1) against the strongest on "
           "no transform." if several else "."))
    strongest = {spec: max(_rank1(by[a]) for a in attackers) for spec, by in rows.items()}
    table = []
    for spec, by in rows.items():
        change = ""
        if strongest.get("none") and spec != "none":
            change = f"{strongest[spec] / strongest['none'] - 1:+.0%}"
        cells = [_fmt(by[attackers[0]], "target_top1")] + \
            [_fmt(by[a], "reid_rank1") for a in attackers]
        if several:
            cells.append(f"{strongest[spec]:.3f}")
        table.append([spec, *cells, change])
    out.table(["transform", "gesture top-1",
               *(f"Re-ID rank-1 ({a if several else 'fresh attacker'})" for a in attackers),
               *(["strongest"] if several else []), "change"], table)
    out.section("Per seed").json_block(rows)
    out.write(path)


def main(argv=None) -> int:
    keep_freed_memory()
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_job_args(ap)
    ap.add_argument("--transforms", nargs="+", default=None,
                    help="override the config's transforms: chains of slots, pool, bin, warp "
                         "joined by '+', none, stream:SPEC (the stream's privacy filters) or "
                         "net:SPEC (the stream's anonymizer behind those filters; net:none)")
    ap.add_argument("--tiles", type=float, default=None,
                    help="override the config's jitter tiles across the sensor's height for "
                         "stream: and net: transforms (a filter strength: more tiles, smaller)")
    ap.add_argument("--out", default="experiments/reports/privacy-controls.md")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    study = load_config(args.config)
    if args.transforms:
        study = replace(study, transforms=tuple(args.transforms))
    if args.tiles is not None:
        study = replace(study, transform=replace(study.transform, tiles=args.tiles))
    study.check()  # every transform checked before any benchmark
    config, fit = study.data, study.fit
    transforms = [replace(study.transform, spec=spec) for spec in dict.fromkeys(study.transforms)]
    start = time.time()
    data_dir = Path(args.data)
    seeds = [replace(config, seed=s) for s in study.seeds]
    for c in seeds:  # every benchmark first (the generator uses all cores by itself)
        dataset(data_dir, c)
    attackers = list(dict.fromkeys(study.attackers))
    # the gesture net is the same whoever attacks: trained in the first attacker's jobs only
    jobs = [(c, fit, data_dir, a == attackers[0], t, study.draws, a, study.attack_size)
            for t in transforms for a in attackers for c in seeds]
    results = iter(run_jobs(jobs, args.jobs))
    rows = {t.spec: {a: [next(results) for _ in seeds] for a in attackers} for t in transforms}
    for spec, by in rows.items():
        for a, seed_rows in by.items():
            print(spec, a, json.dumps([{k: r.get(k) for k in ("seed", "target_top1",
                                                               "reid_rank1")}
                                       for r in seed_rows]), flush=True)
    out = Path(args.out)
    command, seconds = " ".join(["python -m experiments.controls", *argv]), time.time() - start
    # the numbers beside the report, for a study that reads several runs (privacy_summary)
    write_json(out.with_suffix(".json"), {
        "command": command, "seconds": seconds, "data": asdict(config), "fit": asdict(fit),
        "draws": study.draws, "attack_size": study.attack_size,
        "transform": asdict(study.transform), "rows": rows})
    report(out, command, config, fit, study.draws, rows, seconds, study.attack_size,
           study.transform)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, prog="controls", sigterm_interrupts=True))
