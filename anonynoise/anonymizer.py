"""The anonymizer runtime: a checkpoint in; a window of events -> anonymized events out.

events -> privacy filters (filters.py; none unless asked for) -> count tensor (represent.py)
-> anonymizer net under inference mode -> finiteness check -> events sampled back
(represent.py).

The tensors live on the privacy grid (grid_cell): behind the jitter filter, whose tiles follow
the sensor, the net sees cells that make each tile as many cells as its training tile was
pixels (a net trained behind 6 px tiles on 48x48 runs on 15 px cells of a 1280x720 sensor,
86x48 of them), counts per cell scaled to counts per pixel; without a net the cell is the
tile itself. Events are sampled back on a uniform pixel of their cell, which the jitter had
randomised already; so a window costs its events and the grid, not the sensor's pixels. A net
trained without jitter runs at full resolution (cell 1).

It fails closed: a window whose anonymization fails for any reason (non-finite output, out of
memory, an exception in the net or the filters) is refused with AnonymizationRefused and
counted; nothing of it is returned. The noise comes from OS entropy: the torch generators (one
per thread that draws noise) are reseeded from os.urandom for every window (a default
torch.Generator starts from a public constant), and the event sampler draws its own seed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from anonynoise import represent
from anonynoise.checkpoint import Checkpoint, CheckpointError, Representation, load_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from anonynoise.filters import (MOVING_STEPS, SHIPPED_FILTERS, FilterConfig, ModelFilters,
                                PrivacyFilter)
from anonynoise.filters import warm_up as warm_up_filters
from anonynoise.fused import FUSED_FORMS, anonymized_output
from anonynoise.identity import NovelShare
from anonynoise.identity import warm_up as warm_up_identity
from anonynoise.memory import check_window_memory
from anonynoise.models import ANONYMIZER_KINDS
from anonynoise.models.noise import noise_generators

log = logging.getLogger(__name__)

# Behind no filter that moves events, a window whose output has less than this share of events
# its input does not account for (cell by cell: anonynoise/identity.py) is refused, whatever
# allow_weak says: an identity net, or one that only deletes events, gives 0. The same bound
# as the calibration's.
MIN_NOVEL_SHARE = 0.05
NOVEL_MIN_EVENTS = 20  # fewer output events than this say too little to judge

# Mean |max(anonymized, 0) - input| (what the sampler sees) relative to the mean input on the
# calibration window, below which a net counts as near-identity: its output would be the raw
# events again (fail open), unless a filter in front moves every event (see below).
MIN_NOISE_STRENGTH = 0.05


class AnonymizationRefused(AnonyNoiseError):
    """A window that could not be anonymized; it must be dropped, never sent raw."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' is CUDA when there is a GPU, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as e:
        raise AnonyNoiseError(f"unknown device {device!r}: {e}", parameter="device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AnonyNoiseError(f"device {str(device)!r}: no CUDA GPU is available here",
                              parameter="device")
    return device


@dataclass
class AnonymizedWindow:
    """One anonymized window: the events to publish and the tensor they were sampled from."""

    events: EventBatch
    # (bins, 2, GH, GW) float32 on the privacy grid (Anonymizer.grid_cell; the sensor's
    # pixels at cell 1), the net's output in counts per cell; None: no events in
    tensor: np.ndarray | None
    t_start: int
    t_end: int


DEFAULT_MAX_EVENT_RATIO = 2.9  # events out per event in, per window, at most (in expectation)


def cap_event_rate(anonymized: torch.Tensor, clean: torch.Tensor,
                   ratio: float | None) -> torch.Tensor:
    """Scale each sample (dim 0) down so that its event mass (the positive part) is at most
    `ratio` times the clean input's; samples within the cap are unchanged. An empty input
    window gives no events. The factor carries no gradient (it is a policy, not a layer).

    Unbounded noise would multiply the event rate until no link carries the stream; sparse
    scenes (a sky, a still room) are where a net trained on people adds the most."""
    if ratio is None:
        return anonymized
    dims = tuple(range(1, anonymized.dim()))
    out_mass = anonymized.detach().clamp(min=0).sum(dims, keepdim=True)
    in_mass = clean.detach().clamp(min=0).sum(dims, keepdim=True)
    factor = torch.where(out_mass > ratio * in_mass,
                         ratio * in_mass / out_mass.clamp(min=1e-12),
                         torch.ones_like(out_mass))
    return anonymized * factor


