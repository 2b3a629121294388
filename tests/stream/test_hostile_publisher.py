"""A hostile publisher: a real ZeroMQ PUB socket on loopback sending every kind of malformed
message between valid windows. The client must get exactly the valid windows, count every
malformed message as refused, and never raise."""

import json
import logging
import threading
import time

import numpy as np
import pytest
import zmq

from stream.client import StreamClient
from stream.protocol import (EVENT_DTYPE, MAX_SENSOR_PIXELS, MAX_SENSOR_SIDE, ProtocolError,
                             WindowHeader, decode_status, decode_window, encode_status)

SESSION = "0123456789abcdef"
PROBE_SESSION = "f" * 16
W, H = 32, 24
WINDOW_US = 1000
MODEL = {"kind": "light_anon", "name": "hostile-test", "sha256": "0123456789abcdef",
         "representation": "voxel", "filters": {"spec": "none"}}


# --- messages --------------------------------------------------------------------------------


def header(index=0, n=5, **changes) -> dict:
    """The valid header of window `index` (seq = index) as a dict, as the reference encoder
    writes it, with changes to its keys; a change to DELETE removes the key."""
    t0 = index * WINDOW_US
    data = json.loads(WindowHeader(
        session=SESSION, seq=index, t_start=t0, t_end=t0 + WINDOW_US, width=W, height=H,
        events=n, model=dict(MODEL),
        dropped={"anonymization": 0, "queue": 0, "burst_events": 0}).to_json())
    data.update(changes)
    return {k: v for k, v in data.items() if v is not DELETE}


DELETE = object()


