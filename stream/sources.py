"""Where events come from: a replayed file, the synthetic live scene, or a DVS camera.

Every source is an iterable of EventBatch with `width`, `height` and `live` (a live source
cannot wait: the pipeline drops instead of blocking it). Only events come out: APS frames,
IMU samples and triggers stay inside the readers and the camera driver. Sources know nothing
of windows or models.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, from_dv
from anonynoise.io import open_events
from anonynoise.windower import MAX_GAP_US

log = logging.getLogger(__name__)
# A paced replay hands out at most this much event time at once: a window is complete once
# the first event after its end arrives, on average half a chunk late (5 ms chunks added
# 2.5 ms to the latency; 1 ms costs about 1,000 more small batches a second, a few % of a core).
PACE_CHUNK_US = 1_000
HEARTBEAT_S = 0.01  # a quiet camera still yields an empty batch this often
_EMPTY = (np.empty(0, np.int64), np.empty(0, np.int16), np.empty(0, np.int16),
          np.empty(0, np.uint8))


class Source:
    width: int
    height: int
    live: bool = False
    kind: str = "source"  # a generic name: what the stream may say about its input

    def __iter__(self) -> Iterator[EventBatch]:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the iteration to end soon (from another thread)."""
        self._stopped.set()

    def close(self) -> None:
        self.stop()

    @property
    def _stopped(self) -> threading.Event:
        if not hasattr(self, "_stop_event"):
            self._stop_event = threading.Event()
        return self._stop_event


class ReplaySource(Source):
    """A recording (.aedat4, Prophesee .raw/.dat, .npy/.npz) replayed by its timestamps.

    speed: 1.0 = real time, 2.0 = twice as fast, None = as fast as possible. loop: start
    over at the end, with timestamps continuing (one window-sized gap) so time never runs
    backwards downstream.
    """

    kind = "replay"

    def __init__(self, path: str | os.PathLike, *, speed: float | None = 1.0, loop: bool = False,
                 sensor_size=None, gap_us: int = 50_000):
        if speed is not None and speed <= 0:
            raise AnonyNoiseError(f"speed must be positive, got {speed}", parameter="speed")
        self.path = Path(path)
        with open_events(self.path, sensor_size) as reader:  # checks the file now
            self.width, self.height = reader.sensor_size
        self.sensor_size = sensor_size
        self.speed, self.loop, self.gap_us = speed, loop, int(gap_us)
        self.passes = 0

    def __iter__(self) -> Iterator[EventBatch]:
        offset = skipped = 0
        wall0 = time.monotonic()
        t_first = t_prev = None
        while not self._stopped.is_set():
            last = None
            with open_events(self.path, self.sensor_size) as reader:
                for batch in reader:
                    if len(batch) == 0:
                        continue
                    if offset:
                        batch = _shift(batch, offset)
                    if t_first is None:
                        t_first = t_prev = int(batch.t[0])
                    for part in _pace_chunks(batch) if self.speed else (batch,):
                        if self._stopped.is_set():
                            return
                        if self.speed:
                            # a jump in event time is not waited for (the windower skips it
                            # too, and says so)
                            if int(part.t[0]) - t_prev > MAX_GAP_US:
                                skipped += int(part.t[0]) - t_prev
                            t_prev = int(part.t[-1])
                            due = wall0 + (t_prev - t_first - skipped) / 1e6 / self.speed
                            delay = due - time.monotonic()
                            if delay > 0:
                                self._stopped.wait(delay)
                        yield part
                    last = int(batch.t[-1])
            self.passes += 1
            if not self.loop or last is None:
                return
            offset = last - t_first + self.gap_us  # the next pass starts a gap after this one


def _shift(batch: EventBatch, offset: int) -> EventBatch:
    return EventBatch.trusted(batch.t + offset, batch.x, batch.y, batch.p, batch.width,
                              batch.height)


def _pace_chunks(batch: EventBatch):
    """Split a batch into pieces of at most PACE_CHUNK_US of event time (smooth pacing); the
    chunk edges follow the events, so a jump in time costs no chunks."""
    start = 0
    while start < len(batch):
        t0 = int(batch.t[start])
        stop = int(np.searchsorted(batch.t, t0 + PACE_CHUNK_US, side="left"))
        if start == 0 and stop == len(batch):
            yield batch
            return
        yield batch[start:stop]
        start = stop


class SyntheticSource(Source):
    """The built-in synthetic person doing random gestures (anonynoise.synth.LiveScene):
    paced like a camera (live) or as fast as it can be simulated."""

    kind = "synthetic"

    def __init__(self, width: int = 128, height: int = 128, *, realtime: bool = True,
                 seed: int | None = None, chunk_ms: float = 10.0):
        from anonynoise.memory import check_window_memory
        from anonynoise.synth.scene import LiveScene, warm_up

        # the simulator holds a few float arrays per pixel, the windows as many: refused now,
        # before either is allocated (20000x20000 asked for 15 to 40 GiB)
        check_window_memory(int(width), int(height), bins=5)
        # before the stream's clock starts, not in its first window
        log.info("synthetic source: preparing its kernels (the first run after an install "
                 "compiles them: about 20 s)")
        warm_up()
        self.width, self.height, self.live = int(width), int(height), bool(realtime)
        self.scene = LiveScene(self.width, self.height, seed=seed, realtime=realtime,
                               chunk_ms=chunk_ms)

    def __iter__(self) -> Iterator[EventBatch]:
        for batch in self.scene:
            if self._stopped.is_set():
                return
            yield batch


