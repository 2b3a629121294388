"""The privacy study's trainings, one job at a time: what train.privacy_report runs.

    study_clean      a seed's clean gesture and Re-ID nets (the baseline), saved for the rest
    study_variant    one anonymizer of the sweep on one seed: pipeline, post-trained gesture
                     net, fresh attackers, temporal averaging; its row rewritten step by step
    study_averaging  temporal averaging alone, for anonymizers a stopped run saved
    collect          a seed's results from what its jobs wrote

Everything works on the stream's 50 ms windows of the synthetic benchmark, anonymized per
window with fresh noise through the events round trip, and judged on the clips a consumer
re-bins from them (train.clips).
"""

from __future__ import annotations

import copy
import json
import logging
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.atomic import atomic_output
from anonynoise.checkpoint import (Representation, load_checkpoint, load_net,
                                   save_checkpoint)
from anonynoise.events import from_dvsgesture_array
from anonynoise.filters import FilterConfig
from anonynoise.models import ClassNet, LightAnonNet
from anonynoise.models.denoise import DenoiseNet
from anonynoise.synth.dataset import DatasetConfig
from train.classify import FitConfig, fit_classnet, reid_accuracy, target_accuracy
from train.clips import (anonymize_windows, clean_clips, compose_clips, recording_windows,
                         study_generators)
from train.composite import CompositeConfig, train_composite
from train.datasets.dvsgesture import read_recording, scan, sensor_size
from train.replay import stream_filtered
from train.synth_check import dataset

log = logging.getLogger(__name__)
WINDOW_MS = 50  # the stream's default window (stream.cli)
BINS = 5
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
    # noise budgets to sweep; empty: pipeline.noise_budget for every variant (keys as before)
    noise_budgets: tuple[float, ...] = ()
    # caps of the Re-ID term to sweep (anonynoise.losses.anonymizer_loss); empty:
    # pipeline.reid_cap for every variant
    reid_caps: tuple[float, ...] = ()
    full_table: bool = True     # every variant gets every attacker (else the first only)
    # a probe, not a report: every variant gets one attacker (from the clean Re-ID net, with a
    # denoiser) and no temporal averaging; at 48x48 on the CPU about 21 of a variant's 35
    # minutes (the pipeline runs either way)
    quick: bool = False
    # train on every clip-long span of the training recordings (two 3 s clips of a 6 s one:
    # clean Re-ID rank-1 0.945 / 0.809 -> 0.973 / 0.845 on seeds 0 / 1), else on the first
    all_spans: bool = True
    draws: int = 2              # anonymized copies of the training set for the attackers
    anon_width: int = 8
    anon_form: str = "mean_scale"
    # the anonymizer starts as the identity (NoiseAnonNet.start_as_identity), not from a
    # default initialisation that already destroys the gesture on the stream's windows
    anon_identity_start: bool = True
    denoise_width: int = 32     # the reference's DnCNN is 128 wide and 15 deep
    denoise_depth: int = 5
    # the stream's privacy filters in front of the anonymizer (an anonynoise.filters spec;
    # "none": the net alone): the pipeline trains on, and every attacker sees, the net's
    # output on filtered windows; each recording gets its own warp (the stream holds one for
    # a period longer than a recording) and each of the `draws` training copies its own
    filters: str = "none"
    filter_block: int = 4       # jitter's tile, in pixels
    filter_refractory_ms: float = FilterConfig.refractory_ms

    @property
    def filter_config(self) -> FilterConfig | None:
        config = FilterConfig(self.filters, block=self.filter_block,
                              refractory_ms=self.filter_refractory_ms).check()
        return config if config.steps else None

    @property
    def variants(self) -> list["Variant"]:
        return [Variant(w, c, b, cap) for cap in (self.reid_caps or (None,))
                for b in (self.noise_budgets or (None,))
                for c in self.clean_target_weights for w in self.reid_weights]

    def budget_of(self, variant: "Variant") -> float | None:
        return self.pipeline.noise_budget if variant.noise_budget is None \
            else variant.noise_budget

    def cap_of(self, variant: "Variant") -> float | None:
        return self.pipeline.reid_cap if variant.reid_cap is None else variant.reid_cap

    def every_attacker(self, variant: "Variant") -> bool:
        """Whether this variant gets every attacker and temporal averaging."""
        return not self.quick and (self.full_table or variant == self.variants[0])

    @property
    def clip_windows(self) -> int:
        return int(round(self.clip_s * 1000 / WINDOW_MS))

    @property
    def long_windows(self) -> int:
        return int(round(self.long_s * 1000 / WINDOW_MS))

    @property
    def clips_per_recording(self) -> int:
        """Training clips cut from each training recording (every span, or the first)."""
        return self.long_windows // self.clip_windows if self.all_spans else 1


