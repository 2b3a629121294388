"""Sinks of the anonymized stream, off the hot path: each runs in a process of its own, fed
through a bounded queue, so its work never holds the service's interpreter.

    RecorderSink    an .aedat4 file (written under a temporary name, complete once closed)
    DVNetworkSink   dv-processing's NetworkWriter: the DV software and dv.io.NetworkReader
                    clients can watch the anonymized events
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import time
from pathlib import Path

import numpy as np

from anonynoise.errors import AnonyNoiseError, first_line
from anonynoise.events import EventBatch
from stream.protocol import WindowHeader, packed_payload


class ProcessSink:
    """A consumer process fed windows through a bounded queue.

    Windows go over a ZeroMQ PUSH -> PULL pair on an ipc:// socket in a private folder,
    zero-copy on our side: sending never needs this interpreter's lock, so a busy service
    does not starve its sinks (a multiprocessing.Queue pickles in a thread that does). The
    child reports one line on a status queue: "ready" once it can take windows (anything else
    is why it cannot), then "done" or the error that stopped it. A child whose service is gone
    (killed) finishes on its own; Ctrl-C is the service's to handle, not the child's."""

    name = "sink"
    put_timeout_s: float | None = None  # how long a replay waits for a full queue (None: ever)

    def __init__(self, serve, args: tuple, queue_windows: int, start_timeout_s: float = 30.0):
        import zmq

        self._folder = tempfile.mkdtemp(prefix="anonynoise-sink-")  # mode 0700: ours only
        address = f"ipc://{self._folder}/windows"
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, max(1, queue_windows // 2))  # and as many there
        self._socket.setsockopt(zmq.LINGER, 0)
        # we connect and the child binds: a connecting socket queues from the start, so no
        # window is refused while the child's connection is still being made
        self._socket.connect(address)
        ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._status = ctx.Queue()
        self.process = ctx.Process(target=_run_child, name=self.name, daemon=True,
                                   args=(serve, args, address, max(1, queue_windows // 2),
                                         self._status))
        self.process.start()
        try:
            status = self._status.get(timeout=start_timeout_s)
        except queue.Empty:
            status = f"the {self.name} process did not start"
        if status != "ready":
            self._kill()
            raise AnonyNoiseError(self.describe_start_error(status))
        self.windows = 0
        self.error: str | None = None

    def describe_start_error(self, status: str) -> str:
        return f"{self.name}: {status}"

    def _check(self) -> None:
        if self.error is None:
            try:
                self.error = self._status.get_nowait()
            except queue.Empty:
                if not self.process.is_alive():
                    self.error = "its process ended"
        if self.error is not None:
            raise AnonyNoiseError(f"{self.name} failed: {self.error}")

    def _send(self, parts: list, timeout_s: float | None) -> bool:
        """Send one message, waiting up to timeout_s (None: as long as the child lives)."""
        import zmq

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return True
            except zmq.Again:
                pass
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            self._socket.poll(int(left * 1000) + 1, zmq.POLLOUT)
            self._check()  # a child that failed or died never frees the queue

    def put(self, header: WindowHeader, events: EventBatch | np.ndarray, *, wait: bool) -> bool:
        """Queue a window (a batch or its packed records, as the publisher sends them); False
        if it was dropped (a live source never waits for a sink)."""
        self._check()
        parts = [b"w", packed_payload(events)]
        if not self._send(parts, self.put_timeout_s if wait else 0.0):
            return False
        self.windows += 1
        return True

    def close(self, timeout_s: float = 120.0) -> None:
        """Hand over what is queued and wait for the child to finish with it. An error that
        put() has raised already is not raised again."""
        status = None
        if self.error is None and self.process.is_alive():
            try:
                if self._send([b"end"], timeout_s):
                    status = self._status.get(timeout=timeout_s)
                else:
                    status = f"the {self.name} process did not take its last windows"
            except queue.Empty:
                status = f"the {self.name} process did not finish in {timeout_s:g} s"
            except AnonyNoiseError:
                status = self.error  # it failed while we waited: not reported yet
            self.process.join(timeout=10)
        self._kill()
        if status not in (None, "done"):
            raise AnonyNoiseError(f"{self.name} failed: {status}")

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._socket.close(linger=0)
        self._context.term()
        shutil.rmtree(self._folder, ignore_errors=True)


def _run_child(serve, args, address, queue_windows, status) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the service decides when its sinks end
    serve(*args, _windows(address, queue_windows), status)
    _exit(status)


def _exit(status) -> None:
    """End the child once its last status line has reached the service, skipping the
    interpreter's teardown (half a second, and destructors that may never return)."""
    status.close()
    status.join_thread()
    os._exit(0)


