import threading
import time

import numpy as np
import pytest

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events
from anonynoise.io import save_npz
from stream.sources import CameraNotFound, CameraSource, ReplaySource, SyntheticSource


def small_recording(tmp_path, n=2000, span=400_000):
    rng = np.random.default_rng(0)
    ev = make_events(np.sort(rng.integers(0, span, n)) + 1_000, rng.integers(0, 32, n),
                     rng.integers(0, 24, n), rng.integers(0, 2, n), 32, 24)
    path = tmp_path / "rec.npz"
    save_npz(path, ev)
    return path, ev


def test_replay_as_fast_as_possible_gives_every_event_in_order(tmp_path):
    path, ev = small_recording(tmp_path)
    src = ReplaySource(path, speed=None)
    batches = list(src)
    t = np.concatenate([b.t for b in batches])
    assert np.array_equal(t, ev.t) and (src.width, src.height) == (32, 24)
    assert not src.live


def test_paced_replay_follows_the_timestamps(tmp_path):
    path, ev = small_recording(tmp_path, span=400_000)
    start = time.monotonic()
    batches = list(ReplaySource(path, speed=2.0))
    elapsed = time.monotonic() - start
    assert elapsed >= 0.8 * (ev.duration_us / 1e6) / 2.0  # 0.2 s of event time at 2x
    assert max(int(b.t[-1] - b.t[0]) for b in batches) <= 5_000  # handed out in small pieces


def test_looped_replay_continues_time_forwards(tmp_path):
    path, ev = small_recording(tmp_path)
    src = ReplaySource(path, speed=None, loop=True, gap_us=50_000)
    got, total = [], 0
    for batch in src:
        got.append(batch)
        total += len(batch)
        if total >= 3 * len(ev):
            src.stop()
    t = np.concatenate([b.t for b in got])
    assert np.all(np.diff(t) >= 0)
    second = t[len(ev)]
    assert second == ev.t[-1] + 50_000  # one gap after the first pass ended
    assert src.passes >= 2


def test_replay_of_a_real_recording_counts_every_event(real_file):
    src = ReplaySource(real_file("face_dvxplorer.aedat4"), speed=None)
    assert sum(len(b) for b in src) == 111_954
    assert (src.width, src.height) == (320, 240)


def test_replay_refuses_bad_files(tmp_path):
    with pytest.raises(AnonyNoiseError, match="no such file"):
        ReplaySource(tmp_path / "missing.aedat4")
    (tmp_path / "junk.aedat4").write_text("not a recording")
    with pytest.raises(AnonyNoiseError):
        ReplaySource(tmp_path / "junk.aedat4")


def test_synthetic_source_streams_a_person():
    src = SyntheticSource(48, 48, realtime=False, seed=1)
    total = 0
    for i, batch in enumerate(src):
        total += len(batch)
        if i == 30:
            break
    assert total > 0 and (src.width, src.height) == (48, 48)


# --- a fake camera at the dv-processing boundary -----------------------------------------


class FakeStore:
    def __init__(self, t, x, y, p):
        self.t, self.xy, self.p = np.asarray(t, np.int64), np.stack([x, y], 1).astype(np.int16), \
            np.asarray(p, np.uint8)

    def size(self):
        return len(self.t)

    def timestamps(self):
        return self.t

    def coordinates(self):
        return self.xy

    def polarities(self):
        return self.p


class FakeCamera:
    """Delivers `batches` stores, then unplugs (getNextEventBatch raises)."""

    def __init__(self, t0, batches, resolution=(32, 24)):
        self.t0, self.left, self.resolution = t0, batches, resolution

    def getEventResolution(self):
        return self.resolution

    def isRunning(self):
        return True

    def getNextEventBatch(self):
        if self.left == 0:
            raise RuntimeError("device disconnected")
        self.left -= 1
        t = self.t0 + np.arange(10) * 100
        self.t0 = int(t[-1]) + 100
        return FakeStore(t, np.arange(10) % 32, np.arange(10) % 24, np.arange(10) % 2)


class FakeApi:
    def __init__(self, cameras, absent_for=0):
        self.cameras, self.absent_for, self.opened = list(cameras), absent_for, 0

    def discover(self):
        if self.opened and self.absent_for > 0:
            self.absent_for -= 1
            return []
        return ["DVX-FAKE"] if self.cameras else []

    def open(self, serial=None):
        self.opened += 1
        return self.cameras.pop(0)


def test_no_camera_is_one_clear_error():
    with pytest.raises(CameraNotFound, match="no DVS camera found"):
        CameraSource(api=FakeApi([]))
    with pytest.raises(CameraNotFound, match="no camera with serial X"):
        CameraSource("X", api=FakeApi([FakeCamera(0, 1)]))


def test_a_disconnect_is_survived_and_time_keeps_going(caplog):
    # the second camera's clock restarts at 0: the source must not send time backwards
    api = FakeApi([FakeCamera(5_000, 3), FakeCamera(0, 2)], absent_for=1)
    src = CameraSource(api=api, max_backoff_s=0.05)
    got = []
    stopper = threading.Timer(10, src.stop)
    stopper.start()
    try:
        for batch in src:
            got.append(batch)
            if len(got) == 5:
                src.stop()
    finally:
        stopper.cancel()
    t = np.concatenate([b.t for b in got])
    assert len(t) == 50 and np.all(np.diff(t) > 0)
    assert src.reconnects == 1 and src.live
    assert "camera disconnected" in caplog.text and "reconnected" in caplog.text


def test_roi_and_subsampling_reach_the_camera():
    class Modes:
        EVERY_SECOND, EVERY_FOURTH, EVERY_EIGHTH = "2", "4", "8"

    class Configurable(FakeCamera):
        SubSample = Modes

        def setCropArea(self, area):
            self.area = area

        def setSubSampleHorizontal(self, mode):
            self.horizontal = mode

        def setSubSampleVertical(self, mode):
            self.vertical = mode

    cam = Configurable(0, 1)
    CameraSource(api=FakeApi([cam]), roi=(10, 20, 100, 80), subsample=4)
    assert cam.area == (10, 20, 100, 80) and cam.horizontal == cam.vertical == "4"
    with pytest.raises(AnonyNoiseError, match="no subsampling"):
        CameraSource(api=FakeApi([FakeCamera(0, 1)]), subsample=2)
    with pytest.raises(AnonyNoiseError, match="not offered"):
        CameraSource(api=FakeApi([Configurable(0, 1)]), subsample=3)


def test_the_synthetic_sources_kernels_are_compiled_before_its_first_window():
    # the first stream after an install spent about 10 s compiling them in its first window
    import numba

    from anonynoise.synth import render, simulator
    from anonynoise.synth.scene import warm_up

    kernels = [f for module in (render, simulator) for f in vars(module).values()
               if isinstance(f, numba.core.registry.CPUDispatcher)]
    warm_up()
    compiled = {k.__name__: len(k.signatures) for k in kernels}
    assert sum(compiled.values()) > 0
    src = SyntheticSource(128, 128, realtime=False, seed=3)
    for _, batch in zip(range(10), src):
        assert len(batch) >= 0
    assert {k.__name__: len(k.signatures) for k in kernels} == compiled  # nothing new