def _check_filters(ckpt: Checkpoint, filters: FilterConfig | None,
                   allow_weak: bool) -> str | None:
    """Refuse a net trained behind privacy filters (its training config's) that is run
    without them or behind others: its privacy was measured with those filters only.
    With allow_weak, the weakening it accepted (None: none)."""
    trained = ((ckpt.training or {}).get("filters") or {}).get("spec", "none")
    used = filters.spec if filters is not None else "none"
    if trained != "none" and trained != used:
        if allow_weak:
            return f"trained behind the filters {trained}, run behind {used}"
        raise CheckpointError(
            f"{ckpt.source}: refused: it was trained behind the privacy filters {trained!r} "
            f"and would run behind {used!r}; run it behind its own filters (the default) or "
            f"{trained!r}, or with allow_weak to run it anyway", parameter="filters")
    return None


def _recorded_filters(ckpt: Checkpoint, request: ModelFilters) -> FilterConfig | None:
    try:
        return request.resolve(ckpt.training)
    except (AnonyNoiseError, TypeError, ValueError) as e:  # a checkpoint written elsewhere
        raise CheckpointError(f"{ckpt.source}: its recorded privacy filters are unusable "
                              f"({e}); name the filters to run", parameter="filters") from None


def _trained_block(ckpt: Checkpoint) -> int | None:
    """The jitter tile, in pixels of its training sensor, a net was trained behind; None
    without one."""
    filters = (ckpt.training or {}).get("filters") or {}
    block = filters.get("block")
    if "jitter" not in str(filters.get("spec", "")).split("+") or not isinstance(block, int) \
            or isinstance(block, bool) or block < 1:
        return None
    return block


DEFAULT_WINDOW_US = 50_000  # the shipped model's window, and the filters' alone


def choose_window(representation: Representation | None, window_us: int | None) -> int | None:
    """The window in µs: the model's, unless window_us; None for a model trained on whole
    samples (it anonymizes the windows it is given, but cannot cut a stream). No model
    (representation None): window_us, else DEFAULT_WINDOW_US."""
    if window_us is not None:
        if not int(window_us) > 0:
            raise AnonyNoiseError(f"the window must be positive, got {window_us} µs",
                                  parameter="window")
        if representation is not None and representation.window_us is None:
            log.warning("the model was trained on whole samples: on %g ms windows its count "
                        "statistics differ from training", window_us / 1000)
        return int(window_us)
    if representation is None:
        return DEFAULT_WINDOW_US
    return representation.window_us