def load_windows(root: Path, split: str, n_windows: int,
                 filters: FilterConfig | None = None, seed: int = 0):
    """(N, n_windows, 2 * BINS, H, W) uint8 windows of every recording of a split, and the
    recordings (sorted as scan sorts them). With filters, each recording's events go through
    them window by window first (recording i with seed `seed * 1_000_003 + i`), its windows
    where the unfiltered recording's are."""
    recordings = scan(root, split)
    sensor = sensor_size(root)
    out = None  # filled in place: a list to stack would need the split's memory twice
    for i, r in enumerate(recordings):
        events = from_dvsgesture_array(read_recording(r.path), sensor)
        t0 = int(events.t[0]) if len(events) else 0
        if filters is not None:
            events = stream_filtered(events, filters, WINDOW_MS * 1000, BINS,
                                     seed * 1_000_003 + i)
        windows = recording_windows(events, WINDOW_MS * 1000, n_windows, BINS, t0=t0)
        if out is None:
            out = np.empty((len(recordings), *windows.shape), np.uint8)
        out[i] = windows
    return out, recordings


@torch.no_grad()
def anonymized_spans(anon, windows: np.ndarray, spans: list[int], clip_bins: int = BINS,
                     batch: int = 8, device: str = "cpu") -> dict[int, np.ndarray]:
    """One anonymization pass over the windows (fresh noise each), re-binned into clips of
    the first `span` windows for every span, scaled to the count level of the first span."""
    anon.eval()
    generators = study_generators(device)
    out: dict[int, list] = {s: [] for s in spans}
    for k in range(0, len(windows), batch):
        x = anonymize_windows(anon, torch.from_numpy(np.array(windows[k:k + batch]))
                              .to(device).float(), generator=generators)
        for s in spans:
            out[s].append((compose_clips(x[:, :s], clip_bins) * (spans[0] / s)).cpu())
    return {s: torch.cat(v).numpy() for s, v in out.items()}


def clean_spans(windows: np.ndarray, spans: list[int]) -> dict[int, np.ndarray]:
    return {s: clean_clips(windows[:, :s]) * (spans[0] / s) for s in spans}


def _mass(x: np.ndarray) -> float:
    return float(np.clip(x, 0, None).sum())


