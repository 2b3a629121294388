"""A Python client of the anonymized stream: an iterator of windows.

    from stream.client import StreamClient
    with StreamClient("tcp://127.0.0.1:5555") as client:
        for window in client:              # header, events (numpy), windows lost before it
            print(window.header.seq, len(window.events), window.lost)
            frames = window.tonic()        # tonic's structured dtype (x, y, t, p)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from anonynoise.events import TONIC_DTYPE, EventBatch
from stream.protocol import (STATUS_TOPIC, WINDOW_TOPIC, WindowHeader, check_address,
                             decode_status, decode_window, window_events)


@dataclass(frozen=True)
class ReceivedWindow:
    header: WindowHeader
    events: np.ndarray  # structured t, x, y, p (read-only view of the message)
    lost: int  # windows of this session missing between the previous one and this one

    def batch(self) -> EventBatch:
        return window_events(self.header, self.events)

    def tonic(self) -> np.ndarray:
        """The events in tonic's dtype (x, y, t, p) for tonic transforms."""
        out = np.empty(len(self.events), TONIC_DTYPE)
        for f in "xyt":
            out[f] = self.events[f]
        out["p"] = self.events["p"].astype(bool)
        return out


class StreamClient:
    """Subscribe to windows (and optionally status messages) of a running stream.

    timeout_s: give up waiting for the next message after this long (iteration ends);
    None waits forever. curve_keys: the folder made by `anonynoise-stream keys`, when the
    publisher requires CURVE.
    """

    def __init__(self, address: str = "tcp://127.0.0.1:5555", *, status: bool = False,
                 timeout_s: float | None = None, curve_keys: str | Path | None = None,
                 client_name: str = "client", hwm: int = 1000,
                 context: zmq.Context | None = None):
        check_address(address)
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.RCVHWM, hwm)
        self.socket.setsockopt(zmq.LINGER, 0)
        if curve_keys is not None:
            from stream.keys import client_keys

            public, secret, server = client_keys(curve_keys, client_name)
            self.socket.curve_publickey, self.socket.curve_secretkey = public, secret
            self.socket.curve_serverkey = server
        self.socket.setsockopt(zmq.SUBSCRIBE, WINDOW_TOPIC)
        if status:
            self.socket.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)
        self.socket.connect(address)
        self.timeout_ms = None if timeout_s is None else int(timeout_s * 1000)
        self.session: str | None = None
        self.expected = 0
        self.lost = 0
        self.received = 0
        self.statuses: list[dict] = []

    def receive(self) -> ReceivedWindow | None:
        """The next window, or None after the timeout."""
        while True:
            if self.timeout_ms is not None and not self.socket.poll(self.timeout_ms):
                return None
            frames = self.socket.recv_multipart(copy=False)
            if frames[0].bytes == STATUS_TOPIC:
                self.statuses.append(decode_status(frames))
                continue
            header, events = decode_window(frames)
            if header.session != self.session:  # a (re)started publisher: seq restarts
                self.session, self.expected = header.session, header.seq
            lost = max(0, header.seq - self.expected)
            self.expected = header.seq + 1
            self.lost += lost
            self.received += 1
            return ReceivedWindow(header, events, lost)

    def __iter__(self):
        while True:
            window = self.receive()
            if window is None:
                return
            yield window

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> "StreamClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
