"""The window loop: event batches -> windows -> anonymized windows, with what it counted.

Every path that anonymizes runs this one loop: the Python API (`Anonymizer.__call__` and
`.stream`), file anonymization (anonynoise.offline), the service (stream.pipeline, which runs
its two halves in two threads: cut() in the source thread, anonymize() in its own) and the
studies. So windows are cut, refusals dropped and counted, and timestamps moved the same way
everywhere.

    as_batch        an EventBatch, a structured array or a dv EventStore -> an EventBatch
    WindowLoop      cut() batches into windows, anonymize() each, run() both; counts
    stream_output   the API's generator: batches of any kind in, each window's events out
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import replace
from typing import Iterable, Iterator

import numpy as np

from anonynoise.anonymizer import AnonymizationRefused, AnonymizedWindow, Anonymizer
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import (EventBatch, concatenate, empty_events, from_dv, from_structured,
                               to_structured)
from anonynoise.windower import Window, Windower

log = logging.getLogger(__name__)


def as_batch(events, sensor_size=None, *, t_prev: int | None = None) -> EventBatch:
    """Events of any kind the API takes, as a validated EventBatch: an EventBatch as it is, a
    structured array (tonic's x, y, t, p; dv's .numpy() timestamp, polarity; faery's t, on)
    or a dv-processing EventStore with sensor_size ((W, H) or tonic's (W, H, 2)). t_prev:
    the previous batch's last timestamp, which these events must not precede."""
    if isinstance(events, EventBatch):
        if sensor_size is not None and tuple(sensor_size[:2]) != events.sensor_size:
            raise AnonyNoiseError(f"the events are from a {events.width}x{events.height} "
                                  f"sensor, not {sensor_size[0]}x{sensor_size[1]}",
                                  parameter="sensor_size")
        if t_prev is not None and len(events) and int(events.t[0]) < t_prev:
            raise AnonyNoiseError(f"invalid events: a batch starts at t={int(events.t[0])} µs, "
                                  f"before the previous batch's last event ({t_prev} µs)")
        return events
    if sensor_size is None:
        raise AnonyNoiseError("the sensor size is unknown: pass sensor_size=(width, height) "
                              "with a structured array or an EventStore",
                              parameter="sensor_size")
    if type(events).__name__ == "EventStore":  # dv-processing's, without importing dv here
        return from_dv(events, sensor_size, t_prev=t_prev)
    if isinstance(events, np.ndarray):
        return from_structured(events, sensor_size, t_prev=t_prev)
    raise AnonyNoiseError(f"expected events as an EventBatch, a structured numpy array with "
                          f"fields x, y, t, p or a dv EventStore, got {type(events).__name__}")


class WindowLoop:
    """Cut batches into windows and anonymize them, counting what happens on the way.

    sensor_size: (W, H), or None to take it from the first batch. window_us: the
    anonymizer's unless given. max_events: a window holding more is thinned to this many and
    the cut events counted (the service: a burst must not stall it). absolute_time: keep the
    source's timestamps; otherwise they count from the first window's start.

    cut() and anonymize() may run in two threads (one each), as the service runs them."""

    def __init__(self, anonymizer: Anonymizer, sensor_size=None, *,
                 window_us: int | None = None, max_events: int | None = None,
                 absolute_time: bool = True):
        self.anonymizer = anonymizer
        window_us = window_us or anonymizer.window_us
        if window_us is None:
            raise AnonyNoiseError("the model was trained on whole samples, not windows: give a "
                                  "window length to use it anyway", parameter="window")
        self.window_us = int(window_us)
        self.max_events = max_events
        self.absolute_time = absolute_time
        self.windower: Windower | None = None
        self.origin: int | None = None  # the first window's start
        self.events_in = 0
        self.windows = 0  # cut
        self.refused = 0  # of those, dropped because anonymization failed
        self.events_out = 0
        self.last_refusal = ""
        if sensor_size is not None:
            self._start(*sensor_size[:2])

    @property
    def sensor_size(self) -> tuple[int, int] | None:
        return None if self.windower is None else (self.windower.width, self.windower.height)

    def _start(self, width: int, height: int) -> None:
        self.anonymizer.check_source(width, height)
        self.windower = Windower(self.window_us, width, height, max_events=self.max_events)

    def cut(self, batch: EventBatch, horizon: int | None = None) -> list[Window]:
        """The windows this batch completes; with `horizon` (µs, event time; a live source's
        watermark) also every window ending by then, events or not."""
        if self.windower is None:
            self._start(batch.width, batch.height)
        elif batch.sensor_size != self.sensor_size:
            raise AnonyNoiseError(f"a batch from a {batch.width}x{batch.height} sensor in a "
                                  f"{self.windower.width}x{self.windower.height} stream")
        self.events_in += len(batch)
        windows = self.windower.push(batch)
        if horizon is not None:
            windows += self.windower.advance_to(horizon)
        return self._counted(windows)

    def flush(self) -> list[Window]:
        """At the end of the source: the pending window, if it holds events."""
        return [] if self.windower is None else self._counted(self.windower.flush())

    def _counted(self, windows: list[Window]) -> list[Window]:
        if windows and self.origin is None:
            self.origin = windows[0].t_start
        self.windows += len(windows)
        return windows

    def anonymize(self, window: Window) -> AnonymizedWindow | None:
        """The window anonymized, its times moved as asked; None where it was refused (fail
        closed: dropped and counted, never passed on raw)."""
        try:
            out = self.anonymizer.anonymize(window.events, window.t_start, window.t_end)
        except AnonymizationRefused as e:
            self.refused += 1
            self.last_refusal = str(e)
            log.debug("window [%d, %d) dropped: %s", window.t_start, window.t_end, e)
            return None
        self.events_out += len(out.events)
        if self.absolute_time or not self.origin:
            return out
        e, shift = out.events, self.origin
        return replace(out, events=EventBatch.trusted(e.t - shift, e.x, e.y, e.p, e.width,
                                                      e.height),
                       t_start=out.t_start - shift, t_end=out.t_end - shift)

    def windows_of(self, batches: Iterable[EventBatch]) -> Iterator[Window]:
        """Every window of the batches, the last one flushed at their end."""
        for batch in batches:
            yield from self.cut(batch)
        yield from self.flush()

    def run(self, batches: Iterable[EventBatch]) -> Iterator[AnonymizedWindow]:
        """Both halves in this thread: every anonymized window of the batches, in order."""
        for window in self.windows_of(batches):
            out = self.anonymize(window)
            if out is not None:
                yield out

    @property
    def late_events(self) -> int:
        return 0 if self.windower is None else self.windower.late_events

    def summary(self) -> dict:
        """What the loop counted (the commands' summaries and the service's status)."""
        w = self.windower
        return {"windows": self.windows, "refused": self.refused, "events_in": self.events_in,
                "events_out": self.events_out, "burst_events": w.cut_events if w else 0,
                "late_events": self.late_events, "time_jumps": w.gaps.count if w else 0,
                "time_jump_largest_s": w.gaps.largest_us / 1e6 if w else 0.0}


def _validated(batches: Iterable, sensor_size) -> Iterator[EventBatch]:
    """The batches as EventBatch, each checked to follow the one before in time."""
    t_prev = None
    for events in batches:
        batch = as_batch(events, sensor_size, t_prev=t_prev)
        if len(batch):
            t_prev = int(batch.t[-1])
        yield batch


def stream_output(loop: WindowLoop, batches: Iterable, sensor_size=None) -> Iterator:
    """Each anonymized window's events, as EventBatch where the batches come as EventBatch,
    else as tonic's structured array (x, y, t, p)."""
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        return
    structured = not isinstance(first, EventBatch)
    for out in loop.run(_validated(itertools.chain([first], batches), sensor_size)):
        yield to_structured(out.events) if structured else out.events


def recording_output(windows: Iterable, like: EventBatch, structured: bool):
    """The windows' events as one recording, of the kind the input came in."""
    parts = list(windows)
    joined = concatenate(parts) if parts else empty_events(like.width, like.height)
    return to_structured(joined) if structured else joined
