"""The shipped anonymizer's recipe: clean nets, then the adversarial pipeline behind the filters.

    Recipe              what one anonymizer's training is (train/configs/*.toml)
    training_data       a seed's synthetic benchmark cut into the stream's windows (cached)
    train_clean_nets    the clean gesture and Re-ID nets the pipeline starts from
    train_anonymizer    the light anonymizer, trained by train.composite from those nets

Everything works on the stream's 50 ms windows of the synthetic benchmark (anonynoise.synth),
anonymized per window with fresh noise through the events round trip, and judged on the
clips a consumer re-bins from them (train.clips). train.train_anonymizer runs it; the
privacy report (experiments/) runs it per seed and variant and then evaluates.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.atomic import atomic_output
from anonynoise.checkpoint import Representation
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import from_dvsgesture_array
from anonynoise.filters import FilterConfig
from anonynoise.models import ClassNet, LightAnonNet
from anonynoise.models.noise import FORMS, SAMPLINGS
from anonynoise.synth.dataset import (MANIFEST, DatasetConfig, generate_dataset,
                                      generator_fingerprint)
from train.classify import FitConfig, fit_classnet
from train.clips import clean_clips, recording_windows
from train.composite import CompositeConfig, train_composite
from train.event_domain import ROUND_TRIP_GRADIENTS
from train.config_file import from_table, read_toml, to_table
from train.datasets.dvsgesture import read_recording, scan, sensor_size
from train.replay import stream_filtered

log = logging.getLogger(__name__)
WINDOW_MS = 50  # the stream's default window (stream.cli)
BINS = 5
GESTURES = 11


@dataclass
class AnonymizerNet:
    """The light anonymizer's shape (anonynoise.models.LightAnonNet)."""
    width: int = 8
    form: str = "mean_scale"
    # how full resolution is read and written (LightAnonNet): "stride", the first shipped
    # model's, puts a 2x2 grid in its output; "pool" treats every pixel of a block alike
    sampling: str = "stride"
    # start as the identity (NoiseAnonNet.start_as_identity), not from a default
    # initialisation that already destroys the gesture on the stream's windows
    identity_start: bool = True


