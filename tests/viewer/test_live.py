"""The live viewer end to end, offscreen: real publishers on loopback, the receiver thread, the
window, screenshots read back as pixels, the command line, restarts, silence and a soak."""

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from PIL import Image

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events
from stream.client import ReceivedWindow
from stream.protocol import WindowHeader, new_session_id
from stream.publisher import Publisher
from viewer.app import ViewerConfig, run_viewer
from viewer.overlay import WAITING
from viewer.receiver import LatestWindowReceiver, ReceiverState
from viewer.render import DEFAULT_PALETTE as P
from viewer.window import (SideBySideView, ViewerWindow, check_qt_binding, preview_side_by_side,
                           qt_app)

REPO = Path(__file__).resolve().parents[2]
WINDOW_US = 20_000
MODEL = {"kind": "light_anon", "name": "test-model", "sha256": "0123456789abcdef"}


# --- helpers -------------------------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Pattern:
    """ON events in one rectangle and OFF events in another, every window."""

    def __init__(self, width, height, on, off):
        self.width, self.height = width, height
        self.on, self.off = on, off  # (x0, x1, y0, y1), half-open

    def _rect(self, rect):
        x0, x1, y0, y1 = rect
        ys, xs = np.mgrid[y0:y1, x0:x1]
        return xs.ravel(), ys.ravel()

    def events(self, t0):
        (xa, ya), (xb, yb) = self._rect(self.on), self._rect(self.off)
        x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
        p = np.r_[np.ones(len(xa)), np.zeros(len(xb))]
        t = t0 + np.linspace(0, WINDOW_US - 1, len(x)).astype(np.int64)
        return make_events(t, x, y, p, self.width, self.height)

    def expected(self):
        """(height, width) codes: 0 background, 1 ON, 2 OFF."""
        codes = np.zeros((self.height, self.width), int)
        for rect, code in ((self.on, 1), (self.off, 2)):
            x0, x1, y0, y1 = rect
            codes[y0:y1, x0:x1] = code
        return codes


PATTERN = Pattern(64, 48, on=(8, 24, 6, 18), off=(40, 56, 28, 42))
RESTART_PATTERN = Pattern(40, 30, on=(25, 35, 3, 10), off=(2, 12, 18, 27))


class PatternPublisher(threading.Thread):
    """A real Publisher sending one pattern every `period_s`, in its own thread (ZeroMQ sockets
    stay in the thread that made them)."""

    def __init__(self, address, pattern, period_s=0.01, skip_every=0, curve_keys=None):
        super().__init__(daemon=True)
        self.curve_keys = curve_keys
        self.address, self.pattern, self.period_s = address, pattern, period_s
        self.skip_every = skip_every  # pretend the service dropped every n-th window
        self.session = new_session_id()
        self.sent = 0
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        deadline = time.monotonic() + 5
        while True:  # a restarted publisher may find the old port not yet released
            try:
                publisher = Publisher(self.address, None, curve_keys=self.curve_keys)
                break
            except AnonyNoiseError as e:
                if time.monotonic() > deadline:
                    self.error = e
                    self.ready.set()
                    return
                time.sleep(0.05)
        self.ready.set()
        try:
            seq = 0
            while not self.stopping.is_set():
                t0 = seq * WINDOW_US
                events = self.pattern.events(t0)
                header = WindowHeader(session=self.session, seq=seq, t_start=t0,
                                      t_end=t0 + WINDOW_US, width=self.pattern.width,
                                      height=self.pattern.height, events=len(events),
                                      model=MODEL, dropped={"anonymization": 0, "queue": 0,
                                                            "burst_events": 0})
                if not (self.skip_every and seq % self.skip_every == self.skip_every - 1):
                    publisher.publish(header, events, wait=False)
                    self.sent += 1
                seq += 1
                time.sleep(self.period_s)
        finally:
            for sock in publisher.sockets:
                sock.setsockopt(zmq.LINGER, 0)
            publisher.close()

    def __enter__(self):
        self.start()
        self.ready.wait(10)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(5)


def find_picture(rgb, width, height):
    """The picture's box in a screenshot, found by its colours alone: every pixel of the
    picture is one of the palette's four colours, and nothing else on screen is."""
    colours = np.array([P.background, P.on, P.off, P.both], np.uint8)
    mask = (rgb[:, :, None, :] == colours[None, None]).all(-1).any(-1)
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    sx, sy = (right - left) / width, (bottom - top) / height
    assert sx > 2 and abs(sx / sy - 1) < 0.05, (left, right, top, bottom)  # aspect kept
    return left, top, sx, sy


