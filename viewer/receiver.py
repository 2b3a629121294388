"""The viewer's receiving side: a StreamClient in a background thread that keeps only the
latest window and a few counters (no Qt here).

The thread drains the socket as fast as windows arrive and overwrites one slot, so a slow
display never builds a backlog: the GUI draws whatever is newest when it gets to it. Windows
the display never drew are simply replaced; windows the socket lost show up as `lost`.
Malformed messages never reach the GUI: the client refuses them (stream.protocol checks every
message, sizes included, before anything is allocated from it), and the thread counts them in
`bad_messages` and goes on receiving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import zmq

from anonynoise.errors import AnonyNoiseError
from stream.client import ReceivedWindow, StreamClient

log = logging.getLogger(__name__)
DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"  # the stream's default live endpoint
RATE_HORIZON_S = 1.0  # windows/s and events/s are averaged over the last second
POLL_S = 0.1  # how often the thread looks at its stop flag while the stream is quiet


@dataclass(frozen=True)
class ReceiverState:
    """A consistent copy of what the receiver knows, taken under its lock."""

    window: ReceivedWindow | None  # the newest window, None before the first
    received_at: float | None  # time.monotonic() when it arrived
    version: int  # +1 per window received: the GUI redraws when it changes
    windows: int  # windows received since the viewer started
    events: int  # events in them
    lost: int  # windows missing from seq (all sessions)
    sessions: int  # publisher sessions seen (a restart makes a new one)
    windows_per_s: float
    events_per_s: float
    bad_messages: int  # malformed messages refused by the protocol decoder (and skipped)
    last_error: str | None  # why the last one was refused
    started_at: float
    failure: BaseException | None = None  # what stopped the receiving thread (a bug), if any


def rates(arrivals, now: float, started_at: float,
          horizon_s: float = RATE_HORIZON_S) -> tuple[float, float]:
    """(windows/s, events/s) from (arrival time, events) pairs over the last horizon_s."""
    span = min(horizon_s, max(now - started_at, 1e-3))
    recent = [n for t, n in arrivals if now - t <= span]
    return len(recent) / span, sum(recent) / span


class LatestWindowReceiver:
    """Runs a StreamClient in a daemon thread; `snapshot()` gives the newest window and the
    counters. Thread-safe: the thread writes under a lock, readers get frozen copies."""

    def __init__(self, address: str = DEFAULT_ADDRESS, *, curve_keys: str | Path | None = None,
                 client_name: str | None = None, context: zmq.Context | None = None):
        self.address = address
        kwargs = {"curve_keys": curve_keys, "timeout_s": POLL_S, "context": context}
        if client_name is not None:
            kwargs["client_name"] = client_name
        try:
            # Built here so a bad address or key folder fails at once, in the caller's thread;
            # from start() on, only the receiving thread touches the socket.
            self._client = StreamClient(address, **kwargs)
        except zmq.ZMQError as e:
            raise AnonyNoiseError(f"cannot subscribe to {address}: {e.strerror}") from None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="viewer-receiver", daemon=True)
        self._started_at = time.monotonic()
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=10_000)
        self._window: ReceivedWindow | None = None
        self._received_at: float | None = None
        self._version = self._windows = self._events = self._lost = self._sessions = 0
        self._bad = 0
        self._last_error: str | None = None
        self._failure: BaseException | None = None
        self._session: str | None = None

    def start(self) -> "LatestWindowReceiver":
        self._started_at = time.monotonic()
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        elif not self._thread.ident:  # never started: the socket is still ours to close
            self._client.close()

    def __enter__(self) -> "LatestWindowReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                # None after POLL_S without a valid window; malformed messages are refused,
                # counted and skipped by the client (stream.protocol checks every one)
                window = self._client.receive()
                now = time.monotonic()
                with self._lock:
                    self._bad, self._last_error = self._client.malformed, self._client.last_error
                if window is not None:
                    self._store(window, now)
        except zmq.ZMQError as e:  # the context was terminated under us: nothing to show
            log.error("viewer receiver stopped: %s", e)
        except Exception as e:  # noqa: BLE001 - a bug here: say so instead of freezing
            log.exception("viewer receiver failed")
            with self._lock:
                self._failure = e
        finally:
            self._client.close()

    def _store(self, window: ReceivedWindow, now: float) -> None:
        n = len(window.events)
        with self._lock:
            if window.header.session != self._session:
                self._session = window.header.session
                self._sessions += 1
            self._window, self._received_at = window, now
            self._version += 1
            self._windows += 1
            self._events += n
            self._lost += window.lost
            self._arrivals.append((now, n))
            while self._arrivals and now - self._arrivals[0][0] > RATE_HORIZON_S:
                self._arrivals.popleft()

    def snapshot(self, now: float | None = None) -> ReceiverState:
        now = time.monotonic() if now is None else now
        with self._lock:
            arrivals = list(self._arrivals)
            state = dict(window=self._window, received_at=self._received_at,
                         version=self._version, windows=self._windows, events=self._events,
                         lost=self._lost, sessions=self._sessions, bad_messages=self._bad,
                         last_error=self._last_error, failure=self._failure)
        per_s = rates(arrivals, now, self._started_at)
        return ReceiverState(**state, windows_per_s=per_s[0], events_per_s=per_s[1],
                             started_at=self._started_at)
