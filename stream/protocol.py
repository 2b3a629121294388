"""The wire format of the anonymized stream (docs/protocol.md), version 1.

A window is one ZeroMQ multipart message of three frames:

    [b"window", header (UTF-8 JSON), events (packed little-endian records, 13 bytes each:
                                             t int64 µs, x int16, y int16, p uint8)]

and once a second the service sends `[b"status", JSON]`. Everything a consumer needs is in the
header; nothing in it identifies the camera. Encoding and decoding live here, apart from any
socket, so a consumer in another language has one place to read.

Decoding trusts nothing: decode_window and decode_status check every message (sizes bounded
before parsing or allocating, each header field's type and range, every event against the
header) and raise a one-line ProtocolError for anything else, whatever the bytes were.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import (MAX_SENSOR_SIDE, PACKED_DTYPE, EventBatch, from_structured,
                               to_packed)

PROTOCOL = "anonynoise-stream"
VERSION = 1
WINDOW_TOPIC = b"window"
STATUS_TOPIC = b"status"
EVENT_DTYPE = PACKED_DTYPE  # t <i8, x <i2, y <i2, p u1: 13 bytes per event, no padding
# the header's `dtype`, exactly: numpy's notation of EVENT_DTYPE
WIRE_DTYPE = [["t", "<i8"], ["x", "<i2"], ["y", "<i2"], ["p", "|u1"]]

# What a consumer accepts, checked before it allocates anything from a message: a sensor of at
# most MAX_SENSOR_SIDE pixels a side and MAX_SENSOR_PIXELS in all (a viewer draws one picture
# of that size), headers and statuses of at most 64 KiB of JSON nested at most 32 levels.
MAX_SENSOR_PIXELS = 1 << 26
MAX_HEADER_BYTES = 64 * 1024
MAX_STATUS_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_SESSION_CHARS = 64  # the publisher's sessions are 16 hex digits


def check_address(address: str) -> str:
    """The address, or a one-line AnonyNoiseError for a tcp:// one without a usable port:
    ZeroMQ would take port 99999 modulo 65536 and listen (or connect) somewhere else."""
    if address.startswith("tcp://"):
        port = address.rsplit(":", 1)[-1] if address.count(":") > 1 else ""
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise AnonyNoiseError(f"{address}: the port must be 1 to 65535 (or * for any free "
                                  "one), as in tcp://127.0.0.1:5555")
    return address


class ProtocolError(AnonyNoiseError):
    """A message that is not a window or status of this protocol version."""


def new_session_id() -> str:
    """A random id per publisher start, so a restart is not mistaken for lost windows."""
    return os.urandom(8).hex()


@dataclass(frozen=True)
class WindowHeader:
    """What a window message says about itself (all plain JSON types)."""

    session: str
    seq: int  # index of the window in the session: a gap is a window the consumer lost
    t_start: int  # µs; [t_start, t_end), relative to the stream start unless absolute_time
    t_end: int
    width: int
    height: int
    events: int
    model: dict = field(default_factory=dict)  # kind, name, sha256 prefix, representation
    dropped: dict = field(default_factory=dict)  # the service's own drop counters so far
    absolute_time: bool = False
    protocol: str = PROTOCOL
    version: int = VERSION
    dtype: list = field(default_factory=lambda: [list(d) for d in EVENT_DTYPE.descr])

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()


def packed_payload(events: EventBatch | np.ndarray) -> np.ndarray:
    """A window's events as the wire's records: a batch is packed, packed records (from
    anonynoise.events.to_packed) are taken as they are."""
    if isinstance(events, EventBatch):
        return to_packed(events)
    if not isinstance(events, np.ndarray) or events.dtype != EVENT_DTYPE or events.ndim != 1:
        raise TypeError(f"expected an EventBatch or {EVENT_DTYPE} records")
    return events


def encode_window(header: WindowHeader, events: EventBatch | np.ndarray) -> list:
    """The three frames of a window (the payload as a buffer: send with copy=False). `events`:
    a batch, or its records already packed (packed_payload)."""
    payload = packed_payload(events)
    if len(payload) != header.events:
        raise ValueError(f"header says {header.events} events, the batch has {len(payload)}")
    return [WINDOW_TOPIC, header.to_json(), memoryview(payload).cast("B")]


def decode_header(raw) -> WindowHeader:
    """A window's header frame as a WindowHeader, or a one-line ProtocolError (see
    validate_header for the rules)."""
    return validate_header(_parse_object(raw, "window header", MAX_HEADER_BYTES))


def validate_header(data) -> WindowHeader:
    """Check a parsed header against the protocol and build its WindowHeader. Every field must
    be there, of its type and in its range; unknown keys are ignored (a newer publisher may add
    some), as are new keys inside `model` and `dropped`."""
    if not isinstance(data, dict):
        raise ProtocolError(f"window header is a JSON {_json_type(data)}, not an object")
    _check_identity(data, "window header")
    missing = [name for name in _HEADER_FIELDS if name not in data]
    if missing:
        raise ProtocolError(f"window header lacks {', '.join(missing)}")
    _check_session(data["session"])
    _int(data, "seq", 0, _INT64_MAX)
    t_start = _int(data, "t_start", _INT64_MIN, _INT64_MAX)
    t_end = _int(data, "t_end", _INT64_MIN, _INT64_MAX)
    if t_start > t_end:
        raise ProtocolError(f"t_start {t_start} is after t_end {t_end}")
    width = _int(data, "width", 1, MAX_SENSOR_SIDE)
    height = _int(data, "height", 1, MAX_SENSOR_SIDE)
    if width * height > MAX_SENSOR_PIXELS:
        raise ProtocolError(f"sensor {width}x{height} has more than {MAX_SENSOR_PIXELS} pixels")
    _int(data, "events", 0, _INT64_MAX)
    if type(data["absolute_time"]) is not bool:
        raise ProtocolError(f"absolute_time is not true or false: {_short(data['absolute_time'])}")
    if data["dtype"] != WIRE_DTYPE:
        raise ProtocolError(f"unsupported event layout {_short(data['dtype'])} (expected "
                            f"{json.dumps(WIRE_DTYPE)})")
    if not isinstance(data["model"], dict):
        raise ProtocolError(f"model is not a JSON object: {_short(data['model'])}")
    dropped = data["dropped"]
    if not isinstance(dropped, dict):
        raise ProtocolError(f"dropped is not a JSON object: {_short(dropped)}")
    for key in dropped:
        _int(dropped, key, 0, _INT64_MAX, f"dropped.{_clip(key, 40)}")
    return WindowHeader(**{name: data[name] for name in _HEADER_FIELDS})


def decode_window(frames) -> tuple[WindowHeader, np.ndarray]:
    """(header, structured events (t, x, y, p), a read-only view of the payload), or a one-line
    ProtocolError for anything that is not a valid window of this protocol version: this is
    where everything a consumer receives is checked, before anything is allocated from it."""
    frames = _frame_list(frames, 3, WINDOW_TOPIC, "a window")
    header = decode_header(frames[1])
    payload = frames[2]
    if payload.nbytes != header.events * EVENT_DTYPE.itemsize:
        raise ProtocolError(f"payload of {payload.nbytes} bytes for {header.events} events "
                            f"({EVENT_DTYPE.itemsize} bytes each)")
    events = np.frombuffer(payload, dtype=EVENT_DTYPE)
    check_events(header, events)
    return header, events


def check_events(header: WindowHeader, events: np.ndarray) -> None:
    """ProtocolError unless every event is on the sensor (0 <= x < width, 0 <= y < height),
    has polarity 0 or 1, lies in [t_start, t_end) and the events are sorted by t. Vectorised:
    a few passes over the payload, no Python loop per event."""
    if len(events) == 0:
        return
    t = events["t"]
    for name, limit in (("x", header.width), ("y", header.height)):
        # negative coordinates become >= 32768 as uint16: one comparison covers both ends
        if int(events[name].view(np.uint16).max()) >= limit:
            bad = events[name].view(np.uint16) >= limit
            i = int(np.flatnonzero(bad)[0])
            raise ProtocolError(f"event {i} at (x={events['x'][i]}, y={events['y'][i]}) lies "
                                f"outside the {header.width}x{header.height} sensor")
    if int(events["p"].max()) > 1:
        i = int(np.flatnonzero(events["p"] > 1)[0])
        raise ProtocolError(f"event {i} has polarity {events['p'][i]} (0 or 1)")
    if len(t) > 1:
        decreasing = t[1:] < t[:-1]
        if decreasing.any():
            i = int(np.flatnonzero(decreasing)[0]) + 1
            raise ProtocolError(f"events are not sorted by t: event {i} at {t[i]} µs after "
                                f"{t[i - 1]} µs")
    if t[0] < header.t_start or t[-1] >= header.t_end:  # sorted: the ends decide
        i = 0 if t[0] < header.t_start else len(t) - 1
        raise ProtocolError(f"event {i} at {t[i]} µs lies outside the window "
                            f"[{header.t_start}, {header.t_end})")


def window_events(header: WindowHeader, events: np.ndarray) -> EventBatch:
    """A decoded window as a validated EventBatch (copies)."""
    return from_structured(events, (header.width, header.height))


def encode_status(status: dict) -> list:
    return [STATUS_TOPIC, json.dumps({"protocol": PROTOCOL, "version": VERSION, **status},
                                     separators=(",", ":")).encode()]


def decode_status(frames) -> dict:
    """A status message's JSON object, or a one-line ProtocolError: two frames, a UTF-8 JSON
    object of at most MAX_STATUS_BYTES and MAX_JSON_DEPTH levels, of this protocol and
    version. The metrics inside are the service's own and free-form."""
    frames = _frame_list(frames, 2, STATUS_TOPIC, "a status")
    data = _parse_object(frames[1], "status", MAX_STATUS_BYTES)
    _check_identity(data, "status")
    if "session" in data:
        _check_session(data["session"])
    return data


