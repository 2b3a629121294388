"""Cut a stream of event batches into windows [t0 + k W, t0 + (k + 1) W) on event time.

Batches arrive as the source delivers them (any size, any alignment); a window is complete
once an event at or after its end has arrived, or once the wall-clock watermark passes it
(a quiet camera still produces empty windows, so consumers see time pass). A window holding
more than `max_events` events (a burst) is thinned to that many, evenly spread, and the cut
events are counted: a burst must not stall the pipeline.

A jump in event time longer than `max_gap_us` (a 32-bit timestamp wrap, a glitched time word,
a recording paused for hours) is not cut into empty windows: the window grid moves on to the
first event after the jump (on the same grid), and the jump is counted in `gaps` (how many,
the largest), which the commands report. Cut into windows, one such jump cost 86,000 to
343,000 empty windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np

from anonynoise.events import EventBatch, concatenate, empty_events

log = logging.getLogger(__name__)
# A stretch of event time without events longer than this is a jump, not a quiet scene: a
# still scene still gives sensor noise events every few ms.
MAX_GAP_US = 10_000_000


def gap_points(t: np.ndarray, max_gap_us: int) -> np.ndarray:
    """Indices i where t[i] - t[i - 1] > max_gap_us (t sorted): where a batch jumps."""
    return np.flatnonzero(np.diff(t) > max_gap_us) + 1 if len(t) > 1 else \
        np.empty(0, np.int64)


@dataclass
class Gaps:
    """Jumps in event time a windower skipped: how many, the largest (µs)."""

    count: int = 0
    largest_us: int = 0

    def add(self, at_us: int, size_us: int) -> None:
        """Count a jump (in the debug log with its place: a damaged file can jump thousands of
        times). The commands report the count and the largest once, in their summary and
        status lines, so that a run's stderr stays one line."""
        self.count += 1
        self.largest_us = max(self.largest_us, size_us)
        log.debug("event time jumps by %.1f s at t=%d µs (no events in between); skipped, not "
                  "cut into empty windows (jump %d)", size_us / 1e6, at_us, self.count)


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
                 max_events: int | None = None, max_gap_us: int = MAX_GAP_US):
        if window_us <= 0:
            raise ValueError(f"window must be positive, got {window_us} µs")
        self.max_gap_us = max(int(max_gap_us), int(window_us))
        self.gaps = Gaps()
        self._t_last: int | None = None  # the last event pushed
        self.window_us = int(window_us)
        self.width, self.height = int(width), int(height)
        self.t_start = None if t0 is None else int(t0)  # start of the pending window
        self.max_events = None if max_events is None else int(max_events)
        self._pending: list[EventBatch] = []
        self.cut_events = 0
        self.late_events = 0  # events that arrived after their window was closed
        self.windows = 0

    def push(self, batch: EventBatch) -> list[Window]:
        """Add a batch (sorted, not before what came earlier); the windows it completes."""
        if len(batch) == 0:
            return []
        out = []
        cuts = gap_points(batch.t, self.max_gap_us).tolist()
        for start, stop in zip([0, *cuts], [*cuts, len(batch)]):
            out += self._push(batch[start:stop])
        return out

    def _jump(self, t_next: int) -> list[Window]:
        """Before an event at t_next far after the last one: close what is pending and move
        the grid on to the window holding t_next, without the empty windows in between."""
        gap = t_next - self._t_last
        out = [self._close(None)] if self._pending else []
        if self.t_start + self.window_us <= t_next:
            skipped = (t_next - self.t_start) // self.window_us
            self.t_start += skipped * self.window_us
        self.gaps.add(self._t_last, gap)
        return out

    def _push(self, batch: EventBatch) -> list[Window]:
        out = []
        if self._t_last is not None and int(batch.t[0]) - self._t_last > self.max_gap_us \
                and self.t_start is not None:
            out = self._jump(int(batch.t[0]))
        self._t_last = int(batch.t[-1])
        return out + self._cut(batch)

    def _cut(self, batch: EventBatch) -> list[Window]:
        if self.t_start is None:
            self.t_start = int(batch.t[0])
        elif int(batch.t[0]) < self.t_start:
            # events of a window already closed (by the watermark, before a lagging source
            # delivered them): a window once sent cannot take them, and moving them into the
            # open one would put them outside its time, so they are dropped and counted
            n = len(batch)
            batch = batch.slice_time(self.t_start, int(batch.t[-1]) + 1)
            self.late_events += n - len(batch)
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