@dataclass
class Recipe:
    """One anonymizer's training. `seed` picks the benchmark's people and seeds every net;
    `device` is where they train: both are copied into data, fit and pipeline."""
    seed: int = 0
    device: str = "cpu"
    data: DatasetConfig = field(default_factory=lambda: DatasetConfig(size=64, duration_s=6.0))
    clip_s: float = 3.0   # a consumer's clip: what every net judges
    long_s: float = 6.0   # the windows cut from each recording
    # train on every clip-long span of each training recording, else on the first
    all_spans: bool = True
    fit: FitConfig = field(default_factory=FitConfig)  # the clean nets
    anonymizer: AnonymizerNet = field(default_factory=AnonymizerNet)
    pipeline: CompositeConfig = field(default_factory=CompositeConfig)
    # the stream's privacy filters in front of the anonymizer ("none": the net alone): the
    # pipeline trains on their output; each recording gets its own warp (the stream holds one
    # for a period longer than a recording)
    filters: FilterConfig = field(default_factory=lambda: FilterConfig("none"))

    def __post_init__(self):
        # one seed and one device for every part (replace() runs this again)
        self.data = replace(self.data, seed=self.seed)
        self.fit = replace(self.fit, seed=self.seed, device=self.device)
        self.pipeline = replace(self.pipeline, seed=self.seed, device=self.device)

    @property
    def filter_config(self) -> FilterConfig | None:
        return self.filters if self.filters.steps else None

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

    def check(self) -> "Recipe":
        """ConfigError-style one-line AnonyNoiseError for values no training can use."""
        self.data.check()
        self.filters.check()
        p = self.pipeline
        if self.fit.width < 1 or self.anonymizer.width < 1:
            raise AnonyNoiseError("fit.width and anonymizer.width must be at least 1")
        if not 0 < self.clip_s <= self.long_s <= self.data.duration_s:
            raise AnonyNoiseError("clip_s must be positive and at most long_s, which is at "
                                  "most data.duration_s")
        if self.long_windows % self.clip_windows or self.clip_windows % p.clip_bins:
            raise AnonyNoiseError(f"long_s must be a multiple of clip_s, and a clip's "
                                  f"{self.clip_windows} windows must divide into "
                                  f"pipeline.clip_bins ({p.clip_bins})")
        if self.anonymizer.sampling not in SAMPLINGS:
            raise AnonyNoiseError(f"anonymizer.sampling must be one of {', '.join(SAMPLINGS)}, "
                                  f"got {self.anonymizer.sampling!r}")
        if self.anonymizer.form not in FORMS:
            raise AnonyNoiseError(f"anonymizer.form must be one of {', '.join(FORMS)}, "
                                  f"got {self.anonymizer.form!r}")
        if p.round_trip_gradient not in ROUND_TRIP_GRADIENTS:
            raise AnonyNoiseError("pipeline.round_trip_gradient must be one of "
                                  f"{', '.join(ROUND_TRIP_GRADIENTS)}, got "
                                  f"{p.round_trip_gradient!r}")
        if p.reid_push not in ("triplet", "confusion"):
            raise AnonyNoiseError(f"pipeline.reid_push must be triplet or confusion, got "
                                  f"{p.reid_push!r}")
        if p.reid_push == "confusion" and p.reid_cap is not None:
            raise AnonyNoiseError("pipeline.reid_cap caps the triplet push; the confusion push "
                                  "stops at chance by itself")
        if p.adversary_steps < 1 or p.adversaries < 1:
            raise AnonyNoiseError("pipeline.adversary_steps and pipeline.adversaries must be "
                                  "at least 1")
        if p.lr_adversary is not None and p.lr_adversary < 0:
            raise AnonyNoiseError("pipeline.lr_adversary must not be negative")
        if p.adversaries > 1 and not p.adversary_restart:
            # copies of one net trained on the same batches stay the same net
            raise AnonyNoiseError("pipeline.adversaries above 1 needs adversary_restart "
                                  "(without staggered restarts the copies stay identical)")
        if p.bound_dual_lr is not None and (p.target_ce_bound is None or p.bound_dual_lr <= 0):
            raise AnonyNoiseError("pipeline.bound_dual_lr needs pipeline.target_ce_bound and "
                                  "must be positive")
        return self


# the fields a recipe file may not set: the recipe's seed and device set them
FIXED = {DatasetConfig: ("seed",), FitConfig: ("seed", "device"),
         CompositeConfig: ("seed", "device")}


def recipe_from_table(table: dict, where: str) -> Recipe:
    """A checked Recipe from a TOML table."""
    return from_table(Recipe, table, where, FIXED).check()


def load_recipe(path: str | Path) -> Recipe:
    """A checked Recipe from a TOML file (train/configs/)."""
    return recipe_from_table(read_toml(path), str(path))


def recipe_table(recipe: Recipe) -> dict:
    """The recipe as its file would write it (for records and checkpoints)."""
    return to_table(recipe, FIXED)


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


