"""ZeroMQ publishing of anonymized windows (docs/protocol.md): a live and a lossless endpoint.

    live      PUB, small high-water mark: a slow subscriber loses whole windows (it sees gaps in
              seq) and never slows the service or anyone else.
    lossless  XPUB with XPUB_NODROP: sending waits for the slowest subscriber, for recorders of
              replays; with a live source the service cannot wait, so a window that cannot be
              queued is dropped and counted instead.

Both bind to loopback unless told otherwise; any other address needs CURVE (an allow-list of
client public keys, `keys.py`) or an explicit `insecure`. All socket use stays in the thread
that calls the methods (ZeroMQ sockets are not thread-safe).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import zmq

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from stream.protocol import WindowHeader, check_address, encode_status, encode_window

log = logging.getLogger(__name__)
LIVE_HWM = 8  # windows queued per live subscriber before it starts losing them
LOSSLESS_HWM = 64
LIVE_LINGER_MS = 1000
# How long close() waits for the lossless subscribers to take the windows still queued for
# them: the last of a replay are still in ZeroMQ's queue when the source ends
LOSSLESS_LINGER_MS = 10_000


def is_loopback(address: str) -> bool:
    """True for tcp://127.x / [::1] / localhost, ipc:// and inproc:// addresses."""
    parsed = urlparse(address)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    if parsed.scheme != "tcp":
        raise AnonyNoiseError(f"{address}: unsupported address (tcp://HOST:PORT, ipc://PATH)")
    host = (parsed.hostname or "").strip("[]")
    if host == "localhost":
        return True
    if host in ("*", ""):
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


class Publisher:
    """Binds the endpoints and sends windows and status messages."""

    def __init__(self, live: str | None = "tcp://127.0.0.1:5555", lossless: str | None = None,
                 *, curve_keys: str | Path | None = None, insecure: bool = False,
                 context: zmq.Context | None = None):
        addresses = [check_address(a) for a in (live, lossless) if a]
        exposed = [a for a in addresses if not is_loopback(a)]
        if exposed and curve_keys is None and not insecure:
            raise AnonyNoiseError(f"{exposed[0]} is reachable from other machines: give "
                                  "curve_keys (a key folder from stream.keys.make_keys) or "
                                  "insecure=True", parameter="curve_keys")
        # its own context unless given one: closing a socket only hands its queue to ZeroMQ's
        # I/O thread, and a process that exits before that thread has sent it loses the last
        # windows; terminating the context (close()) waits for them, up to the sockets' linger
        self.own_context = context is None
        self.context = context or zmq.Context()
        self.auth = None
        self.tail_unconfirmed = False  # close() gave up on a lossless subscriber's last windows
        self.sockets: list[zmq.Socket] = []
        self.live = self.lossless = None
        self.sent = 0
        self.lossless_dropped = 0
        try:
            server_secret = None
            if curve_keys is not None:
                from stream.keys import start_authenticator

                self.auth, server_secret = start_authenticator(self.context, Path(curve_keys))
            if live:
                self.live = self._bind(zmq.PUB, live, LIVE_HWM, LIVE_LINGER_MS, server_secret)
            if lossless:
                self.lossless = self._bind(zmq.XPUB, lossless, LOSSLESS_HWM, LOSSLESS_LINGER_MS,
                                           server_secret)
                self.lossless.setsockopt(zmq.XPUB_NODROP, 1)
        except BaseException:
            self.close()
            raise

    def _bind(self, kind: int, address: str, hwm: int, linger_ms: int,
              server_secret) -> zmq.Socket:
        sock = self.context.socket(kind)
        self.sockets.append(sock)
        sock.setsockopt(zmq.IPV6, 1)  # off by default in ZeroMQ: tcp://[::1] would not bind
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.LINGER, linger_ms)
        if server_secret is not None:
            public, secret = server_secret
            sock.curve_server = True
            sock.curve_publickey = public
            sock.curve_secretkey = secret
        try:
            sock.bind(address)
        except zmq.ZMQError as e:
            raise AnonyNoiseError(f"cannot publish on {address}: {e.strerror}") from None
        return sock

    def wait_for_lossless_subscriber(self, timeout_s: float | None = None) -> bool:
        """Block until a subscription arrives on the lossless endpoint (a replay waits for its
        recorder before the first window, so the recorder misses nothing)."""
        if self.lossless is None:
            return True
        poller = zmq.Poller()
        poller.register(self.lossless, zmq.POLLIN)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if dict(poller.poll(None if left is None else int(left * 1000))).get(self.lossless):
                message = self.lossless.recv()
                if message[:1] == b"\x01":  # a subscription (0x00 is an unsubscription)
                    return True
            elif deadline is not None and time.monotonic() >= deadline:
                return False

    def publish(self, header: WindowHeader, events: EventBatch | np.ndarray, *,
                wait: bool) -> None:
        """Send one window (a batch or its packed records) to every endpoint. `wait`: the
        lossless endpoint may block (a replay); otherwise a full lossless queue drops the
        window there and counts it."""
        frames = encode_window(header, events)
        if self.live is not None:
            self.live.send_multipart(frames, copy=False)  # PUB never blocks: drops at the HWM
        if self.lossless is not None:
            self._drain_subscriptions()
            if wait:
                self.lossless.send_multipart(frames, copy=False)
            else:
                try:
                    self.lossless.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    self.lossless_dropped += 1
        self.sent += 1

    def _drain_subscriptions(self) -> None:
        """XPUB delivers (un)subscriptions as messages; read them so they do not pile up."""
        while True:
            try:
                self.lossless.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return

    def status(self, status: dict) -> None:
        frames = encode_status(status)
        for sock in (self.live, self.lossless):
            if sock is not None:
                try:
                    sock.send_multipart(frames, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass  # status is advisory: never wait for it

    def close(self) -> None:
        """Close the endpoints, waiting (up to their linger) until the windows still queued
        have gone to the subscribers; a lossless subscriber that does not take them in
        LOSSLESS_LINGER_MS sets tail_unconfirmed and is logged."""
        lossless = self.lossless is not None
        for sock in self.sockets:
            sock.close()
        self.sockets = []
        self.live = self.lossless = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.own_context and not self.context.closed:
            started = time.monotonic()
            self.context.term()  # every socket is closed: it waits only for their queues
            if lossless and time.monotonic() - started >= 0.9 * LOSSLESS_LINGER_MS / 1e3:
                self.tail_unconfirmed = True
                log.error("the lossless subscriber did not take the last windows within "
                          "%g s of the end: up to %d of them are lost",
                          LOSSLESS_LINGER_MS / 1e3, LOSSLESS_HWM)
