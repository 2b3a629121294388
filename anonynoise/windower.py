"""Cut a stream of event batches into windows [t0 + k W, t0 + (k + 1) W) on event time.

Batches arrive as the source delivers them (any size, any alignment); a window is complete
once an event at or after its end has arrived, or once the wall-clock watermark passes it
(a quiet camera still produces empty windows, so consumers see time pass). A window holding
more than `max_events` events (a burst) is thinned to that many, evenly spread, and the cut
events are counted: a burst must not stall the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from anonynoise.events import EventBatch, concatenate, empty_events


@dataclass(frozen=True)
class Window:
    """The events of [t_start, t_end) (µs) and how many were cut from a burst."""

    t_start: int
    t_end: int
    events: EventBatch
    cut: int = 0


@numba.njit(cache=True, nogil=True)
def _split_points(t, first_end, window_us):
    """Indices where each window ending at first_end + k * window_us starts a new one, for
    every window end reached by t (t sorted). Returns (points, number of complete windows)."""
    n = len(t)
    if n == 0 or t[n - 1] < first_end:
        return np.empty(0, np.int64), 0
    complete = (t[n - 1] - first_end) // window_us + 1
    points = np.empty(complete, np.int64)
    i = 0
    for k in range(complete):
        edge = first_end + k * window_us
        while i < n and t[i] < edge:
            i += 1
        points[k] = i
    return points, complete


def warm_up() -> None:
    """Compile the kernel now (or load it from the cache), not on the first live batch."""
    _split_points(np.array([0, 5, 12], np.int64), np.int64(4), np.int64(4))


class Windower:
    """Stateful: push batches, get complete windows in order."""

    def __init__(self, window_us: int, width: int, height: int, *, t0: int | None = None,
                 max_events: int | None = None):
        if window_us <= 0:
            raise ValueError(f"window must be positive, got {window_us} µs")
        self.window_us = int(window_us)
        self.width, self.height = int(width), int(height)
        self.t_start = None if t0 is None else int(t0)  # start of the pending window
        self.max_events = None if max_events is None else int(max_events)
        self._pending: list[EventBatch] = []
        self.cut_events = 0
        self.windows = 0

    def push(self, batch: EventBatch) -> list[Window]:
        """Add a batch (sorted, not before what came earlier); the windows it completes."""
        if len(batch) == 0:
            return []
        if self.t_start is None:
            self.t_start = int(batch.t[0])
        elif int(batch.t[0]) < self.t_start:
            # a source that goes back in time (a looped replay restarts): cut at the pending
            # window's start rather than reorder; those events are dropped
            batch = batch.slice_time(self.t_start, int(batch.t[-1]) + 1)
            if len(batch) == 0:
                return []
        first_end = self.t_start + self.window_us
        points, complete = _split_points(batch.t, np.int64(first_end), np.int64(self.window_us))
        out = []
        start = 0
        for k in range(complete):
            stop = int(points[k])
            out.append(self._close(batch[start:stop]))
            start = stop
        if start < len(batch):
            self._pending.append(batch[start:])
        return out

    def advance_to(self, t: int) -> list[Window]:
        """The watermark: every window ending at or before t is complete, events or not."""
        out = []
        while self.t_start is not None and self.t_start + self.window_us <= t:
            out.append(self._close(None))
        return out

    def flush(self) -> list[Window]:
        """At the end of a source: the pending window, if it holds events."""
        if self._pending:
            return [self._close(None)]
        return []

    def _close(self, tail: EventBatch | None) -> Window:
        parts = self._pending + ([tail] if tail is not None and len(tail) else [])
        self._pending = []
        if not parts:
            events = empty_events(self.width, self.height)
        elif len(parts) == 1:
            events = parts[0]
        else:
            events = concatenate(parts)
        cut = 0
        if self.max_events is not None and len(events) > self.max_events:
            keep = np.linspace(0, len(events) - 1, self.max_events).astype(np.int64)
            cut = len(events) - self.max_events
            events = EventBatch.trusted(events.t[keep], events.x[keep], events.y[keep],
                                        events.p[keep], events.width, events.height)
            self.cut_events += cut
        window = Window(self.t_start, self.t_start + self.window_us, events, cut)
        self.t_start += self.window_us
        self.windows += 1
        return window
