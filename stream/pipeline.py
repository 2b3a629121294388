"""The service's pipeline: source -> windower -> bounded queue -> anonymizer -> publisher, sinks.

    source thread:  reads the source, cuts windows (event time; a wall-clock watermark for
                    quiet live sources), numbers them, and queues them. A live source never
                    waits: when the queue is full the window is dropped and counted.
    this thread:    anonymizes each window (fail closed: a refused window is dropped and
                    counted, never sent raw), publishes it, hands it to the sinks, and sends
                    a status message once a second.

Raw events exist only between the source and the anonymizer; nothing else can reach them.
"""

from __future__ import annotations

import collections
import gc
import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from anonynoise.anonymizer import Anonymizer
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import empty_events, to_packed
from anonynoise.loop import WindowLoop
from anonynoise.windower import Window
from stream.protocol import WindowHeader, new_session_id

log = logging.getLogger(__name__)
_END = object()


@dataclass
class StreamConfig:
    window_us: int | None = None  # None: the anonymizer's
    max_window_events: int = 2_000_000  # a burst above this is thinned and counted
    queue_windows: int = 8
    absolute_time: bool = False  # default: timestamps relative to the stream start
    max_consecutive_failures: int = 20  # then the service stops with an error
    status_interval_s: float = 1.0
    watermark_slack_us: int = 20_000  # how late a live source's events may arrive
    lag_memory_s: float = 2.0  # the watermark follows the largest delivery lag seen this long


class SourceLag:
    """The largest wall-clock-minus-event-time offset (s) of a live source's batches over the
    last `memory_s`: how far behind its events arrive now. It rises at once when the source
    falls behind and falls back only after `memory_s` of smaller lags (USB jitter)."""

    def __init__(self, memory_s: float):
        self.memory_s = memory_s
        self._seen: collections.deque = collections.deque()  # (now, offset), offsets falling

    def observe(self, now: float, offset: float) -> None:
        while self._seen and self._seen[-1][1] <= offset:
            self._seen.pop()  # a larger, newer offset outlives it: never the maximum again
        self._seen.append((now, offset))
        while self._seen[0][0] < now - self.memory_s and len(self._seen) > 1:
            self._seen.popleft()

    def recent(self) -> float:
        return self._seen[0][1]


@dataclass
class Counters:
    windows_in: int = 0
    windows_out: int = 0
    # every window or event that did not reach a consumer, by cause (docs/protocol.md)
    dropped: dict = field(default_factory=lambda: {"anonymization": 0, "queue": 0,
                                                   "lossless": 0, "sink": 0,
                                                   "burst_events": 0, "late_events": 0})
    latencies_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=2000))
    # the anonymizer thread's working time per window against the window's span of event
    # time: below 1 it keeps up with a camera, whatever the replay speed (the last windows)
    busy_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))
    span_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))

    def load(self) -> float | None:
        span = sum(self.span_s)
        return sum(self.busy_s) / span if span > 0 else None

    def latency(self, q: float) -> float | None:
        return float(np.percentile(list(self.latencies_ms), q)) if self.latencies_ms else None


@dataclass
class QueuedWindow:
    window: Window
    seq: int
    wall_end: float | None  # monotonic time at which the window's end happened (live / paced)


