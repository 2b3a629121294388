"""The viewer against a hostile publisher: a real ZeroMQ PUB socket on loopback sending malformed
messages (bad dtype, deeply nested JSON, a header that is a list, sensor sizes 0, -5, 100000,
events off the sensor) between valid windows. The receiver thread must stay alive, count them,
the window must show the count, and the valid windows after them must still be drawn.

(Named apart from tests/stream/test_hostile_publisher.py: the test folders are not packages,
and pytest refuses two test modules of one basename in one run.)"""

import json
import threading
import time

import numpy as np
import pytest
import zmq

from anonynoise.errors import AnonyNoiseError
from stream.protocol import (EVENT_DTYPE, MAX_SENSOR_PIXELS, MAX_SENSOR_SIDE, WindowHeader)
from viewer.app import ViewerConfig, run_viewer
from viewer.overlay import WAITING, overlay_text
from viewer.receiver import LatestWindowReceiver, ReceiverState
from viewer.render import render_events
from viewer.window import ViewerWindow, qt_app

SESSION = "0123456789abcdef"
W, H = 40, 30
WINDOW_US = 20_000


def header(seq=0, n=4, session=SESSION, **changes) -> bytes:
    t0 = seq * WINDOW_US
    data = json.loads(WindowHeader(session=session, seq=seq, t_start=t0, t_end=t0 + WINDOW_US,
                                   width=W, height=H, events=n,
                                   model={"kind": "light_anon", "name": "hostile"}).to_json())
    data.update(changes)
    return json.dumps(data).encode()


def records(seq=0, n=4, **fields) -> bytes:
    out = np.zeros(n, EVENT_DTYPE)
    out["t"] = seq * WINDOW_US + np.arange(n) * 10
    out["x"] = [5, 6, 30, 31][:n]
    out["y"] = [5, 5, 20, 21][:n]
    out["p"] = [1, 1, 0, 0][:n]
    for name, (i, value) in fields.items():
        out[name][i] = value
    return out.tobytes()


def valid(seq, session=SESSION) -> list[bytes]:
    return [b"window", header(seq, session=session), records(seq)]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


WIDTH_0 = [b"window", header(width=0), records()]
# What the issue saw kill the receiver thread or the window, and more of the same kind. Nothing
# here is large enough to hurt if a broken decoder let it through to the renderer.
MALFORMED = [
    [b"window", header(dtype=[[1, 2]]), records()],
    [b"window", header(dtype="<i8"), records()],
    [b"window", header(dtype=None), records()],
    [b"window", header(dtype=[["t", "<f8"], ["x", "<i2"], ["y", "<i2"], ["p", "|u1"]]),
     records()],
    [b"window", nested(100_000), records()],
    [b"window", nested(30_000), records()],
    [b"window", b"[1, 2, 3]", b""],
    [b"window", b"\xff\xfe\xc3(", records()],
    WIDTH_0,
    [b"window", header(width=-5), records()],
    [b"window", header(width=100_000), records()],
    [b"window", header(height=0), records()],
    [b"window", header(width=True), records()],
    [b"window", header(seq=-1), records()],
    [b"window", header(events=5), records()],
    [b"window", header(), records(x=(0, W))],
    [b"window", header(), records(y=(1, -1))],
    [b"window", header(), records(t=(3, 0))],
    [b"window", header()],
    [b"window", header(), records(), b"extra"],
]


class Hostile:
    """A PUB socket on a random free loopback port (used from the test's thread only)."""

    def __init__(self):
        self.socket = zmq.Context.instance().socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 10_000)
        self.socket.bind("tcp://127.0.0.1:*")
        self.address = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()

    def send(self, frames):
        self.socket.send_multipart(frames)

    def close(self):
        self.socket.close()


def wait_for(condition, pump=None, limit_s=10.0, what="condition"):
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if pump is not None:
            pump()
        time.sleep(0.01)