class CameraNotFound(AnonyNoiseError):
    """No DVS camera (or not the one asked for) is attached."""


class CameraSource(Source):
    """A live DVS camera through dv-processing 2.x (`dv.io.camera`).

    serial None opens the first camera found. When the camera goes away the source says so
    and reopens it with back-off (0.5 s doubling to 5 s); timestamps continue from where they
    were, so a camera whose clock restarted does not send time backwards. `api` is the
    module with `discover()` and `open(serial)` (dv.io.camera; a fake one in tests).
    """

    kind = "camera"
    live = True

    def __init__(self, serial: str | None = None, *, api=None, roi=None, subsample: int = 1,
                 poll_s: float = 0.001, max_backoff_s: float = 5.0):
        if api is None:
            import dv_processing as dv

            api = dv.io.camera
        self.api, self.serial, self.roi, self.subsample = api, serial, roi, int(subsample)
        self.poll_s, self.max_backoff_s = poll_s, max_backoff_s
        self.reconnects = 0
        self.camera = self._open()
        self.width, self.height = (int(v) for v in self.camera.getEventResolution())

    def _open(self):
        found = list(self.api.discover())
        if not found:
            raise CameraNotFound("no DVS camera found (is it plugged in, and does this user "
                                 "have access to it?)")
        serials = [str(getattr(d, "serialNumber", d)) for d in found]
        if self.serial is not None and self.serial not in serials:
            raise CameraNotFound(f"no camera with serial {self.serial} (found: "
                                 f"{', '.join(serials)})")
        try:
            camera = self.api.open(self.serial) if self.serial else self.api.open()
        except (RuntimeError, IndexError, OSError) as e:
            raise CameraNotFound(f"the camera could not be opened: "
                                 f"{str(e).strip().splitlines()[0][:160]}") from None
        self._configure(camera)
        return camera

    def _configure(self, camera) -> None:
        """ROI and subsampling where the camera has them (ROI: DAVIS and DVXplorer;
        subsampling: DVXplorer, by 2, 4 or 8)."""
        if self.roi is not None:
            if not hasattr(camera, "setCropArea"):
                raise AnonyNoiseError("this camera has no region of interest setting")
            camera.setCropArea(tuple(int(v) for v in self.roi))
        if self.subsample > 1:
            modes = getattr(type(camera), "SubSample", None)
            names = {2: "EVERY_SECOND", 4: "EVERY_FOURTH", 8: "EVERY_EIGHTH"}
            if modes is None or not hasattr(camera, "setSubSampleHorizontal"):
                raise AnonyNoiseError("this camera has no subsampling setting")
            if self.subsample not in names:
                raise AnonyNoiseError(f"subsampling by {self.subsample} is not offered (2, 4, 8)")
            mode = getattr(modes, names[self.subsample])
            camera.setSubSampleHorizontal(mode)
            camera.setSubSampleVertical(mode)

    def __iter__(self) -> Iterator[EventBatch]:
        last_t = None
        offset = 0
        idle_since = time.monotonic()
        while not self._stopped.is_set():
            try:
                if not self.camera.isRunning():
                    raise ConnectionError("the camera stopped")
                store = self.camera.getNextEventBatch()
            except Exception as e:  # noqa: BLE001 - the driver raises many kinds on unplugging
                log.warning("camera disconnected (%s); reconnecting", str(e).splitlines()[0]
                            if str(e) else type(e).__name__)
                if not self._reconnect():
                    return
                if last_t is not None:
                    offset = None  # decided by the first batch after the reconnect
                continue
            if store is None or store.size() == 0:
                self._stopped.wait(self.poll_s)
                now = time.monotonic()
                if now - idle_since >= HEARTBEAT_S:  # let the watermark move on a quiet camera
                    idle_since = now
                    yield EventBatch.trusted(*_EMPTY, self.width, self.height)
                continue
            idle_since = time.monotonic()
            batch = from_dv(store, (self.width, self.height))
            if offset is None:  # keep time going forwards across a reconnect
                offset = max(0, last_t + 1 - int(batch.t[0]))
            if offset:
                batch = _shift(batch, offset)
            if last_t is not None and int(batch.t[0]) < last_t:
                batch = batch.slice_time(last_t, int(batch.t[-1]) + 1)
                if len(batch) == 0:
                    continue
            last_t = int(batch.t[-1])
            yield batch

    def _reconnect(self) -> bool:
        delay = 0.5
        while not self._stopped.is_set():
            self._stopped.wait(delay)
            try:
                camera = self._open()
            except AnonyNoiseError:
                delay = min(delay * 2, self.max_backoff_s)
                continue
            resolution = tuple(int(v) for v in camera.getEventResolution())
            if resolution != (self.width, self.height):
                raise AnonyNoiseError(f"the camera came back as {resolution[0]}x"
                                      f"{resolution[1]}, not {self.width}x{self.height}")
            self.camera = camera
            self.reconnects += 1
            log.warning("camera reconnected (%d reconnects so far)", self.reconnects)
            return True
        return False