def _windows(address: str, queue_windows: int):
    """The windows' packed records (PACKED_DTYPE, read-only) the service sends, until it
    says it is done or is gone."""
    import zmq

    from anonynoise.events import PACKED_DTYPE

    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.setsockopt(zmq.RCVHWM, queue_windows)
    socket.bind(address)
    parent = os.getppid()
    while True:
        if not socket.poll(1000):
            if os.getppid() != parent:  # the service was killed: finish what we have
                return
            continue
        parts = socket.recv_multipart(copy=False)
        if parts[0].bytes != b"w":
            return
        yield np.frombuffer(parts[1].buffer, PACKED_DTYPE)


class RecorderSink(ProcessSink):
    """Record the anonymized stream to .aedat4 (camera name "AnonyNoise", no serial)."""

    name = "recorder"

    def __init__(self, path: str | Path, width: int, height: int, queue_windows: int = 16):
        self.path = Path(path)
        if self.path.suffix.lower() != ".aedat4":
            raise AnonyNoiseError(f"{self.path}: --record writes .aedat4 files")
        super().__init__(_record, (str(self.path), int(width), int(height)), queue_windows)

    def describe_start_error(self, status: str) -> str:
        return status  # the writer's own one line names the file


def _record(path, width, height, windows, status) -> None:
    """The recorder process. A write error drops the partial file (an existing file at the path
    is left as it was) and keeps draining, so the service is never blocked by it."""
    from anonynoise.io import Aedat4Writer

    try:
        writer = Aedat4Writer(path, (width, height))
    except AnonyNoiseError as e:
        status.put(str(e))
        return
    status.put("ready")
    try:
        for records in windows:
            writer.write_packed(records)
        writer.close()  # also when the service was killed: keep what was recorded
        status.put("done")
    except Exception as e:  # noqa: BLE001 - reported to the service as one line
        writer.abort()
        status.put(first_line(e))
        for _ in windows:
            pass


class DVNetworkSink(ProcessSink):
    """Serve the anonymized events with dv-processing's NetworkWriter (TCP, DV's protocol).

    dv-processing's NetworkWriter cannot be destroyed once a client has connected (its
    destructor waits forever), so its process ends with os._exit. Loopback by default; another
    address needs TLS (certificate chain, private key and the CA that signs the clients'
    certificates) unless `insecure`. A DV client that stops reading stalls the NetworkWriter:
    even a replay waits at most a second for it, then the window is dropped (and counted)."""

    name = "dv-output"
    put_timeout_s = 1.0

    def __init__(self, port: int, width: int, height: int, host: str = "127.0.0.1", *,
                 tls: tuple[str, str, str] | None = None, insecure: bool = False,
                 queue_windows: int = 64, start_timeout_s: float = 30.0):
        from stream.publisher import is_loopback

        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 address
        if not is_loopback(f"tcp://{bracketed}:{int(port)}") and tls is None and not insecure:
            raise AnonyNoiseError(f"--dv-port on {host} is reachable from other machines: give "
                                  "--dv-tls CERT KEY CA or say --insecure")
        self.host, self.port = host, int(port)
        super().__init__(_serve_dv, (host, int(port), width, height, tls), queue_windows,
                         start_timeout_s)

    def describe_start_error(self, status: str) -> str:
        # dv-processing's message goes on with boost's source location ("bind: Address
        # already in use [system:98 at /vcpkg/.../reactive_socket_service.hpp:162 in ...")
        return f"cannot serve DV output on {self.host}:{self.port}: {status.split(' [system:')[0]}"


def _serve_dv(host, port, width, height, tls, windows, status) -> None:
    """The DV output process: a NetworkWriter fed with the windows (its process ends with
    os._exit, see the class docstring)."""
    try:
        import dv_processing as dv

        from anonynoise.io import to_event_store

        stream = dv.io.Stream.EventStream(0, "events", "AnonyNoise", (width, height))
        if tls is not None:
            server = dv.io.NetworkWriter(host, port, stream, *(dv.Path(p) for p in tls))
        else:
            server = dv.io.NetworkWriter(host, port, stream)
    except Exception as e:  # noqa: BLE001 - reported to the service as one line
        status.put(first_line(e, 160))
        return
    status.put("ready")
    for records in windows:
        # no client: nothing to send, and building an EventStore (one event at a time) would
        # take a core from the stream for nothing (a client that joins gets what follows)
        if len(records) and server.getClientCount() > 0:
            server.writeEvents(to_event_store(EventBatch.trusted(
                records["t"], records["x"], records["y"], records["p"], width, height)))
    time.sleep(0.2)  # let the last packets leave
    status.put("done")
    _exit(status)  # here, while `server` lives: its destructor would wait forever