def sensor_pixels(rgb, width, height):
    """The screenshot's colour at the centre of every sensor pixel: (height, width, 3)."""
    left, top, sx, sy = find_picture(rgb, width, height)
    cols = (left + (np.arange(width) + 0.5) * sx).astype(int)
    rows = (top + (np.arange(height) + 0.5) * sy).astype(int)
    return rgb[rows[:, None], cols[None, :]]


def assert_shows(rgb, pattern):
    seen = sensor_pixels(rgb, pattern.width, pattern.height)
    expected = pattern.expected()
    for code, colour in ((0, P.background), (1, P.on), (2, P.off)):
        where = expected == code
        wrong = ~(seen[where] == colour).all(-1)
        assert not wrong.any(), f"{wrong.sum()} of {where.sum()} pixels not {colour}"


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


def pump(window, until, timeout_s=10.0):
    """Run the window's tick by hand (and Qt's events) until until() holds."""
    app = qt_app()
    deadline = time.monotonic() + timeout_s
    while not until():
        assert time.monotonic() < deadline, window.status_text()
        app.processEvents()
        window.refresh()
        time.sleep(0.01)


def cli(*args, command=(sys.executable, "-m", "viewer"), timeout=60):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


# --- 1. a known pattern, seen in screenshots --------------------------------------------------


def test_the_screenshot_shows_on_and_off_where_they_were_sent(tmp_path):
    address = f"ipc://{tmp_path}/live"
    out = tmp_path / "shot.png"
    with PatternPublisher(address, PATTERN):
        result = run_viewer(ViewerConfig(address, screenshot=str(out), frames=3, timeout_s=15,
                                         size=(640, 520)))
    assert result.frames == 3 and result.windows >= 3 and result.sessions == 1
    rgb = read_png(out)
    assert rgb.shape == (520, 640, 3)
    assert_shows(rgb, PATTERN)


def test_the_console_command_writes_the_same_screenshot(tmp_path):
    address = f"ipc://{tmp_path}/live"
    out = tmp_path / "shot.png"
    command = Path(sys.executable).with_name("anonynoise-view")
    assert command.exists(), "run `pip install -e .` to register anonynoise-view"
    with PatternPublisher(address, PATTERN):
        done = cli(address, "--screenshot", str(out), "--frames", "2", "--timeout", "20",
                   "--size", "500x400", command=(str(command),))
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout
    rgb = read_png(out)
    assert rgb.shape == (400, 500, 3)
    assert_shows(rgb, PATTERN)


def test_the_window_maps_sensor_pixels_where_the_screenshot_has_them():
    window = ViewerWindow(FakeSource(PATTERN), "fake://", size=(700, 500))
    window.show()
    assert window.refresh()
    rgb = window.grab_rgb()
    left, top, sx, sy = find_picture(rgb, 64, 48)
    for x, y in ((0, 0), (63, 47), (10, 10), (45, 30)):
        col, row = window.sensor_to_widget(x, y)
        assert abs(col - (left + (x + 0.5) * sx)) < 1 and abs(row - (top + (y + 0.5) * sy)) < 1
    assert_shows(rgb, PATTERN)
    window.close()


def test_an_encrypted_stream_with_curve_keys_and_a_client_name(tmp_path):
    from stream.keys import make_keys

    keys = make_keys(tmp_path / "keys", ("alice",))
    address = f"tcp://127.0.0.1:{free_port()}"
    out = tmp_path / "shot.png"
    with PatternPublisher(address, PATTERN, curve_keys=keys):
        result = run_viewer(ViewerConfig(address, curve_keys=str(keys), client_name="alice",
                                         screenshot=str(out), timeout_s=15))
        assert result.frames == 1
        with pytest.raises(AnonyNoiseError, match="bob.key_secret"):
            run_viewer(ViewerConfig(address, curve_keys=str(keys), client_name="bob",
                                    screenshot=str(out), timeout_s=15))
    assert_shows(read_png(out), PATTERN)


# --- 2. soak --------------------------------------------------------------------------------


