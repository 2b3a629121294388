"""The wire format of the anonymized stream (docs/protocol.md), version 1.

A window is one ZeroMQ multipart message of three frames:

    [b"window", header (UTF-8 JSON), events (packed little-endian records, 13 bytes each:
                                             t int64 µs, x int16, y int16, p uint8)]

and once a second the service sends `[b"status", JSON]`. Everything a consumer needs is in the
header; nothing in it identifies the camera. Encoding and decoding live here, apart from any
socket, so a consumer in another language has one place to read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import PACKED_DTYPE, EventBatch, from_structured, to_packed

PROTOCOL = "anonynoise-stream"
VERSION = 1
WINDOW_TOPIC = b"window"
STATUS_TOPIC = b"status"
EVENT_DTYPE = PACKED_DTYPE  # t <i8, x <i2, y <i2, p u1: 13 bytes per event, no padding


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


def decode_header(raw: bytes) -> WindowHeader:
    try:
        data = json.loads(bytes(raw))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"window header is not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("protocol") != PROTOCOL:
        raise ProtocolError("not an anonynoise-stream message")
    if data.get("version") != VERSION:
        raise ProtocolError(f"protocol version {data.get('version')} (this client reads "
                            f"version {VERSION})")
    try:
        header = WindowHeader(**data)
        for name in ("seq", "t_start", "t_end", "width", "height", "events"):
            if not isinstance(getattr(header, name), int):
                raise TypeError(f"{name} is not an integer")
    except TypeError as e:
        raise ProtocolError(f"malformed window header: {e}") from None
    if [list(d) for d in np.dtype([tuple(d) for d in header.dtype]).descr] != \
            [list(d) for d in EVENT_DTYPE.descr]:
        raise ProtocolError(f"unsupported event layout {header.dtype}")
    return header


def decode_window(frames) -> tuple[WindowHeader, np.ndarray]:
    """(header, structured events (t, x, y, p), a read-only view of the payload)."""
    frames = list(frames)
    if len(frames) != 3 or _bytes(frames[0]) != WINDOW_TOPIC:
        raise ProtocolError(f"a window has 3 frames starting with {WINDOW_TOPIC!r}, got "
                            f"{len(frames)}")
    header = decode_header(_bytes(frames[1]))
    buffer = frames[2].buffer if hasattr(frames[2], "buffer") else frames[2]
    if len(memoryview(buffer).cast("B")) != header.events * EVENT_DTYPE.itemsize:
        raise ProtocolError(f"payload of {len(memoryview(buffer).cast('B'))} bytes for "
                            f"{header.events} events")
    events = np.frombuffer(buffer, dtype=EVENT_DTYPE)
    return header, events


def window_events(header: WindowHeader, events: np.ndarray) -> EventBatch:
    """A decoded window as a validated EventBatch (copies)."""
    return from_structured(events, (header.width, header.height))


def encode_status(status: dict) -> list:
    return [STATUS_TOPIC, json.dumps({"protocol": PROTOCOL, "version": VERSION, **status},
                                     separators=(",", ":")).encode()]


def decode_status(frames) -> dict:
    frames = list(frames)
    if len(frames) != 2 or _bytes(frames[0]) != STATUS_TOPIC:
        raise ProtocolError("not a status message")
    try:
        data = json.loads(_bytes(frames[1]))
    except ValueError as e:
        raise ProtocolError(f"status is not JSON ({e})") from None
    if data.get("protocol") != PROTOCOL or data.get("version") != VERSION:
        raise ProtocolError("status of another protocol or version")
    return data


def _bytes(frame) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)
