"""Privacy filters: fixed, non-learned transforms of a window's events, applied before the
anonymizer's net.

    warp    a random smooth warp of the image plane (an anisotropic scale about the centre
            plus a smooth displacement field), drawn from OS entropy and held for a period:
            body proportions and shape change, and no two periods share them
    slots   the first event of each pixel and polarity in each time bin of the window, the
            rest dropped: how many events an edge makes (contrast, texture) is gone
    refractory
            an event kept only if its pixel and polarity kept none in the last `refractory_ms`,
            across windows: the count cue gone over a span as long as a consumer's clip bin,
            which the window's own slots (10 ms) cannot reach. An edge fires both polarities
            at a pixel, so this alone would pull a window's ON share towards a half (0.68 to
            0.51 on a spinning disc); events of the polarity it favoured are then dropped at
            random until the window's ON share is within 0.05 of its input's again
    jitter  each event moved to a random pixel of its block x block tile: detail below the
            block size (a face, hair) is gone, a limb's motion is not

Sizes follow the sensor: the warp's are fractions of the frame, and the jitter tile is an
eighth of the sensor's height unless it is given in pixels (the scene scale of the training
data, a person filling the frame: 6 px on its 48x48 sensor). A tile in pixels would protect
less the finer the sensor: 6 px is an eighth of a 48x48 person, a fifteenth of a 90 px one.
Where a person appears smaller than the frame, the tile in pixels is an eighth of their
apparent height (docs/privacy.md).

The filters run on the events before the net. The net's noise is independent of the person and
an attacker has our weights, so an attacker can make our output from the filtered events
itself: the best attacker on the output does no better than the best attacker on the filtered
events, whatever the net learned. experiments/reports/privacy-filters.md measures fresh
attackers on the filtered events (`experiments.controls` with stream:SPEC transforms).

The functions are pure (numba kernels on one dtype each); PrivacyFilter holds the parameters,
the current warp and the random state. Randomness comes from OS entropy; seeds are for tests.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import numba
import numpy as np
import torch
import torch.nn.functional as F

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, empty_events
from anonynoise.represent import bin_edges
from anonynoise.rng import rng_state, uniform

FILTER_STEPS = ("warp", "slots", "refractory", "jitter")
MAX_BLOCK = 1024  # pixels: a tile beyond it would be most of any sensor
# How far the refractory may move a window's ON share before events of the favoured polarity
# are dropped: a small window's share wanders by chance, and correcting that would only delete
# events (8 % of them on the synthetic people without this slack).
ON_SHARE_SLACK = 0.05
# The steps that move events; without one every kept event would leave at its own pixel.
MOVING_STEPS = ("warp", "jitter")


# ---------------------------------------------------------------------------------------------
# kernels


@numba.njit(cache=True, nogil=True)
def _first_per_slot(t, x, y, p, edges, width, height):
    """The first event of each pixel and polarity in each slot [edges[k], edges[k+1]) (events
    sorted by time; events outside every slot dropped), compacted: (t, x, y, p, count)."""
    n = t.shape[0]
    to, xo, yo, po = np.empty(n, np.int64), np.empty(n, np.int16), np.empty(n, np.int16), \
        np.empty(n, np.uint8)
    stamp = np.zeros(2 * height * width, np.int32)  # slot + 1 of the last kept event
    starts = np.searchsorted(t, edges)
    m = 0
    for k in range(edges.shape[0] - 1):
        for i in range(starts[k], starts[k + 1]):
            j = (np.int64(p[i]) * height + np.int64(y[i])) * width + np.int64(x[i])
            if stamp[j] != k + 1:
                stamp[j] = k + 1
                to[m], xo[m], yo[m], po[m] = t[i], x[i], y[i], p[i]
                m += 1
    return to, xo, yo, po, m


@numba.njit(cache=True, nogil=True)
def _refractory(t, x, y, p, last, period, width, height):
    """Events whose pixel and polarity kept none in the `period` before them (last: the time
    of each one's last kept event, updated in place), compacted: (t, x, y, p, count)."""
    n = t.shape[0]
    to, xo, yo, po = np.empty(n, np.int64), np.empty(n, np.int16), np.empty(n, np.int16), \
        np.empty(n, np.uint8)
    m = 0
    for i in range(n):
        j = (np.int64(p[i]) * height + np.int64(y[i])) * width + np.int64(x[i])
        if t[i] - last[j] >= period:
            last[j] = t[i]
            to[m], xo[m], yo[m], po[m] = t[i], x[i], y[i], p[i]
            m += 1
    return to, xo, yo, po, m


@numba.njit(cache=True, nogil=True)
def _thin_polarity(t, x, y, p, polarity, keep, state):
    """Events of `polarity` kept with probability `keep`, the others all; compacted:
    (t, x, y, p, count)."""
    n = t.shape[0]
    to, xo, yo, po = np.empty(n, np.int64), np.empty(n, np.int16), np.empty(n, np.int16), \
        np.empty(n, np.uint8)
    m = 0
    for i in range(n):
        if p[i] != polarity or uniform(state) < keep:
            to[m], xo[m], yo[m], po[m] = t[i], x[i], y[i], p[i]
            m += 1
    return to, xo, yo, po, m


@numba.njit(cache=True, nogil=True)
def _jitter(x, y, block, width, height, state):
    """Each (x, y) moved to a uniform random pixel of its block x block tile (tiles at the
    right and bottom edges are cut by the sensor)."""
    n = x.shape[0]
    xo = np.empty(n, np.int16)
    yo = np.empty(n, np.int16)
    for i in range(n):
        x0 = (np.int64(x[i]) // block) * block
        y0 = (np.int64(y[i]) // block) * block
        xo[i] = x0 + np.int64(uniform(state) * min(block, width - x0))
        yo[i] = y0 + np.int64(uniform(state) * min(block, height - y0))
    return xo, yo


@numba.njit(cache=True, nogil=True)
def _warp(t, x, y, p, map_x, map_y, state):
    """Each (x, y) to (map_x, map_y)[y, x], rounded stochastically (so a stretched region is
    filled, not striped); those landing off the sensor dropped, compacted: (t, x, y, p, count)."""
    n = t.shape[0]
    height, width = map_x.shape
    to, xo, yo, po = np.empty(n, np.int64), np.empty(n, np.int16), np.empty(n, np.int16), \
        np.empty(n, np.uint8)
    m = 0
    for i in range(n):
        fx = np.floor(map_x[y[i], x[i]] + uniform(state))
        fy = np.floor(map_y[y[i], x[i]] + uniform(state))
        if 0 <= fx < width and 0 <= fy < height:
            to[m], xo[m], yo[m], po[m] = t[i], np.int16(fx), np.int16(fy), p[i]
            m += 1
    return to, xo, yo, po, m


# ---------------------------------------------------------------------------------------------
# functions


def _batch(compacted, like: EventBatch) -> EventBatch:
    t, x, y, p, m = compacted
    return EventBatch.trusted(t[:m], x[:m], y[:m], p[:m], like.width, like.height)


def first_event_per_slot(events: EventBatch, t_start: int, t_end: int, slots: int) -> EventBatch:
    """The first event of each pixel and polarity in each of `slots` equal slots of
    [t_start, t_end) (the representation's bins: the same edges); the rest, and events outside
    the window, dropped. Time order is kept."""
    edges = bin_edges(t_start, t_end, slots)
    return _batch(_first_per_slot(events.t, events.x, events.y, events.p, edges,
                                  events.width, events.height), events)


def never_fired(width: int, height: int) -> np.ndarray:
    """A refractory state in which no pixel has fired (see refractory_events)."""
    return np.full(2 * height * width, np.iinfo(np.int64).min // 2, np.int64)


def refractory_events(events: EventBatch, period_us: int, last: np.ndarray) -> EventBatch:
    """Events whose pixel and polarity kept none in the `period_us` before them; `last` (from
    never_fired, one per sensor and stream) carries what fired across calls and is updated.
    Time order is kept."""
    if last.shape != (2 * events.height * events.width,) or last.dtype != np.int64:
        raise AnonyNoiseError(f"a refractory state of {last.shape[0]} pixels does not fit a "
                              f"{events.width}x{events.height} sensor")
    return _batch(_refractory(events.t, events.x, events.y, events.p, last, int(period_us),
                              events.width, events.height), events)


def keep_on_share(events: EventBatch, on_share: float, state: np.ndarray) -> EventBatch:
    """Events of the polarity in excess dropped at random so that the ON share is `on_share`
    (in expectation); never an event added. Time order is kept."""
    n = len(events)
    on = int(np.count_nonzero(events.p))
    if n == 0 or on in (0, n) or not 0.0 < on_share < 1.0:
        return events
    if on / n > on_share:  # too many ON: keep ON events at (on_share / (1 - on_share)) * off / on
        polarity, keep = 1, on_share / (1.0 - on_share) * (n - on) / on
    else:
        polarity, keep = 0, (1.0 - on_share) / on_share * on / (n - on)
    if keep >= 1.0:
        return events
    return _batch(_thin_polarity(events.t, events.x, events.y, events.p, np.uint8(polarity),
                                 float(keep), state), events)


def block_jitter(events: EventBatch, block: int, state: np.ndarray) -> EventBatch:
    """Each event moved to a random pixel of its block x block tile; time order is kept."""
    x, y = _jitter(events.x, events.y, int(block), events.width, events.height, state)
    return EventBatch.trusted(events.t, x, y, events.p, events.width, events.height)


def smooth_warp_map(width: int, height: int, rng: np.random.Generator, scale: float = 0.25,
                    displacement: float = 0.15, grid: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A random smooth warp: where each pixel (x, y) goes, as two (H, W) float32 maps.

    Each axis is scaled about the centre by a factor in [1 / (1 + scale), 1 + scale]
    (log-uniform), then displaced by a field drawn on a grid x grid lattice (normal, standard
    deviation `displacement` of the half-width or half-height) and spread by bicubic
    interpolation, as experiments.controls' warp of whole clips."""
    log_range = np.log1p(scale)
    sx, sy = np.exp(rng.uniform(-log_range, log_range, 2))
    lattice = torch.from_numpy(rng.normal(0.0, displacement, (1, 2, grid, grid))).float()
    field = F.interpolate(lattice, size=(height, width), mode="bicubic",
                          align_corners=True)[0].numpy()
    cx, cy = (width - 1) / 2, (height - 1) / 2
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    map_x = cx + (xs - cx) * sx + field[0] * (width / 2)
    map_y = cy + (ys - cy) * sy + field[1] * (height / 2)
    return (np.ascontiguousarray(np.broadcast_to(map_x, (height, width)), dtype=np.float32),
            np.ascontiguousarray(np.broadcast_to(map_y, (height, width)), dtype=np.float32))


def warp_events(events: EventBatch, map_x: np.ndarray, map_y: np.ndarray,
                state: np.ndarray) -> EventBatch:
    """Events moved by a warp map (smooth_warp_map); those it moves off the sensor dropped."""
    if map_x.shape != (events.height, events.width) or map_y.shape != map_x.shape:
        raise AnonyNoiseError(f"a warp map of {map_x.shape[1]}x{map_x.shape[0]} does not fit "
                              f"a {events.width}x{events.height} sensor")
    return _batch(_warp(events.t, events.x, events.y, events.p, map_x, map_y, state), events)


# ---------------------------------------------------------------------------------------------
# the thin class


@dataclass(frozen=True)
class FilterConfig:
    """Which filters run, left to right (`spec`: steps joined by '+'), and their parameters."""

    spec: str = "warp+slots+jitter"
    block: int | None = None  # jitter's tile in pixels; None: the sensor's height / tiles
    tiles: float = 8.0  # with block None, jitter's tiles across the sensor's height
    warp_scale: float = 0.25
    warp_displacement: float = 0.15
    warp_grid: int = 3
    warp_period_s: float = 60.0  # a new warp every period, on event time
    refractory_ms: float = 600.0  # one clip bin of a consumer's 3 s clip in 5 bins

    @property
    def steps(self) -> tuple[str, ...]:
        return () if self.spec in ("", "none") else tuple(self.spec.split("+"))

    def block_for(self, height: int) -> int:
        """Jitter's tile in pixels on a sensor `height` pixels high."""
        if self.block is not None:
            return int(self.block)
        return max(2, round(int(height) / self.tiles))

    @property
    def moves_events(self) -> bool:
        """Whether a step moves every event off its own pixel (MOVING_STEPS)."""
        return bool(set(MOVING_STEPS) & set(self.steps))

    def check(self) -> "FilterConfig":
        """Raise AnonyNoiseError (one line) for an unknown step or a parameter out of range."""
        for step in self.steps:
            if step not in FILTER_STEPS:
                raise AnonyNoiseError(f"unknown privacy filter {step!r} in {self.spec!r} "
                                      f"(filters: {', '.join(FILTER_STEPS)}, joined by '+'; "
                                      "or none)")
        if len(set(self.steps)) != len(self.steps):
            raise AnonyNoiseError(f"privacy filters {self.spec!r}: each filter at most once")
        if self.block is not None and not 2 <= self.block <= MAX_BLOCK:
            raise AnonyNoiseError(f"the jitter block must be 2 to {MAX_BLOCK} pixels, got "
                                  f"{self.block}")
        if not 1 <= self.tiles <= 64:
            raise AnonyNoiseError(f"the jitter tiles across the height must be 1 to 64, got "
                                  f"{self.tiles}")
        if not (0 <= self.warp_scale <= 1 and 0 <= self.warp_displacement <= 0.5):
            raise AnonyNoiseError("the warp scale must be in [0, 1] and its displacement in "
                                  f"[0, 0.5], got {self.warp_scale} and {self.warp_displacement}")
        if not 2 <= self.warp_grid <= 16:
            raise AnonyNoiseError(f"the warp grid must be 2 to 16, got {self.warp_grid}")
        if not self.warp_period_s > 0:
            raise AnonyNoiseError(f"the warp period must be positive, got {self.warp_period_s}")
        if not 0.001 <= self.refractory_ms <= 60_000:
            raise AnonyNoiseError("the refractory period must be 0.001 to 60000 ms, got "
                                  f"{self.refractory_ms}")
        return self

    def describe(self) -> dict:
        """Plain types, for stream headers and reports (no random state, no seed)."""
        return {"spec": self.spec} | {k: v for k, v in asdict(self).items() if k != "spec"
                                      and self._used(k)}

    def _used(self, key: str) -> bool:
        if key in ("block", "tiles"):
            return "jitter" in self.steps and (key == "block") == (self.block is not None)
        return ("warp" in self.steps) if key.startswith("warp") else \
            ("refractory" in self.steps) if key.startswith("refractory") else True


@dataclass(frozen=True)
class ModelFilters:
    """The filters an anonymizer checkpoint was trained behind (its training metadata records
    them; none where it records none), with the jitter block, the warp period and the
    refractory period overridden where given: the commands' default filters ("model").

    A jitter block recorded in pixels on the training sensor becomes the same share of any
    sensor's height (6 px on 48: an eighth), so the model's filters follow the sensor."""

    block: int | None = None
    warp_period_s: float | None = None
    refractory_ms: float | None = None

    def apply(self, config: FilterConfig) -> FilterConfig:
        """`config` with the overrides given here."""
        given = {k: v for k, v in (("block", self.block), ("warp_period_s", self.warp_period_s),
                                   ("refractory_ms", self.refractory_ms)) if v is not None}
        return replace(config, **given).check()

    def resolve(self, training: dict | None) -> FilterConfig | None:
        """The FilterConfig to run (None: no filters) for a checkpoint's training metadata."""
        recorded = dict((training or {}).get("filters") or {})
        fields = {k: v for k, v in recorded.items() if k in FilterConfig.__dataclass_fields__}
        fields.setdefault("spec", "none")
        trained_height = training_height(training)
        if fields.get("block") is not None and trained_height is not None:
            fields["tiles"] = trained_height / fields.pop("block")
        if self.block is not None:
            fields["block"] = self.block
        if self.warp_period_s is not None:
            fields["warp_period_s"] = self.warp_period_s
        if self.refractory_ms is not None:
            fields["refractory_ms"] = self.refractory_ms
        config = FilterConfig(**fields).check()
        return config if config.steps else None


def training_height(training: dict | None) -> int | None:
    """The height of the sensor a checkpoint was trained on, where its training metadata
    says (the benchmark's size); None where it does not."""
    training = training or {}
    for key in ("recipe", "config"):
        data = training.get(key)
        data = data.get("data") if isinstance(data, dict) else None
        size = data.get("size") if isinstance(data, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size
    return None


# The default anonymizer (anonynoise.load()): the filters the shipped net was trained behind
# (6 px tiles on its 48x48 sensor: an eighth of the height), here without the net, which adds
# nothing measurable to them (docs/privacy.md, issue 38).
SHIPPED_FILTERS = FilterConfig("warp+refractory+jitter")


class PrivacyFilter:
    """Apply a FilterConfig's filters to successive windows of one sensor.

    The warp is drawn when the first window comes and again whenever a window starts a
    `warp_period_s` or more after the current warp's first window. seed: tests only (the
    default draws everything from OS entropy)."""

    def __init__(self, config: FilterConfig, *, seed: int | None = None):
        self.config = config.check()
        self._seed = seed
        self._draws = 0
        self._warp: tuple[np.ndarray, np.ndarray] | None = None
        self._warp_size: tuple[int, int] | None = None
        self._warp_from: int | None = None
        self._warp_until: int | None = None
        self.warps = 0  # warps drawn so far
        self._last: np.ndarray | None = None  # refractory: each pixel's last kept event
        self._last_size: tuple[int, int] | None = None
        self._until = 0  # the end of the last window seen

    def _state(self) -> np.ndarray:
        self._draws += 1
        return rng_state(None if self._seed is None else self._seed * 1_000_003 + self._draws)

    def _current_warp(self, width: int, height: int, t_start: int):
        if (self._warp is None or self._warp_size != (width, height)
                or not self._warp_from <= t_start < self._warp_until):  # time went back: anew
            seed = int.from_bytes(os.urandom(8), "little") if self._seed is None else \
                self._seed * 1_000_003 + 7919 * (self.warps + 1)
            c = self.config
            self._warp = smooth_warp_map(width, height, np.random.default_rng(seed),
                                         c.warp_scale, c.warp_displacement, c.warp_grid)
            self._warp_size = (width, height)
            self._warp_from = int(t_start)
            self._warp_until = int(t_start) + max(1, round(c.warp_period_s * 1e6))
            self.warps += 1
        return self._warp

    def _refractory_state(self, width: int, height: int, t_start: int) -> np.ndarray:
        if (self._last is None or self._last_size != (width, height)
                or t_start < self._until):  # another sensor, or time went back: anew
            self._last = never_fired(width, height)
            self._last_size = (width, height)
        return self._last

    def __call__(self, events: EventBatch, t_start: int, t_end: int, bins: int) -> EventBatch:
        """The filtered events of the window [t_start, t_end) of `bins` time bins."""
        if "refractory" in self.config.steps:
            last = self._refractory_state(events.width, events.height, t_start)
            self._until = int(t_end)
        for step in self.config.steps:
            if step == "warp":
                map_x, map_y = self._current_warp(events.width, events.height, t_start)
                events = warp_events(events, map_x, map_y, self._state())
            elif step == "slots":
                events = first_event_per_slot(events, t_start, t_end, bins)
            elif step == "refractory":
                on_share = float(np.count_nonzero(events.p)) / max(len(events), 1)
                events = refractory_events(events, round(self.config.refractory_ms * 1000), last)
                kept = float(np.count_nonzero(events.p)) / max(len(events), 1)
                target = min(max(kept, on_share - ON_SHARE_SLACK), on_share + ON_SHARE_SLACK)
                if target != kept:
                    events = keep_on_share(events, target, self._state())
            else:
                events = block_jitter(events, self.config.block_for(events.height),
                                      self._state())
        return events


def warm_up() -> None:
    """Compile (or load from the cache) every kernel here, before the live path needs it."""
    events = empty_events(4, 4)
    PrivacyFilter(FilterConfig("warp+slots+refractory+jitter", block=2), seed=0)(events, 0, 10, 5)