class FakeSource:
    """A receiver stand-in with a new window at every snapshot (random events; the sensor
    size changes every 1,000 windows)."""

    def __init__(self, pattern=None, seed=0):
        self.pattern, self.rng, self.version = pattern, np.random.default_rng(seed), 0

    def snapshot(self, now=None):
        now = time.monotonic() if now is None else now
        self.version += 1
        if self.pattern is not None:
            w, h = self.pattern.width, self.pattern.height
            events = self.pattern.events(0)
        else:
            w, h = ((64, 48), (128, 128), (346, 260))[(self.version // 1000) % 3]
            n = int(self.rng.integers(0, 3000))
            events = make_events(np.arange(n), self.rng.integers(0, w, n),
                                 self.rng.integers(0, h, n), self.rng.integers(0, 2, n), w, h)
        header = WindowHeader(session="5" * 16, seq=self.version, t_start=0, t_end=WINDOW_US,
                              width=w, height=h, events=len(events), model=MODEL)
        window = ReceivedWindow(header, events, lost=0)
        return ReceiverState(window=window, received_at=now, version=self.version,
                             windows=self.version, events=0, lost=0, sessions=1,
                             windows_per_s=60.0, events_per_s=1e5, bad_messages=0,
                             last_error=None, started_at=0.0)


def test_soak_5000_updates_offscreen():
    app = qt_app()
    window = ViewerWindow(FakeSource(), "fake://", size=(400, 300))
    window.show()
    assert window.frames_drawn == 0  # drawn by ticks only (a one-frame run drew two)
    start = time.perf_counter()
    for i in range(5000):
        assert window.refresh()
        if i % 250 == 0:
            app.processEvents()
            window.grab()  # a real render now and then
    elapsed = time.perf_counter() - start
    assert window.frames_drawn == 5000
    assert window.picture_size in ((64, 48), (128, 128), (346, 260))
    window.close()
    print(f"5000 updates in {elapsed:.2f} s")


# --- 3. publisher restart with another sensor size ------------------------------------------


def test_the_viewer_follows_a_restarted_publisher_with_another_sensor(tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    receiver = LatestWindowReceiver(address).start()
    window = ViewerWindow(receiver, address, stale_s=0.5, size=(640, 520))
    window.show()
    try:
        with PatternPublisher(address, PATTERN, skip_every=5) as first:
            pump(window, lambda: window.session == first.session and window.frames_drawn > 10)
            assert window.picture_size == (64, 48)
            assert_shows(window.grab_rgb(), PATTERN)
            text = window.status_text()
            assert "sensor 64x48" in text and 'light_anon "test-model"' in text
            assert window.state.lost > 0 and "lost here" in text  # the skipped windows
        pump(window, lambda: WAITING in window.status_text())
        assert window.waiting.isVisible()
        with PatternPublisher(address, RESTART_PATTERN) as second:
            pump(window, lambda: window.session == second.session)
            pump(window, lambda: window.state.windows_per_s > 0 and
                 WAITING not in window.status_text())
            assert window.picture_size == (40, 30)
            assert not window.waiting.isVisible()
            assert "sensor 40x30" in window.status_text()
            assert_shows(window.grab_rgb(), RESTART_PATTERN)
            assert window.state.sessions == 2
    finally:
        window.close()
        receiver.stop()


# --- 4. silence -----------------------------------------------------------------------------


def test_waiting_for_stream_when_nothing_arrives(tmp_path):
    receiver = LatestWindowReceiver(f"ipc://{tmp_path}/nobody").start()
    window = ViewerWindow(receiver, "ipc://nobody", size=(320, 240))
    window.show()
    try:
        qt_app().processEvents()
        time.sleep(0.2)
        assert not window.refresh()
        assert window.status_text().startswith(WAITING)
        assert window.waiting.isVisible() and window.frames_drawn == 0
        rgb = window.grab_rgb()
        assert rgb.shape == (240, 320, 3)
    finally:
        window.close()
        receiver.stop()


def test_timeout_without_a_publisher_is_one_line_and_exit_2(tmp_path):
    with pytest.raises(AnonyNoiseError, match="no window from"):
        run_viewer(ViewerConfig(f"ipc://{tmp_path}/nobody", timeout_s=0.3))
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    done = cli(address, "--timeout", "0.5", "--screenshot", str(tmp_path / "x.png"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anonynoise-view: error: no window from")
    assert address in lines[0]
    assert time.monotonic() - start < 20
    assert not (tmp_path / "x.png").exists()


def test_the_default_address_is_the_streams():
    from stream.cli import DEFAULT_PUBLISH
    from viewer.cli import build_parser

    assert build_parser().parse_args([]).address == DEFAULT_PUBLISH == "tcp://127.0.0.1:5555"


@pytest.mark.parametrize("args, message", [
    (["--screenshot", "/no/such/folder/x.png", "--timeout", "1"], "no such folder"),
    (["--fps", "120"], "--fps must be between"),
    (["--curve-keys", "/no/such/keys"], "keys"),
])
def test_bad_arguments_are_one_line(args, message):
    done = cli("ipc:///tmp/anonynoise-view-none", *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert message in lines[-1] and (len(lines) == 1 or "usage:" in lines[0]), done.stderr


# --- the receiver, the side-by-side preview, the Qt binding ----------------------------------


def test_the_receiver_keeps_only_the_newest_window(tmp_path):
    address = f"ipc://{tmp_path}/burst"
    with LatestWindowReceiver(address) as receiver:
        with PatternPublisher(address, PATTERN, period_s=0.001) as pub:
            deadline = time.monotonic() + 10
            while receiver.snapshot().windows < 50:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            pub.stopping.set()
            pub.join(5)
            time.sleep(0.3)
            state = receiver.snapshot()
    assert state.window.header.seq == pub.sent - 1  # the newest one, nothing queued behind it
    assert state.version == state.windows and state.sessions == 1
    assert state.windows + state.lost <= pub.sent
    assert state.events == state.windows * len(PATTERN.events(0))


def test_the_receiver_counts_refused_messages_and_goes_on(tmp_path):
    address = f"ipc://{tmp_path}/bad"
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(address)
    try:
        with LatestWindowReceiver(address) as receiver:
            deadline = time.monotonic() + 10
            while receiver.snapshot().bad_messages == 0:
                assert time.monotonic() < deadline
                pub.send_multipart([b"window", b'{"protocol": "anonynoise-stream", '
                                               b'"version": 2}', b""])
                time.sleep(0.02)
            state = receiver.snapshot()
    finally:
        pub.close()
    assert state.window is None and "version 2" in state.last_error


def test_side_by_side_preview_shows_raw_next_to_anonymized():
    raw = PATTERN.events(0)
    swapped = Pattern(64, 48, on=PATTERN.off, off=PATTERN.on)  # stands in for "anonymized"
    view = preview_side_by_side(raw, swapped.events(0), 64, 48)
    assert isinstance(view, SideBySideView) and view.isVisible()
    qt_app().processEvents()
    rgb = view.grab_rgb()
    for side, pattern in (("raw", PATTERN), ("anonymized", swapped)):
        codes = pattern.expected()
        for x, y in ((10, 10), (45, 30), (0, 0), (63, 47), (30, 20)):
            col, row = view.sensor_to_widget(x, y, side)
            colour = (P.background, P.on, P.off)[codes[y, x]]
            assert tuple(rgb[int(row), int(col)]) == colour, (side, x, y)
    assert "raw" in view.status_text() and "never published" in view.status_text()
    assert preview_side_by_side(raw, raw, 64, 48, view=view) is view
    view.close()


def test_the_qt_binding_is_one_that_does_not_crash(monkeypatch):
    import PySide6

    assert tuple(int(v) for v in PySide6.__version__.split(".")[:2]) < (6, 12)
    check_qt_binding()
    monkeypatch.setattr(PySide6, "__version__", "6.12.0")
    if sys.version_info < (3, 12):
        with pytest.raises(AnonyNoiseError, match="PySide6-Essentials<6.12"):
            check_qt_binding()


def test_a_screenshot_run_gives_up_by_itself_when_no_stream_comes():
    from viewer.cli import SCREENSHOT_TIMEOUT_S, build_parser, screenshot_timeout

    parse = build_parser().parse_args
    assert screenshot_timeout(parse(["--screenshot", "x.png"])) == SCREENSHOT_TIMEOUT_S
    assert screenshot_timeout(parse(["--screenshot", "x.png", "--timeout", "5"])) == 5.0
    assert screenshot_timeout(parse([])) is None  # a person watching waits as long as they like