def records(seq=0, n=5, **fields) -> np.ndarray:
    """n valid packed events of window seq; fields={"x": (index, value)} breaks one."""
    out = np.zeros(n, EVENT_DTYPE)
    out["t"] = seq * WINDOW_US + np.arange(n) * (WINDOW_US // max(n, 1))
    out["x"] = np.arange(n) % W
    out["y"] = (np.arange(n) * 7) % H
    out["p"] = np.arange(n) % 2
    for name, (i, value) in fields.items():
        out[name][i] = value
    return out


def window(head: dict, events=None, text=None) -> list[bytes]:
    events = records() if events is None else events  # window 0's five events by default
    raw = json.dumps(head).encode() if text is None else text
    return [b"window", raw, events.tobytes() if isinstance(events, np.ndarray) else events]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_object(depth: int):
    value = 0
    for _ in range(depth):
        value = {"a": value}
    return value


def status(**fields) -> list[bytes]:
    return encode_status({"session": SESSION, "windows": 1, **fields})


def malformed_messages() -> list[tuple[str, list]]:
    """(name, frames) of every malformed message the consumers must refuse."""
    good = records(0, 5)
    valid = json.dumps(header(), separators=(",", ":")).encode()
    dtype = header()["dtype"]
    cases = [
        # the event layout
        ("dtype missing", window(header(dtype=DELETE))),
        ("dtype a string", window(header(dtype="<i8"))),
        ("dtype null", window(header(dtype=None))),
        ("dtype an object", window(header(dtype={"t": "<i8"}))),
        ("dtype of numbers", window(header(dtype=[[1, 2]]))),
        ("dtype of one-element pairs", window(header(dtype=[["t"]]))),
        ("dtype of three-element entries", window(header(dtype=[["t", "<i8", 3]]))),
        ("dtype float t", window(header(dtype=[["t", "<f8"]] + dtype[1:]))),
        ("dtype big-endian", window(header(dtype=[["t", ">i8"]] + dtype[1:]))),
        ("dtype with an extra field", window(header(dtype=dtype + [["q", "<i4"]]))),
        ("dtype fields swapped", window(header(dtype=[dtype[1], dtype[0]] + dtype[2:]))),
        ("dtype nonsense type", window(header(dtype=[["t", "not-a-type"]] + dtype[1:]))),
        # the JSON itself
        ("header nested 100000 deep", window({}, good, nested(100_000))),
        ("header nested 30000 deep (under the size limit)", window({}, good, nested(30_000))),
        ("model nested 40 deep", window(header(model=deep_object(40)))),
        ("header a list", window({}, b"", b"[1, 2, 3]")),
        ("header a string", window({}, b"", b'"window"')),
        ("header null", window({}, b"", b"null")),
        ("header over 64 KiB", window(header(model={"kind": "x" * 70_000}))),
        ("header not JSON", window({}, good, b"{not json")),
        ("header with NaN", window({}, good, valid.replace(b'"seq":0', b'"seq":NaN'))),
        ("header not UTF-8", window({}, good, b"\xff\xfe\x00\xc3(" + valid)),
        ("header in UTF-16", window({}, good, json.dumps(header()).encode("utf-16"))),
        ("header empty", window({}, good, b"")),
        # identity
        ("another protocol", window(header(protocol="other"))),
        ("protocol missing", window(header(protocol=DELETE))),
        ("version 2", window(header(version=2))),
        ("version true", window(header(version=True))),
        ("version 1.0", window(header(version=1.0))),
        ("session empty", window(header(session=""))),
        ("session of 65 characters", window(header(session="a" * 65))),
        ("session a number", window(header(session=12345))),
        ("session missing", window(header(session=DELETE))),
        # sizes
        ("width 0", window(header(width=0))),
        ("width -5", window(header(width=-5))),
        ("width 100000", window(header(width=100_000))),
        ("height 0", window(header(height=0))),
        ("width and height 100000", window(header(width=100_000, height=100_000))),
        ("sensor over MAX_SENSOR_PIXELS",
         window(header(width=MAX_SENSOR_SIDE, height=MAX_SENSOR_PIXELS // MAX_SENSOR_SIDE + 1))),
        ("width a string", window(header(width="32"))),
        ("width 32.0", window(header(width=32.0))),
        # integers
        ("seq negative", window(header(seq=-1))),
        ("seq true", window(header(seq=True))),
        ("seq a string", window(header(seq="0"))),
        ("seq over int64", window(header(seq=2 ** 63))),
        ("seq with 5000 digits", window({}, good, valid.replace(b'"seq":0', b'"seq":' +
                                                                    b"9" * 5000))),
        ("width true", window(header(width=True))),
        ("height true", window(header(height=True))),
        ("events false for an empty payload", window(header(events=False), b"")),
        ("t_start true", window(header(t_start=True, t_end=2))),
        ("t_start after t_end", window(header(t_start=10, t_end=5), b"")),
        ("t_end missing", window(header(t_end=DELETE))),
        ("absolute_time 1", window(header(absolute_time=1))),
        ("absolute_time null", window(header(absolute_time=None))),
        # model and dropped
        ("model a list", window(header(model=["light_anon"]))),
        ("dropped a list", window(header(dropped=[0, 0]))),
        ("dropped negative", window(header(dropped={"queue": -1}))),
        ("dropped true", window(header(dropped={"queue": True}))),
        ("dropped a string", window(header(dropped={"lossless": "3"}))),
        ("dropped a float", window(header(dropped={"late_events": 1.5}))),
        # the payload against the header
        ("events count over the payload", window(header(events=6), good)),
        ("events count under the payload", window(header(events=4), good)),
        ("events negative", window(header(events=-1), b"")),
        ("payload not whole records", window(header(), good.tobytes() + b"\x00")),
        ("events a string", window(header(events="5"), good)),
        # the events against the header
        ("x == width", window(header(), records(0, 5, x=(2, W)))),
        ("x negative", window(header(), records(0, 5, x=(0, -1)))),
        ("y == height", window(header(), records(0, 5, y=(4, H)))),
        ("y negative", window(header(), records(0, 5, y=(3, -7)))),
        ("polarity 2", window(header(), records(0, 5, p=(1, 2)))),
        ("t unsorted", window(header(), records(0, 5, t=(2, 900)))),
        ("t before t_start", window(header(1), records(1, 5, t=(0, 999)))),
        ("t at t_end", window(header(), records(0, 5, t=(4, WINDOW_US)))),
        # framing
        ("one frame", [b"window"]),
        ("two frames", [b"window", valid]),
        ("four frames", window(header()) + [b"extra"]),
        ("another topic with the window prefix", [b"windows", valid, good.tobytes()]),
        # status messages
        ("status a list", [b"status", b"[1, 2]"]),
        ("status a number", [b"status", b"3"]),
        ("status null", [b"status", b"null"]),
        ("status not JSON", [b"status", b"{"]),
        ("status not UTF-8", [b"status", b"\xc3\x28"]),
        ("status nested 100000 deep", [b"status", nested(100_000)]),
        ("status nested 40 deep", [b"status", json.dumps(
            {"protocol": "anonynoise-stream", "version": 1, "x": deep_object(40)}).encode()]),
        ("status over 64 KiB", status(note="x" * 70_000)),
        ("status version true", [b"status", b'{"protocol": "anonynoise-stream", '
                                            b'"version": true}']),
        ("status of another protocol", [b"status", b'{"protocol": "x", "version": 1}']),
        ("status with a bad session", status(session=["x"])),
        ("status with three frames", status() + [b"extra"]),
        ("status with one frame", [b"status"]),
    ]
    names = [name for name, _ in cases]
    assert len(names) == len(set(names))
    assert b'"seq":0' in valid  # the replacements above change something
    return cases


def valid_windows(count: int) -> list[list]:
    """Valid windows of one session, seq 0.., some of them as a newer publisher writes them
    (more drop counters, more model keys, an unknown top-level key) and some empty."""
    out = []
    for seq in range(count):
        changes = {}
        if seq % 4 == 1:  # keys a newer publisher adds must be tolerated
            changes["dropped"] = {"anonymization": 0, "queue": 2, "burst_events": 0,
                                  "sink": 0, "lossless": 1, "late_events": 7}
            changes["model"] = {**MODEL, "weakened": True, "filters": {
                "spec": "warp+slots", "warp": {"strength": 0.5, "grid": [4, 4]}}}
            changes["future_field"] = {"anything": [1, 2, 3]}
        n = 0 if seq % 4 == 3 else 5
        out.append(window(header(seq, n, **changes), records(seq, n)))
    return out


# --- decoding, without a socket --------------------------------------------------------------


def decode(frames):
    """What StreamClient does with a message: status by its exact topic, the rest as windows."""
    if frames and frames[0] == b"status":
        return decode_status(frames)
    return decode_window(frames)


@pytest.mark.parametrize("name, frames", malformed_messages(),
                         ids=[name for name, _ in malformed_messages()])
def test_every_malformed_message_is_a_one_line_protocol_error(name, frames):
    with pytest.raises(ProtocolError) as info:
        decode(frames)
    text = str(info.value)
    assert text and "\n" not in text and len(text) < 400, text


def test_the_valid_windows_decode():
    for frames in valid_windows(8):
        head, events = decode_window(frames)
        assert len(events) == head.events
    assert decode_window(valid_windows(2)[1])[0].dropped["late_events"] == 7
    assert decode_status(status())["windows"] == 1


# --- a real hostile publisher ---------------------------------------------------------------


@pytest.fixture
def hostile():
    """A PUB socket on a random free loopback port, and a StreamClient subscribed to it
    (windows and statuses), both past ZeroMQ's slow-joiner phase."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.bind("tcp://127.0.0.1:*")
    address = pub.getsockopt(zmq.LAST_ENDPOINT).decode()
    client = StreamClient(address, status=True, timeout_s=0.2, hwm=100_000, context=context)
    try:
        deadline = time.monotonic() + 10
        seq = 0
        while True:  # probe windows until the subscription has arrived
            assert time.monotonic() < deadline, "the subscriber never connected"
            pub.send_multipart(window(header(seq, session=PROBE_SESSION), records(seq)))
            seq += 1
            if client.receive() is not None:
                break
        while client.receive() is not None:  # the probes still in flight
            pass
        assert client.malformed == 0
        yield pub, client
    finally:
        client.close()
        pub.close()
        context.term()


def receive_all(client, expected: int, limit_s: float = 10.0) -> list:
    got = []
    deadline = time.monotonic() + limit_s
    while len(got) < expected and time.monotonic() < deadline:
        w = client.receive()
        if w is not None:
            got.append(w)
    extra = client.receive()  # nothing else may come
    assert extra is None, extra.header
    return got


def test_the_client_gets_exactly_the_valid_windows_and_counts_the_rest(hostile, caplog):
    pub, client = hostile
    bad = malformed_messages()
    good = valid_windows(len(bad) + 1)
    statuses = 0
    with caplog.at_level(logging.DEBUG, logger="stream.client"):
        for i, (_, frames) in enumerate(bad):
            pub.send_multipart(good[i])
            pub.send_multipart(frames)
            if i % 10 == 0:
                pub.send_multipart(status(windows=i))
                statuses += 1
        pub.send_multipart(good[-1])
        got = receive_all(client, len(good))
    assert [w.header.seq for w in got] == list(range(len(good)))
    assert {w.header.session for w in got} == {SESSION}
    assert client.malformed == len(bad), (client.malformed, len(bad), client.last_error)
    assert client.lost == 0
    assert [s["windows"] for s in client.statuses[-statuses:]] == list(range(0, len(bad), 10))
    # the first reason is logged as a warning, the others only at debug level
    warnings = [r for r in caplog.records
                if r.name == "stream.client" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and client.first_error in warnings[0].getMessage()
    assert client.first_error != client.last_error
    # the valid windows arrive intact: newer keys kept, events as sent
    assert got[1].header.dropped["lossless"] == 1 and got[1].header.model["weakened"] is True
    for w in got:
        expected = records(w.header.seq, w.header.events)
        assert np.array_equal(w.events, expected)
        assert len(w.batch()) == w.header.events


def test_a_flood_of_malformed_messages_does_not_hold_receive_past_its_timeout(hostile):
    pub, client = hostile
    done = threading.Event()
    context = client.context

    def flood():  # a second PUB socket in its own thread, on its own port
        sock = context.socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:*")
        flood_address.append(sock.getsockopt(zmq.LAST_ENDPOINT).decode())
        bound.set()
        end = time.monotonic() + 5
        try:
            while not done.is_set() and time.monotonic() < end:
                sock.send_multipart(window(header(width=0)))
                time.sleep(0.0005)
        finally:
            sock.close()

    flood_address, bound = [], threading.Event()
    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    try:
        assert bound.wait(5)
        client.socket.connect(flood_address[0])
        deadline = time.monotonic() + 5
        while client.malformed < 50:
            assert time.monotonic() < deadline, client.malformed
            client.receive()
        start = time.monotonic()
        assert client.receive() is None  # the flood goes on, but no valid window comes
        assert time.monotonic() - start < 1.0
        pub.send_multipart(window(header(7), records(7)))
        w = None
        deadline = time.monotonic() + 5
        while w is None and time.monotonic() < deadline:
            w = client.receive()
        assert w is not None and w.header.seq == 7
    finally:
        done.set()
        thread.join(5)
    assert "width" in client.last_error
