"""Sinks of the anonymized stream, off the hot path: each has its own thread and a bounded
queue (numpy -> dv EventStore costs about 0.4 s per million events).

    RecorderSink    an .aedat4 file (written under a temporary name, complete once closed)
    DVNetworkSink   dv-processing's NetworkWriter, in a process of its own: the DV software
                    and dv.io.NetworkReader clients can watch the anonymized events
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from anonynoise.io import Aedat4Writer, to_event_store
from stream.protocol import WindowHeader

log = logging.getLogger(__name__)
_CLOSE = object()


class Sink:
    """A consumer thread fed through a bounded queue."""

    name = "sink"

    def __init__(self, queue_windows: int = 64):
        self.queue: queue.Queue = queue.Queue(maxsize=queue_windows)
        self.error: BaseException | None = None
        self.windows = 0
        self.events = 0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def put(self, header: WindowHeader, events: EventBatch, *, wait: bool) -> bool:
        """Queue a window; False if it was dropped (a live source never waits for a sink)."""
        if self.error is not None:
            raise AnonyNoiseError(f"{self.name} failed: {self.error}")
        try:
            self.queue.put((header, events), block=wait, timeout=None)
            return True
        except queue.Full:
            return False

    def _run(self) -> None:
        try:
            while True:
                item = self.queue.get()
                if item is _CLOSE:
                    break
                header, events = item
                self.write(header, events)
                self.windows += 1
                self.events += len(events)
        except BaseException as e:  # noqa: BLE001 - reported by put() and close()
            self.error = e
            log.error("%s failed: %s", self.name, e)
            while True:  # keep draining so the pipeline is never blocked by a dead sink
                if self.queue.get() is _CLOSE:
                    break
        finally:
            self.finish(ok=self.error is None)

    def write(self, header: WindowHeader, events: EventBatch) -> None:
        raise NotImplementedError

    def finish(self, ok: bool) -> None:
        pass

    def close(self) -> None:
        """Write what is queued, then finish (the recording is complete when this returns)."""
        self.queue.put(_CLOSE)
        self._thread.join()
        if self.error is not None:
            raise AnonyNoiseError(f"{self.name} failed: {self.error}")


class RecorderSink(Sink):
    """Record the anonymized stream to .aedat4 (camera name "AnonyNoise", no serial)."""

    name = "recorder"

    def __init__(self, path: str | Path, width: int, height: int, queue_windows: int = 16):
        self.path = Path(path)
        if self.path.suffix.lower() != ".aedat4":
            raise AnonyNoiseError(f"{self.path}: --record writes .aedat4 files")
        self.writer = Aedat4Writer(self.path, (width, height))
        super().__init__(queue_windows)

    def write(self, header: WindowHeader, events: EventBatch) -> None:
        self.writer.write(events)

    def finish(self, ok: bool) -> None:
        if ok:
            self.writer.close()
        else:
            self.writer.abort()


class DVNetworkSink:
    """Serve the anonymized events with dv-processing's NetworkWriter (TCP, DV's protocol).

    It runs in a process of its own: the numpy -> EventStore conversion stays off the
    service's interpreter, and dv-processing's NetworkWriter cannot be destroyed once a client
    has connected (its destructor waits forever), so the process ends with os._exit instead.
    Loopback by default; another address needs TLS (certificate chain, private key and the CA
    that signs the clients' certificates) unless `insecure`."""

    name = "dv-output"

    def __init__(self, port: int, width: int, height: int, host: str = "127.0.0.1", *,
                 tls: tuple[str, str, str] | None = None, insecure: bool = False,
                 queue_windows: int = 64, start_timeout_s: float = 30.0):
        import multiprocessing

        from stream.publisher import is_loopback

        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 address
        if not is_loopback(f"tcp://{bracketed}:{int(port)}") and tls is None and not insecure:
            raise AnonyNoiseError(f"--dv-port on {host} is reachable from other machines: give "
                                  "--dv-tls CERT KEY CA or say --insecure")
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue(maxsize=queue_windows)
        ready = ctx.Queue()
        self.process = ctx.Process(target=_serve_dv, name="dv-output", daemon=True,
                                   args=(host, int(port), width, height, tls, self.queue, ready))
        self.process.start()
        try:
            status = ready.get(timeout=start_timeout_s)
        except queue.Empty:
            status = "the DV output process did not start"
        if status != "ready":
            self._kill()
            raise AnonyNoiseError(f"cannot serve DV output on {host}:{port}: {status}")
        self.windows = 0
        self.error = None

    def put(self, header: WindowHeader, events: EventBatch, *, wait: bool) -> bool:
        if not self.process.is_alive():
            raise AnonyNoiseError("the DV output process ended")
        try:
            # a DV client that stops reading stalls the NetworkWriter: even a replay waits at
            # most a second for it, then the window is dropped (and counted) for this output
            self.queue.put((events.t, events.x, events.y, events.p), block=wait,
                           timeout=1.0 if wait else None)
        except queue.Full:
            return False
        self.windows += 1
        return True

    def close(self) -> None:
        """Send what is queued, then end the process."""
        if self.process.is_alive():
            try:
                self.queue.put(None, timeout=5)
            except queue.Full:
                pass
            self.process.join(timeout=10)
        self._kill()

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        # what is still buffered for a process that is gone must not hold up our exit
        self.queue.cancel_join_thread()
        self.queue.close()


def _serve_dv(host, port, width, height, tls, windows, ready) -> None:
    """The DV output process: a NetworkWriter fed from the queue; ends with os._exit."""
    import os
    import signal

    # Ctrl-C reaches the whole process group: the service decides when this output ends
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    try:
        import dv_processing as dv

        from anonynoise.events import EventBatch as Batch

        stream = dv.io.Stream.EventStream(0, "events", "AnonyNoise", (width, height))
        if tls is not None:
            server = dv.io.NetworkWriter(host, port, stream, *(dv.Path(p) for p in tls))
        else:
            server = dv.io.NetworkWriter(host, port, stream)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        ready.put(str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__)
        os._exit(1)
    ready.put("ready")
    parent = os.getppid()
    while True:
        try:
            item = windows.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the service is gone (killed): so is its output
                os._exit(1)
            continue
        if item is None:
            break
        t, x, y, p = item
        if len(t):
            server.writeEvents(to_event_store(Batch.trusted(t, x, y, p, width, height)))
    time.sleep(0.2)  # let the last packets leave
    os._exit(0)  # never destroy the NetworkWriter (see the class docstring)