@dataclass(frozen=True)
class Variant:
    """One anonymizer training of the sweep: the Re-ID term's weight, the frozen clean
    target net's weight in the anonymizer's loss and, when the sweep has several, the noise
    budget and the Re-ID term's cap (None: the pipeline config's)."""
    reid_weight: float
    clean_target_weight: float = 0.0
    noise_budget: float | None = None
    reid_cap: float | None = None

    @property
    def key(self) -> str:  # results.json's key (a bare weight, as before the sweep had two)
        key = str(float(self.reid_weight))
        if self.clean_target_weight:
            key += f"+clean{float(self.clean_target_weight)}"
        if self.noise_budget is not None:
            key += f"+budget{float(self.noise_budget)}"
        if self.reid_cap is not None:
            key += f"+cap{float(self.reid_cap)}"
        return key

    @property
    def label(self) -> str:
        return f"Re-ID weight {self.reid_weight:g}" + (
            f", clean target weight {self.clean_target_weight:g}"
            if self.clean_target_weight else "") + (
            f", noise budget {self.noise_budget:g}" if self.noise_budget is not None else "") + (
            f", Re-ID cap {self.reid_cap:g}" if self.reid_cap is not None else "")

    @property
    def order(self) -> tuple[float, float, float, float]:  # the report's row order
        return (self.reid_weight, self.clean_target_weight,
                -1.0 if self.noise_budget is None else self.noise_budget,
                -1.0 if self.reid_cap is None else self.reid_cap)

    @classmethod
    def from_key(cls, key: str) -> "Variant":
        rest, _, cap = key.partition("+cap")
        rest, _, b = rest.partition("+budget")
        w, _, c = rest.partition("+clean")
        return cls(float(w), float(c) if c else 0.0, float(b) if b else None,
                   float(cap) if cap else None)


def _cached_windows(root: Path, split: str, config: StudyConfig, cache: Path,
                    filters: FilterConfig | None = None, seed: int = 0) -> np.ndarray:
    """A split's windows, from the .npy cache (made first if missing), memory-mapped."""
    if not cache.is_file():
        windows, _ = load_windows(root, split, config.long_windows, filters, seed)
        with atomic_output(cache, ".partial.npy") as part:  # np.save wants the .npy
            np.save(part, windows)
    return np.load(cache, mmap_mode="r")


def _clip_view(train_w: np.ndarray, config: StudyConfig) -> np.ndarray:
    """The training clips: (recordings x spans, clip windows, ...), recording-major; a view
    of the memory map when the spans fill the recordings."""
    n_clip, spans = config.clip_windows, config.clips_per_recording
    return train_w[:, :spans * n_clip].reshape(len(train_w) * spans, n_clip, *train_w.shape[2:])