class Anonymizer:
    """Anonymize windows of events: privacy filters, then the anonymizer net (or, with
    checkpoint None, the filters alone: no net, the events sampled back from the filtered
    counts, so no input event leaves as it came).

    window_us: the window length (default: the checkpoint's; without a net
    DEFAULT_WINDOW_US). bins: the time bins of a window without a net (a net has its own).
    threads: CPU threads for torch (None leaves torch's setting). channels_last: None picks
    it on the CPU, where it is faster for these nets. seed: for tests only; the default draws
    every window's noise from OS entropy. allow_weak: accept a near-identity net, or a net
    trained behind privacy filters without them.
    max_event_ratio: each window sends at most this many events per input event (None: no
    cap; see cap_event_rate). filters: privacy filters run on each window's events before the
    net (see filters.py; ModelFilters, the default: those the checkpoint was trained behind;
    None: none); their failure refuses the window like the net's.

    Call it on a recording (`anonymizer(events)`) or on a stream of batches
    (`anonymizer.stream(batches)`): anonynoise.loop cuts the windows.
    """

    def __init__(self, checkpoint: str | os.PathLike | Checkpoint | None, device: str = "auto",
                 *, window_us: int | None = None, bins: int = 5, threads: int | None = None,
                 channels_last: bool | None = None, seed: int | None = None,
                 allow_weak: bool = False, max_events: int = represent.DEFAULT_MAX_EVENTS,
                 max_event_ratio: float | None = DEFAULT_MAX_EVENT_RATIO,
                 filters: FilterConfig | ModelFilters | None = ModelFilters()):
        if threads is not None:
            torch.set_num_threads(int(threads))
        self._seed = seed
        self._lock = threading.Lock()  # one generator set and one counter set per instance
        self._filter_lock = threading.Lock()  # the filters' warp and random state
        self.max_events = int(max_events)
        if max_event_ratio is not None and not max_event_ratio > 0:
            raise AnonyNoiseError(f"max_event_ratio must be positive, got {max_event_ratio}",
                                  parameter="max_event_ratio")
        self.windows = 0
        self.refused = 0
        self.weakened: list[str] = []  # what allow_weak let through: named in every header
        self.sha256: str | None = None  # of the checkpoint file, for stream headers
        if checkpoint is None:
            self._init_filters_only(filters, window_us, bins)
        else:
            self._init_net(checkpoint, device, channels_last, allow_weak, max_event_ratio,
                           filters, window_us)
        for reason in self.weakened:
            log.warning("weakened anonymization (allow_weak): %s", reason)

    def _init_filters_only(self, filters, window_us: int | None, bins: int) -> None:
        if isinstance(filters, ModelFilters):  # no model: the shipped net's, without it
            filters = filters.apply(SHIPPED_FILTERS)
        if filters is None or not filters.check().moves_events:
            raise AnonyNoiseError("the privacy filters alone (no model) need filters with "
                                  f"{' or '.join(MOVING_STEPS)}: otherwise every event would "
                                  "leave at its own pixel", parameter="filters")
        self.checkpoint = None
        self._trained_block = None
        self.window_us = choose_window(None, window_us)
        self.representation = Representation(bins=int(bins), window_us=self.window_us)
        self.device = torch.device("cpu")
        self.channels_last = False
        self.net = None
        self.max_event_ratio = None  # the filters never add events
        self.filters = filters
        self._filter = PrivacyFilter(filters, seed=self._seed)
        self.noise_strength = None
        self._novel = None
        self._guard_raw = False  # its filters move every event (checked above)
        represent.warm_up()
        warm_up_filters()

    def _init_net(self, checkpoint, device, channels_last, allow_weak, max_event_ratio,
                  filters, window_us) -> None:
        if isinstance(checkpoint, Checkpoint):
            ckpt = checkpoint
        else:
            path = Path(checkpoint)
            ckpt = load_checkpoint(path, ANONYMIZER_KINDS)
            self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        if ckpt.kind not in ANONYMIZER_KINDS:
            raise CheckpointError(f"{ckpt.source}: is a {ckpt.kind} checkpoint, expected an "
                                  "anonymizer")
        if ckpt.representation is None:
            raise CheckpointError(f"{ckpt.source}: the checkpoint does not say which event "
                                  "representation it was trained on")
        self.checkpoint = ckpt
        self.representation: Representation = ckpt.representation
        if self.representation.channels != ckpt.arch.get("channels"):
            raise CheckpointError(f"{ckpt.source}: the net takes {ckpt.arch.get('channels')} "
                                  f"channels but the representation has "
                                  f"{self.representation.channels}")
        self.window_us = choose_window(self.representation, window_us)
        self.device = resolve_device(device)
        self.channels_last = (self.device.type == "cpu") if channels_last is None else channels_last
        self.net = ckpt.build(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        # one generator per thread that draws a part of a window's noise (fill_normal)
        self._generators = noise_generators(min(torch.get_num_threads(), 4), self.device)
        self.max_event_ratio = max_event_ratio
        if isinstance(filters, ModelFilters):
            filters = _recorded_filters(ckpt, filters)
        self.filters = filters.check() if filters is not None and filters.steps else None
        self._filter = None if self.filters is None else PrivacyFilter(self.filters,
                                                                       seed=self._seed)
        self._trained_block = _trained_block(ckpt)
        weakened = _check_filters(ckpt, self.filters, allow_weak)
        self.weakened += [weakened] if weakened else []
        represent.warm_up()
        if self._filter is not None:
            warm_up_filters()
        self.noise_strength = self._calibrate()
        # behind a filter that moves events a weak net is no weaker than the filters alone,
        # which run without a net as well: its output is not the raw events
        moved = self.filters is not None and self.filters.moves_events
        if self.noise_strength < MIN_NOISE_STRENGTH and not moved:
            if not allow_weak:
                raise CheckpointError(
                    f"{ckpt.source}: refused: its noise on a calibration window is "
                    f"{self.noise_strength:.1%} of the signal (below {MIN_NOISE_STRENGTH:.0%}), "
                    "so its output would be close to the raw events; allow_weak uses it "
                    "anyway", parameter="allow_weak")
            self.weakened.append(f"near-identity net (noise {self.noise_strength:.1%} of the "
                                 "signal)")
        # with no filter moving every event, only the net stands between the raw events and
        # the output: every window is checked for repeating its input (_refuse_raw)
        self._novel: NovelShare | None = None
        self._guard_raw = not moved
        if self._guard_raw:
            warm_up_identity()

    @property
    def identity(self) -> dict:
        """What the stream headers say about this anonymizer (docs/protocol.md)."""
        filters = self.filters.describe() if self.filters is not None else {"spec": "none"}
        if self.net is None:
            return {"kind": "filters_only", "name": "none", "sha256": None,
                    "representation": self.representation.to_dict(), "filters": filters,
                    "weakened": []}
        return {"kind": self.checkpoint.kind, "name": Path(self.checkpoint.source).stem,
                "sha256": self.sha256, "representation": self.representation.to_dict(),
                "filters": filters, "weakened": list(self.weakened)}

    @property
    def bins(self) -> int:
        return self.representation.bins

    def grid_cell(self, width: int, height: int) -> int:
        """The privacy grid's cell in pixels for a width x height sensor (see the module's
        docstring): 1 (full resolution) without jitter, for a net trained without it or for
        one sensor size only; without a net, the jitter tile."""
        if self.filters is None or "jitter" not in self.filters.steps:
            return 1
        block = self.filters.block_for(height)
        if self.net is None:
            return block
        if self._trained_block is None or self.representation.width is not None:
            return 1
        return max(1, round(block / self._trained_block))

    def grid(self, width: int, height: int) -> dict:
        """What the status line and stream logs say of the grid on this sensor."""
        cell = self.grid_cell(width, height)
        grid_h, grid_w = represent.grid_shape(width, height, cell)
        block = None if self.filters is None or "jitter" not in self.filters.steps else \
            self.filters.block_for(height)
        return {"cell": cell, "grid": [grid_w, grid_h], "jitter_block": block}

    def check_source(self, width: int, height: int) -> None:
        """Refuse a source this anonymizer cannot take, with the reason: a sensor or window
        its checkpoint was not trained for, or windows too large for this machine's memory.
        Without a net any sensor and window fit that memory holds (the filtered counts are
        one tensor, the sampler's output another)."""
        grid_h, grid_w = represent.grid_shape(width, height, self.grid_cell(width, height))
        if self.net is None:
            check_window_memory(grid_w, grid_h, self.bins, copies=3)
            return
        trained_on_windows = self.representation.window_us is not None
        reason = self.representation.mismatch(
            width, height, window_us=self.window_us if trained_on_windows else None)
        if reason:
            raise CheckpointError(f"{self.checkpoint.source}: does not fit a {width}x{height} "
                                  f"source: {reason}")
        check_window_memory(grid_w, grid_h, self.bins)

    def warm_up(self, width: int, height: int) -> None:
        """Run one empty window of this size, so the first real one is not slowed by setup
        (oneDNN picks its kernels per input shape). Not counted in the statistics."""
        windows, refused = self.windows, self.refused
        grid = represent.grid_shape(width, height, self.grid_cell(width, height))
        try:
            self.anonymize_tensor(np.zeros((self.bins, 2, *grid), np.float32))
        finally:
            self.windows, self.refused = windows, refused

    def restart(self, seed: int | None = None) -> None:
        """Forget the filters' state, as a new stream does: the next window draws a new warp.
        seed: tests and studies only (default: the anonymizer's own, OS entropy unless it was
        given one)."""
        with self._filter_lock:
            if self.filters is not None:
                self._filter = PrivacyFilter(self.filters,
                                             seed=self._seed if seed is None else seed)

    def __call__(self, events, sensor_size=None, *, absolute_time: bool = True):
        """Anonymize a whole recording, as a new stream (the filters draw a new warp).

        events: an EventBatch, or a structured array with fields x, y, t (µs), p (tonic's
        names; dv's .numpy() timestamp and polarity; faery's on), sorted by time, with
        sensor_size (W, H) or tonic's (W, H, 2). Returns the same kind: an EventBatch, or a
        structured array with tonic's fields x, y, t, p, sorted by time; timestamps as the
        input's unless absolute_time is False (then from the first window's start). Windows
        whose anonymization fails are dropped and counted in `refused`, never returned raw."""
        from anonynoise.loop import as_batch, recording_output

        batch = as_batch(events, sensor_size)
        self.restart()
        return recording_output(self.stream([batch], absolute_time=absolute_time), batch,
                                structured=not isinstance(events, EventBatch))

    def stream(self, batches, sensor_size=None, *, absolute_time: bool = True):
        """Anonymize a stream of batches (a file's, a camera's), window by window: yields each
        window's anonymized events (empty where a window had none), in the kind the batches
        come in (EventBatch, or tonic's structured array). Batches: EventBatch or structured
        arrays as __call__ takes them, in time order. A refused window is skipped and counted
        in `refused`."""
        from anonynoise.loop import WindowLoop, stream_output

        return stream_output(WindowLoop(self, absolute_time=absolute_time), batches,
                             sensor_size)

    def _reseed(self) -> None:
        for k, generator in enumerate(self._generators):
            if self._seed is None:
                generator.manual_seed(int.from_bytes(os.urandom(8), "little"))
            else:
                generator.manual_seed((self._seed + self.windows + (k << 40)) % 2 ** 63)

    def anonymize_tensor(self, counts: np.ndarray) -> np.ndarray:
        """The net's output for one (bins, 2, H, W) float32 count tensor (without a net, the
        counts as they are); raises AnonymizationRefused (and counts it) where it fails or is
        not finite."""
        if self.net is None:
            with self._lock:
                self.windows += 1
            return counts
        with self._lock:
            try:
                self._reseed()
                x = torch.from_numpy(np.ascontiguousarray(counts, dtype=np.float32))
                x = x.reshape(1, -1, *counts.shape[-2:]).to(self.device)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    if self.device.type == "cpu" and self.net.form in FUSED_FORMS:
                        # the output formed in one pass
                        noise, maps = self.net.noise_and_maps(x, generator=self._generators)
                        out, non_finite = anonymized_output(x, maps, noise, self.net.form,
                                                            self.max_event_ratio)
                    else:
                        y = cap_event_rate(self.net(x, generator=self._generators), x,
                                           self.max_event_ratio)
                        non_finite = not bool(torch.isfinite(y).all())
                        out = y.to("cpu").contiguous().numpy()
                if non_finite:
                    raise AnonymizationRefused("the anonymizer returned non-finite values")
                out = out.reshape(counts.shape)
            except AnonymizationRefused:
                self.refused += 1
                raise
            except Exception as e:  # out of memory, a broken net: fail closed all the same
                self.refused += 1
                reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
                raise AnonymizationRefused(f"anonymization failed: {type(e).__name__}: "
                                           f"{reason}") from None
            self.windows += 1
            return out

    def anonymize(self, events: EventBatch, t_start: int, t_end: int) -> AnonymizedWindow:
        """Anonymize the events of [t_start, t_end); refused windows raise
        AnonymizationRefused and are counted in `refused`."""
        raw = events
        if self._filter is not None:
            try:
                with self._filter_lock:
                    events = self._filter(events, t_start, t_end, self.bins)
            except Exception as e:  # fail closed: never the unfiltered events instead
                with self._lock:
                    self.refused += 1
                raise AnonymizationRefused(f"privacy filters failed: {type(e).__name__}: "
                                           f"{str(e).strip()[:200]}") from None
        if len(events) == 0:
            # nothing in, nothing out: the event-rate cap allows no events in an empty
            # window (uncapped, the net's output there is noise alone, nothing of the scene).
            # Skipping the net makes a stretch of empty windows cost next to nothing.
            return AnonymizedWindow(events, None, int(t_start), int(t_end))
        cell = self.grid_cell(events.width, events.height)
        counts = represent.events_to_counts(events, t_start, t_end, self.bins, cell=cell)
        # the net sees counts per pixel, as in training, on cells of cell x cell pixels
        per_pixel = np.float32(cell * cell) if self.net is not None and cell > 1 else None
        if per_pixel is not None:
            counts /= per_pixel
        tensor = self.anonymize_tensor(counts)
        if per_pixel is not None:
            tensor *= per_pixel
        try:
            out = represent.counts_to_events(
                tensor, t_start, t_end, max_events=self.max_events,
                seed=None if self._seed is None else self._seed + self.windows,
                cell=cell, sensor_size=events.sensor_size)
        except AnonyNoiseError as e:
            with self._lock:
                self.refused += 1
            raise AnonymizationRefused(str(e)) from None
        if self._guard_raw:
            self._refuse_raw(raw, out, t_start, t_end)
        return AnonymizedWindow(out, tensor, int(t_start), int(t_end))

    def _refuse_raw(self, raw: EventBatch, out: EventBatch, t_start: int, t_end: int) -> None:
        """Refuse (fail closed) a window whose output its raw input accounts for, cell by cell
        (the input again, or a part of it): whatever the net and the flags, such a window is
        raw events."""
        if len(out) < NOVEL_MIN_EVENTS:
            return
        with self._lock:
            if self._novel is None or \
                    (self._novel.width, self._novel.height) != raw.sensor_size:
                self._novel = NovelShare(raw.width, raw.height)
            novel = self._novel(raw, out, t_start, t_end, self.bins)
            if novel < MIN_NOVEL_SHARE:
                self.refused += 1
                raise AnonymizationRefused(
                    f"the output repeats the input: only {novel:.1%} of its events are not raw "
                    f"events (below {MIN_NOVEL_SHARE:.0%}; no filter moves them)")

    def _calibrate(self) -> float:
        """Relative noise strength on a synthetic window (and a warm-up of the whole path)."""
        from anonynoise.examples import clustered_stream

        width = self.representation.width or 128
        height = self.representation.height or 128
        window = self.representation.window_us or 20_000
        events = clustered_stream(width, height, duration_s=window / 1e6, rate=2e6, seed=0)
        counts = represent.events_to_counts(events, 0, window, self.bins)
        try:
            tensor = self.anonymize_tensor(counts)
        except AnonymizationRefused as e:
            raise CheckpointError(f"{self.checkpoint.source}: fails on a calibration window: "
                                  f"{e}") from None
        finally:
            self.windows, self.refused = 0, 0
        change = np.abs(np.maximum(tensor, 0.0) - counts).mean()
        return float(change / max(counts.mean(), 1e-12))
