"""A Python client of the anonymized stream: an iterator of windows.

    from stream.client import StreamClient
    with StreamClient("tcp://127.0.0.1:5555") as client:
        for window in client:              # header, events (numpy), windows lost before it
            print(window.header.seq, len(window.events), window.lost)
            frames = window.tonic()        # tonic's structured dtype (x, y, t, p)
        print(client.malformed, client.last_error)   # messages refused as malformed

A malformed message (anything decode_window or decode_status refuses) is counted in
`malformed`, its reason kept in `last_error` (the first one is also logged), and skipped: a
broken or hostile publisher cannot stop the iteration or raise anything else in it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from anonynoise.events import TONIC_DTYPE, EventBatch
from stream.protocol import (STATUS_TOPIC, WINDOW_TOPIC, ProtocolError, WindowHeader,
                             check_address, decode_status, decode_window, window_events)

log = logging.getLogger(__name__)
# The largest frame a subscriber accepts: 20 M events of 13 bytes, ten times the service's
# default burst cap for one window.
MAX_FRAME_BYTES = 20_000_000 * 13
MAX_STATUSES = 1000  # status messages kept in StreamClient.statuses (the newest)


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
    None waits forever; it bounds the whole call, so a stream of malformed messages or
    statuses cannot keep receive() from returning. curve_keys: the folder made by
    `anonynoise-stream keys`, when the publisher requires CURVE.

    malformed: messages refused by the protocol decoder and skipped; first_error and
    last_error: why the first and the latest were refused.
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
        self.socket.setsockopt(zmq.IPV6, 1)  # tcp://[::1] connects (ZeroMQ's default: IPv4 only)
        # ZeroMQ allocates a frame before anyone can look at it: a hostile publisher's frame is
        # capped at the largest window a valid header could describe, not at memory
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
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
        self.statuses: list[dict] = []  # the newest MAX_STATUSES
        self.malformed = 0
        self.first_error: str | None = None
        self.last_error: str | None = None

    def receive(self) -> ReceivedWindow | None:
        """The next valid window, or None when none came within the timeout. Statuses are
        collected on the way; malformed messages are counted and skipped."""
        deadline = None if self.timeout_ms is None else time.monotonic() + self.timeout_ms / 1e3
        handled = False
        while True:
            if deadline is not None:
                left_ms = math.ceil((deadline - time.monotonic()) * 1e3)
                if (left_ms <= 0 and handled) or not self.socket.poll(max(left_ms, 0)):
                    return None
            frames = self.socket.recv_multipart(copy=False)
            handled = True
            try:
                if len(frames[0]) == len(STATUS_TOPIC) and frames[0].bytes == STATUS_TOPIC:
                    self._keep_status(decode_status(frames))
                    continue
                header, events = decode_window(frames)
            except ProtocolError as e:
                self._refused(e)
                continue
            if header.session != self.session:  # a (re)started publisher: seq restarts
                self.session, self.expected = header.session, header.seq
            lost = max(0, header.seq - self.expected)
            self.expected = header.seq + 1
            self.lost += lost
            self.received += 1
            return ReceivedWindow(header, events, lost)

    def _keep_status(self, status: dict) -> None:
        self.statuses.append(status)
        if len(self.statuses) > MAX_STATUSES:  # a flood of statuses must not fill memory
            del self.statuses[:-MAX_STATUSES]

    def _refused(self, error: ProtocolError) -> None:
        self.malformed += 1
        self.last_error = str(error)
        if self.first_error is None:
            self.first_error = self.last_error
            log.warning("refused a malformed message (further ones are counted in "
                        "StreamClient.malformed, not logged): %s", error)
        else:
            log.debug("refused a malformed message: %s", error)

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