def _seed_data(config: StudyConfig, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's windows and labels. The windows are cached as .npy in seed_dir and opened
    memory-mapped, so the jobs of one seed share one copy in the page cache.

    train_w / test_w / clip_w are the clean windows; in_train / in_test / in_clip what the
    anonymizer gets: the same without filters, else the filtered windows (in_train and
    in_clip a list of config.draws filtered copies, each with its own filter draws)."""
    root = dataset(data_dir, config.data)
    seed_dir.mkdir(parents=True, exist_ok=True)
    train_w = _cached_windows(root, "train", config, seed_dir / "train-windows.npy")
    test_w = _cached_windows(root, "test", config, seed_dir / "test-windows.npy")
    rec_train, rec_test = scan(root, "train"), scan(root, "test")
    filters, seed = config.filter_config, config.data.seed
    if filters is None:
        in_train, in_test = [train_w], test_w
    else:  # the filter seeds: per seed, split and draw; never those of another set
        tag = f"filtered-{filters.spec}-b{filters.block}"
        in_train = [_cached_windows(root, "train", config,
                                    seed_dir / f"train-windows-{tag}-{k}.npy", filters,
                                    seed * 1000 + 2 * k + 1)
                    for k in range(max(1, config.draws))]
        in_test = _cached_windows(root, "test", config, seed_dir / f"test-windows-{tag}.npy",
                                  filters, seed * 1000 + 2 * config.draws + 1)
    users = sorted({r.user for r in rec_train})
    first_session = {}
    for r in rec_test:
        first_session.setdefault(r.user, r.lighting)
    t_train = np.array([r.target for r in rec_train])
    id_train = np.array([users.index(r.user) for r in rec_train])
    spans = config.clips_per_recording
    return {"train_w": train_w, "test_w": test_w, "users": users,
            "t_train": t_train, "id_train": id_train, "clip_w": _clip_view(train_w, config),
            "in_train": in_train, "in_test": in_test,
            "in_clip": [_clip_view(w, config) for w in in_train],
            "t_clip": np.repeat(t_train, spans), "id_clip": np.repeat(id_train, spans),
            "t_test": np.array([r.target for r in rec_test]),
            "u_test": np.array([r.user for r in rec_test]),
            "query": np.array([r.lighting == first_session[r.user] for r in rec_test]),
            "files": np.arange(len(rec_test))}


def _spans(config: StudyConfig) -> list[int]:
    n_clip = config.clip_windows
    spans = [int(round(s * 1000 / WINDOW_MS)) for s in range(1, int(config.long_s) + 1)]
    return [n_clip] + [s for s in spans if s != n_clip]


def _reid(d: dict, net, x, device, front=None) -> dict:
    return reid_accuracy(net, x, d["u_test"], d["files"], d["t_test"], d["query"], device,
                         front=front).as_dict()


def write_json(path: Path, value) -> None:
    with atomic_output(path) as part:  # a run stopped mid-write leaves the last complete one
        part.write_text(json.dumps(value, indent=1))


def study_clean(config: StudyConfig, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's baseline: clean target and Re-ID nets (saved for the variants' jobs) and
    their numbers (seed_dir/clean.json)."""
    seed, device = config.data.seed, config.fit.device
    d = _seed_data(config, data_dir, seed_dir)
    n_clip = config.clip_windows
    fit = replace(config.fit, seed=seed)
    clean_train = clean_clips(d["clip_w"])
    clean_test = clean_clips(d["test_w"][:, :n_clip])
    log.info("seed %d: %d train / %d test recordings, %d training clips, %s", seed,
             len(d["t_train"]), len(d["t_test"]), len(d["clip_w"]), d["train_w"].shape[1:])
    target_clean = fit_classnet(clean_train, d["t_clip"], 11, False, fit)
    reid_clean = fit_classnet(clean_train, d["id_clip"], len(d["users"]), True, fit)
    clean = {"target_top1": target_accuracy(target_clean, clean_test, d["t_test"], device),
             **_reid(d, reid_clean, clean_test, device)}
    clean["averaging"] = {str(s): _reid(d, reid_clean, c, device)["rank1"]
                          for s, c in clean_spans(d["test_w"], _spans(config)).items()}
    for net, name in ((target_clean, "target"), (reid_clean, "reid")):
        save_checkpoint(seed_dir / f"clean-{name}.pt", net, _representation(),
                        {"stage": "privacy_report clean baseline", "seed": seed,
                         "trained_on": "synthetic people only", "metrics": clean})
    write_json(seed_dir / "clean.json", clean)
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
    n_clip = config.clip_windows
    test_w = d["test_w"]
    fit = replace(config.fit, seed=seed)
    target_clean, _ = load_net(seed_dir / "clean-target.pt", "classnet", device=device)
    reid_clean, _ = load_net(seed_dir / "clean-reid.pt", "classnet", device=device)
    clean_train = clean_clips(d["clip_w"])
    clean_test = clean_clips(test_w[:, :n_clip])
    row_file = seed_dir / "rows" / f"{variant.key}.json"
    row_file.parent.mkdir(parents=True, exist_ok=True)
    tag = f"seed {seed} {variant.label}"

    torch.manual_seed(seed)
    anon = LightAnonNet(2 * BINS, form=config.anon_form, width=config.anon_width)
    if config.anon_identity_start:
        anon.start_as_identity()
    target_net, adversary = copy.deepcopy(target_clean), copy.deepcopy(reid_clean)
    history = train_composite(anon, target_net, adversary, d["in_clip"][0], d["t_clip"],
                              d["id_clip"], replace(
                                  config.pipeline, reid_weight=variant.reid_weight,
                                  clean_target_weight=variant.clean_target_weight, seed=seed,
                                  device=device, noise_budget=config.budget_of(variant),
                                  reid_cap=config.cap_of(variant)))
    spans = _spans(config)
    test_spans = anonymized_spans(anon, d["in_test"], spans if main else [n_clip],
                                  device=device)
    anon_test = test_spans[n_clip]
    row = {"variant": asdict(variant), "pipeline": history[-1],
           # epochs that ended above chance and were undone (CompositeConfig.rollback)
           "rolled_back_epochs": [h["epoch"] + 1 for h in history if h.get("rolled_back")],
           "event_rate_ratio": _mass(anon_test) / _mass(clean_test),
           "target_top1_pipeline": target_accuracy(target_net, anon_test, d["t_test"], device),
           "target_top1_clean_net": target_accuracy(target_clean, anon_test, d["t_test"], device),
           "adversary": _reid(d, adversary, anon_test, device), "attackers": {}}
    _save_anonymizer(anon, seed_dir / f"anonymizer-{variant.key}.pt", config, variant, row)
    write_json(row_file, row)
    draws = _training_draws(anon, d, config, device)
    # the reference's post-training of the target: from the pipeline's last target net, on
    # anonymized clips, as long as every other ClassNet; what a consumer would deploy (with a
    # denoiser in front too, after the attackers: a run stopped at a time limit keeps those)
    row["target_top1_post"] = post_train_target(config, d, draws, clean_train, anon_test,
                                                target_net, denoised=False)
    write_json(row_file, row)
    log.info("%s target post-trained: %.3f", tag, row["target_top1_post"])
    inits = {"clean": reid_clean, "adversary": adversary}
    kinds = [(name, init, dn) for name, init in ATTACKERS for dn in (True, False)] if main \
        else [("from clean", "clean", True)]
    for name, init, with_denoiser in kinds:
        label = name + (" + denoiser" if with_denoiser else "")
        denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth) \
            if with_denoiser else None
        out = fit_classnet(draws, d["id_clip"], len(d["users"]), True, fit,
                           init=inits.get(init), denoiser=denoiser, clean=clean_train)
        net, front = out if with_denoiser else (out, None)
        row["attackers"][label] = _reid(d, net, anon_test, device, front)
        if label == "from clean":
            attacker_clip = net
        write_json(row_file, row)
        log.info("%s %s: %s", tag, label, json.dumps(row["attackers"][label]))
    row["target_top1_post_denoised"] = post_train_target(config, d, draws, clean_train,
                                                         anon_test, target_net, denoised=True)
    write_json(row_file, row)
    log.info("%s target post-trained with a denoiser: %.3f", tag,
             row["target_top1_post_denoised"])
    if main:
        row["averaging"] = _temporal_averaging(config, d, anon, reid_clean, attacker_clip,
                                               test_spans, fit)
        write_json(row_file, row)
    log.info("%s: %s", tag, json.dumps(row))
    return row