# --- the checks decode_window and decode_status share ----------------------------------------

_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)
_HEADER_FIELDS = tuple(f.name for f in fields(WindowHeader))


def _frame_list(frames, count: int, topic: bytes, what: str) -> list[memoryview]:
    """The frames as byte memoryviews (no copies), after checking their number and topic."""
    try:
        frames = list(frames)
        views = [_view(f) for f in frames]
    except (TypeError, ValueError, BufferError):
        raise ProtocolError(f"{what} is a list of byte frames") from None
    if len(views) != count:
        raise ProtocolError(f"{what} has {count} frames starting with {topic!r}, got "
                            f"{len(views)} frames")
    first = bytes(views[0][:len(topic) + 1])
    if first != topic:
        raise ProtocolError(f"{what} has {count} frames starting with {topic!r}, this one "
                            f"starts with {_short(first, 20)}")
    return views


def _view(frame) -> memoryview:
    """A frame (zmq.Frame, bytes, memoryview, numpy array) as a flat memoryview of bytes."""
    view = memoryview(frame.buffer if hasattr(frame, "buffer") else frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _parse_object(raw, what: str, limit: int) -> dict:
    """A frame's UTF-8 JSON object, its size bounded before parsing and its depth after."""
    view = raw if isinstance(raw, memoryview) else _view(raw)
    if view.nbytes > limit:
        raise ProtocolError(f"{what} of {view.nbytes} bytes is over the limit of {limit}")
    try:
        data = json.loads(bytes(view).decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError as e:
        raise ProtocolError(f"{what} is not UTF-8 ({e.reason} at byte {e.start})") from None
    except RecursionError:
        raise ProtocolError(f"{what} is nested too deeply") from None
    except ValueError as e:
        raise ProtocolError(f"{what} is not JSON ({_clip(str(e), 120)})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{what} is a JSON {_json_type(data)}, not an object")
    _check_depth(data, what)
    return data


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _check_depth(data, what: str) -> None:
    """ProtocolError when objects and lists nest more than MAX_JSON_DEPTH levels (no
    recursion: the walk itself cannot overflow)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise ProtocolError(f"{what} nests more than {MAX_JSON_DEPTH} levels")
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))


def _check_identity(data: dict, what: str) -> None:
    if data.get("protocol") != PROTOCOL:
        raise ProtocolError(f"{what} is not an anonynoise-stream message")
    version = data.get("version")
    if type(version) is not int or version != VERSION:
        raise ProtocolError(f"protocol version {_short(version)} (this client reads version "
                            f"{VERSION})")


def _check_session(session) -> None:
    # The publisher writes 16 hex digits; a consumer only compares sessions and shows their
    # start, so any short string will do (tests and other publishers use names like "s").
    if not isinstance(session, str) or not 0 < len(session) <= MAX_SESSION_CHARS:
        raise ProtocolError(f"session is not a string of 1 to {MAX_SESSION_CHARS} "
                            f"characters: {_short(session)}")


def _int(data: dict, name: str, lo: int, hi: int, label: str | None = None) -> int:
    """data[name] if it is a JSON integer (true and false are not) in lo..hi."""
    value = data[name]
    if type(value) is not int or not lo <= value <= hi:
        if hi < _INT64_MAX:
            wanted = f"an integer in {lo}..{hi}"
        elif lo > _INT64_MIN:
            wanted = f"an int64 >= {lo}"
        else:
            wanted = "an int64"
        raise ProtocolError(f"{label or name} is not {wanted}: {_short(value)}")
    return value


def _json_type(value) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _short(value, limit: int = 60) -> str:
    """repr of a value from the wire, cut to `limit` characters for a one-line reason."""
    return _clip(repr(value), limit)


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