def test_the_viewer_survives_malformed_messages_and_shows_the_count():
    app = qt_app()
    pub = Hostile()
    receiver = LatestWindowReceiver(pub.address).start()
    window = ViewerWindow(receiver, pub.address, size=(640, 480))
    window.show()

    def pump():
        app.processEvents()
        window.refresh()

    try:
        # ZeroMQ's slow joiner: repeat one malformed message until the subscription is there
        def first_refused():
            pub.send(MALFORMED[0])
            return receiver.snapshot().bad_messages > 0

        wait_for(first_refused, pump, what="the subscription")
        time.sleep(0.3)  # any repeat still in flight arrives
        base = receiver.snapshot().bad_messages
        for frames in MALFORMED:
            pub.send(frames)
        wait_for(lambda: receiver.snapshot().bad_messages >= base + len(MALFORMED), pump,
                 what="the malformed messages")
        time.sleep(0.2)
        pump()
        state = receiver.snapshot()
        assert state.bad_messages == base + len(MALFORMED), state.last_error
        assert state.window is None and state.windows == 0 and state.failure is None
        assert receiver._thread.is_alive()
        text = window.status_text()
        assert text.startswith(WAITING) and "no valid window received yet" in text
        assert f"{state.bad_messages} malformed refused" in text, text
        assert window.frames_drawn == 0 and window.failure is None

        # valid windows after the bad ones are received and drawn; more bad ones between them
        for seq in range(5):
            pub.send(valid(seq))
            pub.send(MALFORMED[seq])
        bad = base + len(MALFORMED) + 5
        wait_for(lambda: window.state.windows == 5 and window.frames_drawn > 0
                 and window.state.window.header.seq == 4 and window.state.bad_messages >= bad,
                 pump, what="the valid windows")
        time.sleep(0.2)
        pump()
        state = receiver.snapshot()
        assert state.bad_messages == bad and state.windows == 5
        assert receiver._thread.is_alive() and window.failure is None
        assert window.picture_size == (W, H)
        text = window.status_text()
        assert f"sensor {W}x{H}" in text and f"{state.bad_messages} malformed refused" in text
        assert "seq 4" in text
    finally:
        window.close()
        receiver.stop()
        pub.close()
    assert not receiver._thread.is_alive()


def test_run_viewer_draws_the_valid_windows_between_malformed_ones(tmp_path):
    pub = Hostile()
    stop = threading.Event()
    sent = []

    def publish():  # the socket moves to this thread; the test's thread no longer uses it
        seq = 0
        end = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < end:
            for frames in MALFORMED:  # the bad ones first, then one valid window
                pub.send(frames)
            pub.send(valid(seq))
            sent.append(seq)
            seq += 1
            time.sleep(0.02)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    out = tmp_path / "shot.png"
    try:
        result = run_viewer(ViewerConfig(pub.address, screenshot=str(out), frames=3,
                                         timeout_s=10, size=(320, 240)))
    finally:
        stop.set()
        thread.join(5)
        pub.close()
    assert result.frames == 3 and result.windows >= 3 and out.exists()


def test_a_publisher_of_malformed_messages_only_is_named_as_such():
    pub = Hostile()
    stop = threading.Event()

    def publish():
        end = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < end:
            pub.send(WIDTH_0)
            time.sleep(0.01)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        with pytest.raises(AnonyNoiseError, match=r"malformed messages refused .*width"):
            run_viewer(ViewerConfig(pub.address, timeout_s=1.0, size=(320, 240)))
    finally:
        stop.set()
        thread.join(5)
        pub.close()


def test_a_bug_in_the_receiver_thread_stops_the_window_instead_of_freezing_it(tmp_path):
    receiver = LatestWindowReceiver(f"ipc://{tmp_path}/nobody")

    def broken():
        raise TypeError("a bug")

    receiver._client.receive = broken
    receiver.start()
    window = ViewerWindow(receiver, "ipc://nobody", size=(320, 240))
    try:
        wait_for(lambda: receiver.snapshot().failure is not None, limit_s=5, what="the failure")
        with pytest.raises(RuntimeError, match="receiver stopped: TypeError: a bug"):
            window.refresh()
    finally:
        window.close()
        receiver.stop()


@pytest.mark.parametrize("width, height", [(0, 48), (-5, 48), (100_000, 48),
                                           (100_000, 100_000), (MAX_SENSOR_SIDE + 1, 1),
                                           (MAX_SENSOR_SIDE, MAX_SENSOR_PIXELS // MAX_SENSOR_SIDE
                                            + 1), (True, 48), (48.0, 48)])
def test_the_renderer_refuses_sizes_the_protocol_refuses_before_allocating(width, height):
    events = np.zeros(0, EVENT_DTYPE)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="sensor"):
        render_events(events, width, height)
    assert time.perf_counter() - start < 0.1  # refused, not allocated and then refused


def test_the_overlay_shows_refused_messages_before_and_after_the_first_window():
    base = dict(window=None, received_at=None, version=0, windows=0, events=0, lost=0,
                sessions=0, windows_per_s=0.0, events_per_s=0.0, bad_messages=7,
                last_error="width is not an integer in 1..16384: 0\nsecond line " + "x" * 200,
                started_at=0.0)
    text = overlay_text(ReceiverState(**base), 1.0, "tcp://127.0.0.1:5555")
    lines = text.splitlines()
    assert lines[0].startswith(WAITING) and len(lines) == 3
    assert lines[2].startswith("7 malformed refused (last: width is not an integer")
    assert len(lines[2]) < 100
