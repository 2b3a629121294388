import json

import numpy as np
import pytest
import zmq

from anonynoise.events import make_events
from stream.protocol import (EVENT_DTYPE, ProtocolError, WindowHeader, decode_status,
                             decode_window, encode_status, encode_window, new_session_id,
                             window_events)


def window(n=5):
    rng = np.random.default_rng(0)
    ev = make_events(np.sort(rng.integers(1000, 2000, n)), rng.integers(0, 32, n),
                     rng.integers(0, 24, n), rng.integers(0, 2, n), 32, 24)
    header = WindowHeader(session=new_session_id(), seq=7, t_start=1000, t_end=2000, width=32,
                          height=24, events=n, model={"kind": "light_anon"},
                          dropped={"anonymization": 1})
    return header, ev


def test_a_window_survives_a_real_socket_unchanged():
    header, ev = window(1000)
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://protocol-test")
    b.connect("inproc://protocol-test")
    try:
        a.send_multipart(encode_window(header, ev), copy=False)
        got_header, events = decode_window(b.recv_multipart(copy=False))
    finally:
        a.close()
        b.close()
    assert got_header == header
    assert events.dtype == EVENT_DTYPE and EVENT_DTYPE.itemsize == 13
    back = window_events(got_header, events)
    for f in "txyp":
        assert np.array_equal(getattr(back, f), getattr(ev, f))
    assert (back.width, back.height) == (32, 24)


def test_the_header_is_plain_json_a_consumer_in_any_language_can_read():
    header, ev = window()
    frames = encode_window(header, ev)
    data = json.loads(frames[1])
    assert data["protocol"] == "anonynoise-stream" and data["version"] == 1
    assert data["dtype"] == [["t", "<i8"], ["x", "<i2"], ["y", "<i2"], ["p", "|u1"]]
    assert len(bytes(frames[2])) == 13 * len(ev)
    assert not any(k in data for k in ("serial", "camera", "name"))


def test_empty_windows_are_messages_too():
    header, _ = window()
    empty = make_events([], [], [], [], 32, 24)
    h = WindowHeader(**{**header.__dict__, "events": 0})
    got, events = decode_window(encode_window(h, empty))
    assert got.events == 0 and len(events) == 0


@pytest.mark.parametrize("mutate, message", [
    (lambda f: [f[0], b"not json", f[2]], "not JSON"),
    (lambda f: [f[0], f[1].replace(b'"version":1', b'"version":2'), f[2]], "version 2"),
    (lambda f: [f[0], f[1], bytes(f[2])[:-1]], "payload of"),
    (lambda f: [b"other", f[1], f[2]], "3 frames"),
    (lambda f: f[:2], "3 frames"),
    (lambda f: [f[0], f[1].replace(b'"seq":7', b'"seq":"7"'), f[2]], "seq is not"),
])
def test_malformed_messages_are_refused(mutate, message):
    header, ev = window()
    frames = encode_window(header, ev)
    with pytest.raises(ProtocolError, match=message):
        decode_window(mutate([frames[0], frames[1], bytes(frames[2])]))


def test_status_round_trip_and_refusal():
    frames = encode_status({"windows": 3, "events_in_per_s": 1.5e6})
    assert decode_status(frames)["windows"] == 3
    with pytest.raises(ProtocolError):
        decode_status([b"status", b'{"protocol": "x", "version": 1}'])
    assert new_session_id() != new_session_id()
