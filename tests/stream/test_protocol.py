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


# --- what a consumer accepts (the hostile cases are in test_hostile_publisher.py) -----------


def frames_of(header, events):
    frames = encode_window(header, events)
    return [frames[0], frames[1], bytes(frames[2])]


def with_header(frames, **changes):
    data = json.loads(frames[1])
    data.update(changes)
    return [frames[0], json.dumps(data).encode(), frames[2]]


def test_the_size_bounds_are_public_and_the_largest_sensor_passes():
    from stream.protocol import MAX_SENSOR_PIXELS, MAX_SENSOR_SIDE

    assert MAX_SENSOR_SIDE == 16384 and MAX_SENSOR_PIXELS == 1 << 26
    header, _ = window()
    empty = np.zeros(0, EVENT_DTYPE)
    big = WindowHeader(**{**header.__dict__, "events": 0, "width": MAX_SENSOR_SIDE,
                          "height": MAX_SENSOR_PIXELS // MAX_SENSOR_SIDE})
    assert decode_window(frames_of(big, empty))[0] == big
    for width, height in ((MAX_SENSOR_SIDE + 1, 1), (1, MAX_SENSOR_SIDE + 1),
                          (MAX_SENSOR_SIDE, MAX_SENSOR_PIXELS // MAX_SENSOR_SIDE + 1)):
        with pytest.raises(ProtocolError, match="width|height|pixels"):
            decode_window(with_header(frames_of(big, empty), width=width, height=height))


def test_keys_a_newer_publisher_adds_are_tolerated():
    header, ev = window()
    frames = with_header(frames_of(header, ev),
                         dropped={"anonymization": 1, "queue": 0, "burst_events": 0,
                                  "sink": 0, "lossless": 2, "late_events": 3},
                         model={"kind": "light_anon", "weakened": True,
                                "filters": {"spec": "warp", "warp": {"grid": [4, 4]}}},
                         some_future_key=[1, {"a": None}])
    got, events = decode_window(frames)
    assert got.dropped["lossless"] == 2 and got.dropped["late_events"] == 3
    assert got.model["weakened"] is True and len(events) == len(ev)


@pytest.mark.parametrize("field", ["seq", "t_start", "width", "height", "version"])
def test_booleans_are_not_integers(field):
    header, ev = window()
    with pytest.raises(ProtocolError, match=f"{field} |version True"):
        decode_window(with_header(frames_of(header, ev), **{field: True}))


def test_frames_may_be_bytes_memoryviews_or_zmq_frames():
    header, ev = window()
    for wrap in (bytes, memoryview, zmq.Frame):
        got, events = decode_window([wrap(f) for f in frames_of(header, ev)])
        assert got == header and len(events) == len(ev)
    with pytest.raises(ProtocolError, match="byte frames"):
        decode_window([b"window", {"not": "bytes"}, b""])


def test_reasons_are_one_line_even_for_hostile_text():
    header, ev = window()
    frames = with_header(frames_of(header, ev), session="line one\nline two" + "x" * 500)
    with pytest.raises(ProtocolError) as info:
        decode_window(frames)
    assert "\n" not in str(info.value) and len(str(info.value)) < 200


def test_status_must_be_an_object_of_this_protocol():
    for raw in (b"[1, 2]", b"3", b"null", b'"status"', b"[" * 100_000 + b"]" * 100_000,
                b'{"protocol": "anonynoise-stream", "version": true}'):
        with pytest.raises(ProtocolError):
            decode_status([b"status", raw])