class Pipeline:
    """Run a source through an anonymizer to a publisher and sinks until the source ends or
    stop() is called."""

    def __init__(self, source, anonymizer: Anonymizer, publisher, sinks=(),
                 config: StreamConfig = StreamConfig(), model: dict | None = None,
                 paced: bool = True, speed: float = 1.0, preview=None):
        self.source, self.anonymizer, self.publisher = source, anonymizer, publisher
        # preview(raw, anonymized): a local, in-process observer (anonynoise-preview); the
        # raw events go to it and nowhere else
        self.preview = preview
        self.sinks = list(sinks)
        self.config = config
        self.model = model or {}
        self.paced = paced  # events arrive in real time (camera, paced replay, live synth)
        self.speed = speed  # event seconds per wall-clock second of a paced replay
        self.session = new_session_id()
        self.counters = Counters()
        # the one window loop (anonynoise.loop): cut() in the source thread, anonymize() here
        self.loop = WindowLoop(anonymizer, (source.width, source.height),
                               window_us=config.window_us, max_events=config.max_window_events,
                               absolute_time=config.absolute_time)
        self.queue: queue.Queue = queue.Queue(maxsize=config.queue_windows)
        self._stop = threading.Event()
        self._source_error: BaseException | None = None
        self.started = time.monotonic()
        to_packed(empty_events(source.width, source.height))  # compiled now, not in a window

    # -- the source thread ------------------------------------------------------------------

    def _read_source(self) -> None:
        seq = 0
        # wall-clock minus event time (s), the smallest seen: a batch is read at or after its
        # last event happened, so the least delayed batch gives the tightest mapping (the first
        # batches of a source that is slow to start arrive late, all at once). It dates the
        # windows for the latency.
        offset = None
        lag = SourceLag(self.config.lag_memory_s)
        try:
            for batch in self.source:
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if len(batch):
                    seen = now - int(batch.t[-1]) / 1e6 / self.speed
                    offset = seen if offset is None else min(offset, seen)
                    lag.observe(now, seen)
                horizon = None
                if self.source.live and offset is not None:
                    # the watermark follows the source's recent delivery lag, not its best:
                    # a source that falls behind (a loaded machine, a lagging USB link) would
                    # otherwise have its windows closed before their events arrive
                    horizon = int((now - lag.recent()) * 1e6 * self.speed) - \
                        self.config.watermark_slack_us
                windows = self.loop.cut(batch, horizon)
                self.counters.dropped["late_events"] = self.loop.late_events
                for w in windows:
                    wall_end = None if offset is None or not self.paced else \
                        offset + w.t_end / 1e6 / self.speed
                    self._enqueue(QueuedWindow(w, seq, wall_end))
                    seq += 1
            for w in self.loop.flush():
                self._enqueue(QueuedWindow(w, seq, None))
                seq += 1
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            self._source_error = e
        finally:
            while True:  # the end marker, unless the main thread stopped reading
                try:
                    self.queue.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def _enqueue(self, item: QueuedWindow) -> None:
        self.counters.windows_in += 1
        self.counters.dropped["burst_events"] += item.window.cut
        if self.source.live:
            try:
                self.queue.put_nowait(item)
            except queue.Full:  # never block a camera: drop and count
                self.counters.dropped["queue"] += 1
            return
        while not self._stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- this thread ------------------------------------------------------------------------

    def run(self) -> dict:
        # Everything alive now (torch, numba, the model: about 250k objects) leaves the
        # collector's sight: one full collection over it takes about 140 ms here, a latency
        # spike and a stall of the stream whenever Python decides to run one.
        gc.freeze()
        reader = threading.Thread(target=self._read_source, name="source", daemon=True)
        reader.start()
        failures, last_reason = 0, ""
        next_status = time.monotonic() + self.config.status_interval_s
        try:
            while True:
                try:
                    item = self.queue.get(timeout=self.config.status_interval_s)
                except queue.Empty:
                    if not reader.is_alive() and self.queue.empty():
                        break  # stopped while the queue was full: no end marker came
                    item = None
                if item is _END:
                    break
                if item is not None:
                    ok, reason = self._process(item)
                    failures = 0 if ok else failures + 1
                    last_reason = reason or last_reason
                    if failures >= self.config.max_consecutive_failures:
                        raise AnonyNoiseError(f"anonymization failed for {failures} windows in "
                                              f"a row ({last_reason}); stopping")
                if time.monotonic() >= next_status:
                    self.publisher.status({"session": self.session, **self.status()})
                    next_status = time.monotonic() + self.config.status_interval_s
            if self._source_error is not None:
                raise self._source_error
        finally:
            self.stop()
            reader.join(timeout=5)
        return self.status()

    def _process(self, item: QueuedWindow) -> tuple[bool, str]:
        started = time.perf_counter()
        try:
            return self._publish(item)
        finally:
            self.counters.busy_s.append(time.perf_counter() - started)
            self.counters.span_s.append((item.window.t_end - item.window.t_start) / 1e6)

    def _publish(self, item: QueuedWindow) -> tuple[bool, str]:
        w = item.window
        anonymized = self.loop.anonymize(w)
        if anonymized is None:  # fail closed: the window is dropped, never sent raw
            self.counters.dropped["anonymization"] += 1
            return False, self.loop.last_refusal
        events = anonymized.events
        payload = to_packed(events)  # packed once, in the wire's format, for every consumer
        header = WindowHeader(session=self.session, seq=item.seq, t_start=anonymized.t_start,
                              t_end=anonymized.t_end, width=events.width, height=events.height,
                              events=len(events), model=self.model,
                              dropped=dict(self.counters.dropped),
                              absolute_time=self.config.absolute_time)
        self.publisher.publish(header, payload, wait=not self.source.live)
        self.counters.dropped["lossless"] = self.publisher.lossless_dropped
        for sink in self.sinks:
            if not sink.put(header, payload, wait=not self.source.live):
                self.counters.dropped["sink"] += 1
        if self.preview is not None:
            self.preview(w.events, events)
        self.counters.windows_out += 1
        if item.wall_end is not None:
            self.counters.latencies_ms.append((time.monotonic() - item.wall_end) * 1000)
        return True, ""

    def stop(self) -> None:
        self._stop.set()
        self.source.stop()

    def status(self) -> dict:
        c, loop = self.counters, self.loop.summary()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        return {"windows_in": c.windows_in, "windows_out": c.windows_out,
                "events_in": loop["events_in"], "events_out": loop["events_out"],
                "events_in_per_s": loop["events_in"] / elapsed,
                "events_out_per_s": loop["events_out"] / elapsed,
                "dropped": dict(c.dropped), "latency_ms_p50": c.latency(50),
                "latency_ms_p99": c.latency(99), "seconds": elapsed,
                "time_jumps": loop["time_jumps"], "load": c.load(),
                "time_jump_largest_s": loop["time_jump_largest_s"]}