def cached_windows(root: Path, split: str, recipe: Recipe, cache: Path,
                   filters: FilterConfig | None = None, seed: int = 0) -> np.ndarray:
    """A split's windows, from the .npy cache (made first if missing), memory-mapped: the
    jobs of one seed share one copy in the page cache."""
    if not cache.is_file():
        windows, _ = load_windows(root, split, recipe.long_windows, filters, seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(cache, ".partial.npy") as part:  # np.save wants the .npy
            np.save(part, windows)
    return np.load(cache, mmap_mode="r")


def filter_tag(filters: FilterConfig) -> str:
    """The cache name of a filtered copy: the tile in pixels (b6), or per sensor height (t8)."""
    size = f"b{filters.block}" if filters.block is not None else f"t{filters.tiles:g}"
    return f"filtered-{filters.spec}-{size}"


def filter_seed(seed: int, split: str, draw: int, draws: int) -> int:
    """The filters' seed of one filtered copy: per benchmark seed, split and draw, never
    that of another copy (the test split's comes after every training draw)."""
    return seed * 1000 + 2 * (draw if split == "train" else draws) + 1


def clip_view(train_w: np.ndarray, recipe: Recipe) -> np.ndarray:
    """The training clips: (recordings x spans, clip windows, ...), recording-major; a view
    of the memory map when the spans fill the recordings."""
    n_clip, spans = recipe.clip_windows, recipe.clips_per_recording
    return train_w[:, :spans * n_clip].reshape(len(train_w) * spans, n_clip, *train_w.shape[2:])


def training_data(recipe: Recipe, data_dir: Path, cache_dir: Path, draws: int = 1) -> dict:
    """The training split's windows and labels, windows cached as .npy in cache_dir.

    train_w / clip_w are the clean windows (whole recordings / training clips); in_train /
    in_clip what the anonymizer gets: lists of `draws` copies, the clean windows themselves
    without filters, else filtered copies each with its own filter draws."""
    root = dataset(data_dir, recipe.data)
    train_w = cached_windows(root, "train", recipe, cache_dir / "train-windows.npy")
    rec_train = scan(root, "train")
    filters = recipe.filter_config
    if filters is None:
        in_train = [train_w]
    else:
        in_train = [cached_windows(root, "train", recipe, cache_dir /
                                   f"train-windows-{filter_tag(filters)}-{k}.npy", filters,
                                   filter_seed(recipe.seed, "train", k, draws))
                    for k in range(max(1, draws))]
    users = sorted({r.user for r in rec_train})
    t_train = np.array([r.target for r in rec_train])
    id_train = np.array([users.index(r.user) for r in rec_train])
    spans = recipe.clips_per_recording
    return {"root": root, "train_w": train_w, "users": users, "t_train": t_train,
            "id_train": id_train, "clip_w": clip_view(train_w, recipe), "in_train": in_train,
            "in_clip": [clip_view(w, recipe) for w in in_train],
            "t_clip": np.repeat(t_train, spans), "id_clip": np.repeat(id_train, spans)}


def train_clean_nets(recipe: Recipe, d: dict) -> tuple[ClassNet, ClassNet]:
    """The clean gesture (target) and Re-ID nets, on the clean training clips."""
    clean_train = clean_clips(d["clip_w"])
    log.info("seed %d: %d training recordings, %d training clips, windows %s", recipe.seed,
             len(d["t_train"]), len(d["clip_w"]), d["train_w"].shape[1:])
    target = fit_classnet(clean_train, d["t_clip"], GESTURES, False, recipe.fit)
    reid = fit_classnet(clean_train, d["id_clip"], len(d["users"]), True, recipe.fit)
    return target, reid


def train_anonymizer(recipe: Recipe, d: dict, target_clean: ClassNet, reid_clean: ClassNet,
                     on_step=None):
    """The light anonymizer trained by train.composite from copies of the clean nets on the
    first (filtered) copy of the training clips. Returns (anonymizer, the pipeline's target
    net, its adversary, the per-epoch history); the clean nets are left as they were.
    on_step: train_composite's per-step trace (a study's)."""
    torch.manual_seed(recipe.seed)
    anon = LightAnonNet(2 * BINS, form=recipe.anonymizer.form, width=recipe.anonymizer.width,
                        sampling=recipe.anonymizer.sampling)
    if recipe.anonymizer.identity_start:
        anon.start_as_identity()
    target_net, adversary = copy.deepcopy(target_clean), copy.deepcopy(reid_clean)
    history = train_composite(anon, target_net, adversary, d["in_clip"][0], d["t_clip"],
                              d["id_clip"], recipe.pipeline, on_step=on_step)
    return anon, target_net, adversary, history


def representation() -> Representation:
    """What every net of the recipe sees: a stream window (the anonymizer) or a clip
    re-binned from windows (the ClassNets), 5 bins x 2 polarities, at any size."""
    return Representation(bins=BINS, polarities=2, width=None, height=None,
                          window_us=WINDOW_MS * 1000)


def anonymizer_record(recipe: Recipe, stage: str, **extra) -> dict:
    """An anonymizer checkpoint's training metadata: the recipe, and the filters it was
    trained behind at the top, where the runtime looks (anonynoise.filters.ModelFilters)."""
    p = recipe.pipeline
    return {"stage": stage, "trained_on": "synthetic people only",
            "reid_weight": p.reid_weight, "clean_target_weight": p.clean_target_weight,
            "noise_budget": p.noise_budget, "reid_cap": p.reid_cap,
            "filters": (recipe.filter_config.describe() if recipe.filter_config
                        else {"spec": "none"}),
            "recipe": recipe_table(recipe), **extra}