def _anonymized_draws(anon, copies: list[np.ndarray], n_windows: int, config: StudyConfig,
                      device: str) -> list[np.ndarray]:
    """config.draws anonymized clips of `n_windows` windows of the training set (fresh noise
    each; draw k from copies[k] in turn: with filters, each its own filtered copy)."""
    return [anonymized_spans(anon, copies[k % len(copies)], [n_windows],
                             device=device)[n_windows] for k in range(config.draws)]


def _training_draws(anon, d: dict, config: StudyConfig, device: str) -> list[np.ndarray]:
    """The anonymized training clips the attackers and post-training learn from."""
    return _anonymized_draws(anon, d["in_clip"], config.clip_windows, config, device)


def post_train_target(config: StudyConfig, d: dict, draws: list, clean_train: np.ndarray,
                      anon_test: np.ndarray, init: ClassNet, denoised: bool) -> float:
    """Gesture top-1 on the anonymized test clips of a target net trained on anonymized
    clips from `init`, with a denoiser in front (trained to restore the clean clip) or not."""
    fit = replace(config.fit, seed=config.data.seed)
    if not denoised:
        net = fit_classnet(draws, d["t_clip"], 11, False, fit, init=init)
        return target_accuracy(net, anon_test, d["t_test"], fit.device)
    denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth)
    net, front = fit_classnet(draws, d["t_clip"], 11, False, fit, init=init,
                              denoiser=denoiser, clean=clean_train)
    return target_accuracy(net, anon_test, d["t_test"], fit.device, front=front)


def _temporal_averaging(config: StudyConfig, d: dict, anon, reid_clean, attacker_clip,
                        test_spans: dict, fit: FitConfig) -> dict:
    """The noise is fresh in every window, so re-binning longer spans averages it out:
    rank-1 over 1 to 6 s of stream of the 3 s attacker, and of one trained on 6 s."""
    device, n_long = fit.device, config.long_windows
    out = {f"attacker {config.clip_s:g} s": {
        str(s): _reid(d, attacker_clip, c, device)["rank1"] for s, c in test_spans.items()}}
    long_draws = _anonymized_draws(anon, d["in_train"], n_long, config, device)
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
    fit = replace(config.fit, seed=seed)
    reid_clean = fit_classnet(clean_clips(d["clip_w"]), d["id_clip"],
                              len(d["users"]), True, fit)
    for variant in variants:
        anon = load_checkpoint(seed_dir / f"anonymizer-{variant.key}.pt").build(device)
        test_spans = anonymized_spans(anon, d["in_test"], _spans(config), device=device)
        draws = _training_draws(anon, d, config, device)
        attacker_clip = fit_classnet(draws, d["id_clip"], len(d["users"]), True, fit,
                                     init=reid_clean)
        averaging = _temporal_averaging(config, d, anon, reid_clean, attacker_clip,
                                        test_spans, fit)
        (seed_dir / "rows").mkdir(parents=True, exist_ok=True)
        write_json(seed_dir / "rows" / f"{variant.key}.averaging.json", averaging)
        log.info("seed %d %s averaging: %s", seed, variant.label, json.dumps(averaging))


def collect(seed_dir: Path, seed: int) -> dict | None:
    """A seed's results from what its jobs wrote (None before its clean nets are done)."""
    if not (seed_dir / "clean.json").is_file():
        return None
    files = sorted((f for f in (seed_dir / "rows").glob("*.json")
                    if not f.name.endswith(".averaging.json")),
                   key=lambda f: Variant.from_key(f.stem).order)
    rows = {f.stem: json.loads(f.read_text()) for f in files}
    for key, row in rows.items():
        separate = seed_dir / "rows" / f"{key}.averaging.json"
        if "averaging" not in row and separate.is_file():
            row["averaging"] = json.loads(separate.read_text())
    return {"seed": seed, "clean": json.loads((seed_dir / "clean.json").read_text()),
            "weights": rows}


def _representation() -> Representation:
    """What every net of the study sees: a stream window (the anonymizer) or a clip re-binned
    from windows (the ClassNets), 5 bins x 2 polarities, at any size."""
    return Representation(bins=BINS, polarities=2, width=None, height=None,
                          window_us=WINDOW_MS * 1000)


def _save_anonymizer(anon, path: Path, config: StudyConfig, variant: Variant,
                     row: dict) -> None:
    rep = _representation()
    record = {"stage": "privacy_report", "trained_on": "synthetic people only",
              "command": "python -m " + " ".join(["train.privacy_report", *sys.argv[1:]]),
              "reid_weight": variant.reid_weight,
              "clean_target_weight": variant.clean_target_weight,
              "noise_budget": config.budget_of(variant),
              "reid_cap": config.cap_of(variant),
              # the filters it was trained behind: the stream should run them in front of it
              "filters": (config.filter_config.describe() if config.filter_config
                          else {"spec": "none"}),
              "config": json.loads(json.dumps(asdict(config), default=str)),
              "metrics": {"event_rate_ratio": row["event_rate_ratio"],
                          "target_top1_pipeline": row["target_top1_pipeline"],
                          "adversary_rank1": row["adversary"]["rank1"]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, anon, rep, record)  # it copies the weights to the CPU itself
    log.info("saved %s", path)
