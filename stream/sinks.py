"""Sinks of the anonymized stream, off the hot path: each runs in a process of its own, fed
through a bounded queue, so its work never holds the service's interpreter.

    RecorderSink    an .aedat4 file (written under a temporary name, moved into place once
                    complete; a run that recorded no window leaves an existing file as it was)
    DVNetworkSink   dv-processing's NetworkWriter: the DV software and dv.io.NetworkReader
                    clients can watch the anonymized events

A sink's process dies with the service, however the service ends (SIGKILL included): it asks
the kernel for a signal when its parent goes (PR_SET_PDEATHSIG), checks right after that its
parent is still the service (the service may have died before), and also watches its parent
while it waits for windows. The processes are plain `python -c` children (subprocess), not
multiprocessing ones: no resource tracker process, no named semaphores to leak.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from anonynoise.errors import AnonyNoiseError, first_line
from anonynoise.events import EventBatch
from stream.protocol import WindowHeader, packed_payload

# The folder holding the `stream` package, for the children's sys.path: they import the very
# code the service runs, wherever it was started from.
_ROOT = str(Path(__file__).resolve().parents[1])
_PR_SET_PDEATHSIG = 1
# The signal a child gets when the thread that started it ends (Linux's "parent" for
# PR_SET_PDEATHSIG): a child that finds its parent process still there ignores it.
_PARENT_GONE_SIGNAL = signal.SIGUSR1
_ENDED = "\0ended"  # ChildProcess.read_status: the child closed its status pipe (it is gone)

# The first thing a child runs, before any import that takes time: ignore Ctrl-C (the service
# decides when its sinks end), die with the service (then also remove the service's private
# folder, still empty this early), and stop at once if the service is already gone. Until
# _child_main takes over, SIGTERM and SIGHUP end the child at once: it has made nothing yet.
_BOOT = f"""\
import os, signal, sys
parent, folder = int(sys.argv[1]), sys.argv[2]
def stop(signum, frame):
    if signum == {int(_PARENT_GONE_SIGNAL)} and os.getppid() == parent:
        return
    if folder and os.getppid() != parent:
        try:
            os.rmdir(folder)
        except OSError:
            pass
    os._exit(0)
signal.signal(signal.SIGINT, signal.SIG_IGN)
for signum in (signal.SIGTERM, signal.SIGHUP, {int(_PARENT_GONE_SIGNAL)}):
    signal.signal(signum, stop)
try:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl({_PR_SET_PDEATHSIG}, {int(_PARENT_GONE_SIGNAL)}, 0, 0, 0)
except (OSError, AttributeError):
    pass  # not Linux: the child still watches its parent while it waits
if os.getppid() != parent:
    stop(0, None)
sys.path.insert(0, sys.argv[3])
from stream.sinks import _child_main
_child_main(parent, folder, sys.argv[4])
"""

# Every sink process started and not yet ended (the service's early-signal handler ends them).
_LIVE: set = set()


class ChildProcess:
    """A `python -c` child running _child_main(spec), with a pipe for its one-line reports."""

    def __init__(self, spec: dict, folder: str = ""):
        """`folder`: the service's private folder for this child, which the child removes if
        the service dies."""
        read, write = os.pipe()
        try:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(os.getpid()), folder, _ROOT,
                 json.dumps({**spec, "status_fd": write})],
                stdin=subprocess.DEVNULL, pass_fds=(write,))
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)  # the child's end: once the child is gone, reading gives EOF
        self.pid = self.popen.pid
        self._fd: int | None = read
        self._buffer = b""

    def read_status(self, timeout_s: float | None) -> str | None:
        """The child's next report line; None if none came within timeout_s (0: a look);
        _ENDED if the child is gone without one."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            if self._fd is None:
                return _ENDED
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self._fd, 4096)
            if not chunk:
                os.close(self._fd)
                self._fd = None
                continue
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace")

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def join(self, timeout_s: float) -> bool:
        """Wait for the child to end; whether it has."""
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def end(self, timeout_s: float = 3.0) -> None:
        """SIGTERM (the child cleans up: a recorder drops or finishes its file), then SIGKILL
        if it is still there after timeout_s."""
        if self.is_alive():
            try:
                self.popen.terminate()
            except OSError:
                pass
            if not self.join(timeout_s):
                self.popen.kill()
                self.join(5)
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ProcessSink:
    """A consumer process fed windows through a bounded queue.

    Windows go over a ZeroMQ PUSH -> PULL pair on an ipc:// socket in a private folder,
    zero-copy on our side: sending never needs this interpreter's lock, so a busy service
    does not starve its sinks. The child reports one line on a status pipe: "ready" once it
    can take windows (anything else is why it cannot), then "done" (or "empty": it had nothing
    to keep) or the error that stopped it. A child whose service is gone (killed) finishes on
    its own; Ctrl-C is the service's to handle, not the child's."""

    name = "sink"
    kind = ""  # which serve function the child runs (_SERVE)
    put_timeout_s: float | None = None  # how long a replay waits for a full queue (None: ever)

    def __init__(self, args: list, queue_windows: int, start_timeout_s: float = 30.0):
        import zmq

        self.windows = 0
        self.error: str | None = None
        self.process: ChildProcess | None = None
        self.outcome: str | None = None  # the child's last report once closed: done / empty
        self._folder = tempfile.mkdtemp(prefix="anonynoise-sink-")  # mode 0700: ours only
        _LIVE.add(self)  # from now on end_all_children() ends this sink, whatever happens
        try:
            address = f"ipc://{self._folder}/windows"
            self._context = zmq.Context()
            self._socket = self._context.socket(zmq.PUSH)
            self._socket.setsockopt(zmq.SNDHWM, max(1, queue_windows // 2))  # and as many there
            self._socket.setsockopt(zmq.LINGER, 0)
            # we connect and the child binds: a connecting socket queues from the start, so no
            # window is refused while the child's connection is still being made
            self._socket.connect(address)
            self.process = ChildProcess({"kind": self.kind, "args": args, "address": address,
                                         "queue_windows": max(1, queue_windows // 2)},
                                        self._folder)
            status = self.process.read_status(start_timeout_s)
        except BaseException:
            self._kill()
            raise
        if status is None:
            status = f"the {self.name} process did not start in {start_timeout_s:g} s"
        elif status == _ENDED:
            status = f"the {self.name} process ended as it started"
        word, _, info = status.partition(" ")
        if word != "ready":
            self._kill()
            raise AnonyNoiseError(self.describe_start_error(status))
        self.started(info)

    def started(self, info: str) -> None:
        """What the child said with its "ready"."""

    def describe_start_error(self, status: str) -> str:
        return f"{self.name}: {status}"

    def _check(self) -> None:
        if self.error is None:
            status = self.process.read_status(0)
            if status == _ENDED or (status is None and not self.process.is_alive()):
                self.error = "its process ended"
            elif status in ("done", "empty"):  # a signal stopped it (not ours)
                self.outcome = status
                self.error = "its process was stopped" + \
                    ("; what it had recorded is kept" if status == "done" else "")
            elif status is not None:
                self.error = status
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
        if self.error is None and not self.process.is_alive():
            status = self.process.read_status(0)  # what it said before it went, if anything
            if status in (None, _ENDED):
                status = "its process ended"
        elif self.error is None:
            try:
                if self._send([b"end"], timeout_s):
                    status = self.process.read_status(timeout_s)
                    if status is None:
                        status = f"the {self.name} process did not finish in {timeout_s:g} s"
                    elif status == _ENDED:
                        status = "its process ended"
                else:
                    status = f"the {self.name} process did not take its last windows"
            except AnonyNoiseError:
                status = self.error  # it failed while we waited: not reported yet
            self.process.join(10)
        self._kill()
        self.outcome = status or self.outcome
        if status not in (None, "done", "empty"):
            raise AnonyNoiseError(f"{self.name} failed: {status}")

    def _kill(self) -> None:
        """End the child (if it still runs) and remove what it leaves."""
        if self.process is not None:
            self.process.end()
            self.cleanup_after_child()
        if getattr(self, "_socket", None) is not None:
            self._socket.close(linger=0)
            self._context.term()
            self._socket = None
        shutil.rmtree(self._folder, ignore_errors=True)
        _LIVE.discard(self)

    def cleanup_after_child(self) -> None:
        """Once the child is gone: what it may have left (a child killed cannot clean up)."""


def end_all_children(timeout_s: float = 3.0) -> None:
    """End every sink process still running and remove what they leave (their partial files,
    their folders), touching no ZeroMQ object: safe in a signal handler that interrupted
    anything, e.g. a sink's own start or close. The caller exits right after."""
    sinks = list(_LIVE)
    for sink in sinks:
        if sink.process is not None:
            try:
                os.kill(sink.process.pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + timeout_s
    for sink in sinks:
        if sink.process is None:
            continue
        while not _reaped(sink.process.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _reaped(sink.process.pid):
            try:
                os.kill(sink.process.pid, signal.SIGKILL)
            except OSError:
                pass
            end = time.monotonic() + 2
            while not _reaped(sink.process.pid) and time.monotonic() < end:
                time.sleep(0.02)
        if _reaped(sink.process.pid):
            sink.cleanup_after_child()
    for sink in sinks:
        shutil.rmtree(sink._folder, ignore_errors=True)
        _LIVE.discard(sink)


def _reaped(pid: int) -> bool:
    """Whether our child `pid` has ended (reaping it); waitpid, not Popen: Popen's lock may be
    held by the code a signal handler interrupted."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped already
        return True
    return done == pid


# --- in the child ----------------------------------------------------------------------------


class _Status:
    """The child's end of the status pipe: one line a report."""

    def __init__(self, fd: int):
        self.fd = fd

    def put(self, text: str) -> None:
        try:
            os.write(self.fd, (" ".join(str(text).splitlines()) + "\n").encode())
        except OSError:  # the service is gone: nobody to tell
            pass


class _Stop:
    """Whether the child should stop: SIGTERM or SIGHUP came, or the service is gone."""

    def __init__(self, parent: int):
        self.parent = parent
        self.asked = False
        for signum in (signal.SIGTERM, signal.SIGHUP, _PARENT_GONE_SIGNAL):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        if signum == _PARENT_GONE_SIGNAL and os.getppid() == self.parent:
            return  # only the thread that started us ended; the service is still there
        self.asked = True

    def __call__(self) -> bool:
        return self.asked or os.getppid() != self.parent


def _child_main(parent: int, folder: str, spec_json: str) -> None:
    spec = json.loads(spec_json)
    stop = _Stop(parent)
    status = _Status(spec["status_fd"])
    try:
        _SERVE[spec["kind"]](spec, status, stop)
    except Exception as e:  # noqa: BLE001 - reported to the service as one line
        status.put(first_line(e))
    if folder and os.getppid() != parent:  # the service was killed: nobody else will
        shutil.rmtree(folder, ignore_errors=True)
    # skip the interpreter's teardown (half a second, and destructors that may never return:
    # dv-processing's NetworkWriter's waits for ever once a client has connected)
    os._exit(0)


class _Windows:
    """The windows' packed records (PACKED_DTYPE, read-only) the service sends, until it says
    it is done (`ended` True), or the child is asked to stop or its service is gone: then the
    windows already received are still given, and no more."""

    def __init__(self, address: str, queue_windows: int, stop: _Stop):
        import zmq

        self.socket = zmq.Context.instance().socket(zmq.PULL)
        self.socket.setsockopt(zmq.RCVHWM, queue_windows)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.stop, self.queue_windows = stop, queue_windows
        self.ended = False

    def __iter__(self):
        from anonynoise.events import PACKED_DTYPE

        left = None  # once stopping: how many more messages to take (those already here)
        while True:
            if left is None and self.stop():
                left = self.queue_windows + 2
            if left is not None:
                if left <= 0 or not self.socket.poll(0):
                    return
                left -= 1
            elif not self.socket.poll(250):
                continue
            parts = self.socket.recv_multipart(copy=False)
            if parts[0].bytes != b"w":
                self.ended = True
                return
            yield np.frombuffer(parts[1].buffer, PACKED_DTYPE)

    def messages(self, timeout_ms: int) -> list:
        """(The DV output's loop) what has arrived, waiting up to timeout_ms for the first:
        packed records, or None for the end."""
        import zmq

        from anonynoise.events import PACKED_DTYPE

        out = []
        if not self.socket.poll(timeout_ms):
            return out
        while len(out) < 64:
            try:
                parts = self.socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            if parts[0].bytes != b"w":
                self.ended = True
                out.append(None)
                break
            out.append(np.frombuffer(parts[1].buffer, PACKED_DTYPE))
        return out


# --- the recorder --------------------------------------------------------------------------


class RecorderSink(ProcessSink):
    """Record the anonymized stream to .aedat4 (camera name "AnonyNoise", no serial).

    The file is written under a temporary name beside the target and moved into place once
    complete: when the service stops (a signal, the source's end), and also when the service
    is killed (the recorder keeps what reached it). A run in which no window reached the
    recorder (stopped during start-up) writes nothing: an existing file stays as it was
    (`recorded` False). A partial file never stays behind: the recorder removes it when it
    stops, and the service when the recorder was killed."""

    name = "recorder"
    kind = "record"

    def __init__(self, path: str | Path, width: int, height: int, queue_windows: int = 16):
        self.path = Path(path)
        self.partial: Path | None = None
        if self.path.suffix.lower() != ".aedat4":
            raise AnonyNoiseError(f"{self.path}: the recorder writes .aedat4 files")
        super().__init__([str(self.path), int(width), int(height)], queue_windows)

    @property
    def recorded(self) -> bool:
        """(Once closed) whether the file at `path` is this run's recording."""
        return self.outcome == "done"

    def started(self, info: str) -> None:
        partial = json.loads(info) if info else ""
        self.partial = Path(partial) if partial else None

    def describe_start_error(self, status: str) -> str:
        return status  # the writer's own one line names the file

    def cleanup_after_child(self) -> None:
        # the child's temporary file: moved into place or removed, unless it was killed
        if self.partial is not None:
            self.partial.unlink(missing_ok=True)


def _record(spec, status, stop) -> None:
    """The recorder process. A write error drops the partial file (an existing file at the path
    is left as it was) and keeps draining, so the service is never blocked by it."""
    from anonynoise.io import Aedat4Writer

    path, width, height = spec["args"]
    if stop():  # stopped while starting: no file at all
        return
    try:
        windows = _Windows(spec["address"], spec["queue_windows"], stop)
        writer = Aedat4Writer(path, (width, height))
    except AnonyNoiseError as e:
        status.put(str(e))
        return
    # where the partial file is: the service removes it if this process is killed
    status.put(f"ready {json.dumps(str(getattr(writer, '_tmp', '')))}")
    taken = 0
    try:
        for records in windows:
            writer.write_packed(records)
            taken += 1
        if taken:  # also when the service was killed: keep what was recorded
            writer.close()
            status.put("done")
        else:  # nothing recorded: an existing file is not replaced by an empty one
            writer.abort()
            status.put("empty")
    except Exception as e:  # noqa: BLE001 - reported to the service as one line
        writer.abort()
        status.put(first_line(e))
        for _ in windows:
            pass


# --- the DV output -------------------------------------------------------------------------


class DVNetworkSink(ProcessSink):
    """Serve the anonymized events over DV's network protocol (TCP), for the DV software and
    dv.io.NetworkReader clients.

    dv-processing's NetworkWriter polls its sockets without ever blocking: one of its threads
    takes a whole core for as long as it exists, client or not. So the sink's process does not
    make one until a client comes: it listens on the port itself (a plain socket, blocked in
    poll: idle costs nothing), and for its clients starts a NetworkWriter in a process of its
    own on a private socket, relays each client's connection to it, and ends that process when
    the last client has gone. (The NetworkWriter cannot be destroyed once a client has
    connected, its destructor waits for ever: its process ends with os._exit.)

    Loopback by default; another address needs TLS (certificate chain, private key and the CA
    that signs the clients' certificates) unless `insecure`. A DV client that stops reading
    stalls the NetworkWriter: even a replay waits at most a second for it, then the window is
    dropped (and counted)."""

    name = "dv-output"
    kind = "dv"
    put_timeout_s = 1.0

    def __init__(self, port: int, width: int, height: int, host: str = "127.0.0.1", *,
                 tls: tuple[str, str, str] | None = None, insecure: bool = False,
                 queue_windows: int = 64, start_timeout_s: float = 30.0):
        from stream.publisher import is_loopback

        bracketed = f"[{host}]" if ":" in host else host  # an IPv6 address
        if not is_loopback(f"tcp://{bracketed}:{int(port)}") and tls is None and not insecure:
            raise AnonyNoiseError(f"DV output on {host} is reachable from other machines: give "
                                  "tls=(cert, key, ca) or insecure=True", parameter="tls")
        self.host, self.port = host, int(port)
        super().__init__([host, int(port), int(width), int(height),
                          list(tls) if tls else None], queue_windows, start_timeout_s)

    def describe_start_error(self, status: str) -> str:
        # dv-processing's messages go on with boost's source location ("bind: Address
        # already in use [system:98 at /vcpkg/.../reactive_socket_service.hpp:162 in ...")
        return f"cannot serve DV output on {self.host}:{self.port}: {status.split(' [system:')[0]}"


def _check_tls(tls) -> None:
    """Refuse unreadable TLS files now, not when the first client comes."""
    import ssl

    cert, key, ca = tls
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
    except (OSError, ssl.SSLError) as e:
        raise AnonyNoiseError(f"TLS files: {first_line(e)}", parameter="tls") from None


class _Relay:
    """One client's connection relayed to the NetworkWriter's private socket (both ways)."""

    def __init__(self, client: socket.socket, writer: socket.socket, wake: int):
        self.client, self.writer, self.wake = client, writer, wake
        self.done = threading.Event()
        self._open = 2
        self._lock = threading.Lock()
        for a, b in ((client, writer), (writer, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        buffer = bytearray(1 << 16)
        try:
            while True:
                n = a.recv_into(buffer)
                if not n:
                    break
                b.sendall(memoryview(buffer)[:n])
        except OSError:
            pass
        for s in (a, b):  # either side gone: the relay is over
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            self._open -= 1
            last = self._open == 0
        if last:
            self.client.close()
            self.writer.close()
            self.done.set()
            try:
                os.write(self.wake, b"x")
            except OSError:
                pass


class _WriterProcess:
    """The NetworkWriter's process (_dv_writer), started for the first client."""

    def __init__(self, folder: str, args: list):
        self.forward_address = f"ipc://{folder}/dv-writer-windows"
        self.child = ChildProcess({"kind": "dv-writer", "args": args, "folder": folder,
                                   "address": self.forward_address, "queue_windows": 8})
        self.endpoint: tuple | None = None  # where it listens, once ready

    def connect(self) -> socket.socket:
        kind, where = self.endpoint
        if kind == "unix":
            s = socket.socket(socket.AF_UNIX)
            s.connect(where)
        else:
            s = socket.create_connection(("127.0.0.1", int(where)), timeout=5)
            s.settimeout(None)
        return s


def _serve_dv(spec, status, stop) -> None:
    """The DV output process: listens for DV clients, windows dropped while there is none."""
    import zmq

    host, port, width, height, tls = spec["args"]
    folder = spec["address"][len("ipc://"):].rsplit("/", 1)[0]
    try:
        if tls is not None:
            _check_tls(tls)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=16)
        windows = _Windows(spec["address"], spec["queue_windows"], stop)
    except AnonyNoiseError as e:
        status.put(str(e))
        return
    except OSError as e:  # "Address already in use", without create_server's addition
        status.put((e.strerror or first_line(e, 160)).split(" (while attempting")[0])
        return
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    forward = zmq.Context.instance().socket(zmq.PUSH)
    forward.setsockopt(zmq.SNDHWM, 4)
    forward.setsockopt(zmq.LINGER, 0)
    forward.bind(f"ipc://{folder}/dv-writer-windows")
    poller = zmq.Poller()
    poller.register(windows.socket, zmq.POLLIN)
    poller.register(listener.fileno(), zmq.POLLIN)
    poller.register(wake_read, zmq.POLLIN)
    status.put("ready")
    writer: _WriterProcess | None = None
    watching = None  # the starting writer's status pipe, while the poller watches it
    relays: list[_Relay] = []
    waiting: list[socket.socket] = []  # clients that came while the writer was starting

    def end_writer():
        nonlocal writer, watching
        if watching is not None:
            poller.unregister(watching)
            watching = None
        writer.child.end(1.0)
        writer = None
        for client in waiting:
            client.close()
        waiting.clear()

    while not windows.ended and not stop():
        ready = dict(poller.poll(250))
        if listener.fileno() in ready:
            try:
                client, _ = listener.accept()
            except OSError:
                client = None
            if client is not None:
                waiting.append(client)
                if writer is None:
                    writer = _WriterProcess(folder, [width, height, tls])
                    watching = writer.child._fd
                    poller.register(watching, zmq.POLLIN)
        if watching is not None and watching in ready:
            poller.unregister(watching)  # before reading: an end of file closes it
            watching = None
            line = writer.child.read_status(0)
            if line is None:
                watching = writer.child._fd
                poller.register(watching, zmq.POLLIN)
            elif line.startswith("ready "):
                writer.endpoint = tuple(line.split(" ", 2)[1:])
            else:
                print("anonynoise-stream: DV output: cannot serve a client: "
                      f"{'its process ended' if line == _ENDED else line}", file=sys.stderr,
                      flush=True)
                end_writer()
        if writer is not None and writer.endpoint is not None and waiting:
            for client in waiting:
                try:
                    relays.append(_Relay(client, writer.connect(), wake_write))
                except OSError:
                    client.close()
            waiting.clear()
        if wake_read in ready:
            try:
                os.read(wake_read, 4096)
            except BlockingIOError:
                pass
            relays = [r for r in relays if not r.done.is_set()]
            if writer is not None and writer.endpoint is not None and not relays:
                end_writer()  # the last client has gone: no NetworkWriter, no spinning core
        if windows.socket in ready:
            for records in windows.messages(0):
                if records is None:
                    break
                if writer is not None and writer.endpoint is not None and relays and \
                        len(records):
                    _forward(forward, records, stop)
    if windows.ended:
        if writer is not None and writer.endpoint is not None:
            _forward(forward, None, stop)  # the writer sends what it has, then ends
            writer.child.join(5)
            for relay in relays:
                relay.done.wait(2)
        status.put("done")
    if writer is not None:
        writer.child.end(1.0)


def _forward(forward, records, stop) -> bool:
    """Hand a window (None: the end) to the NetworkWriter's process, waiting up to a second
    for a client that reads slowly; False if it was dropped."""
    import zmq

    parts = [b"end"] if records is None else [b"w", records]
    deadline = time.monotonic() + 1.0
    while not stop():
        try:
            forward.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            forward.poll(int(min(left, 0.1) * 1000) + 1, zmq.POLLOUT)
    return False


def _dv_writer(spec, status, stop) -> None:
    """The NetworkWriter's process: it exists only while DV clients are connected."""
    import dv_processing as dv
    import zmq

    from anonynoise.io import to_event_store

    width, height, tls = spec["args"]
    stream = dv.io.Stream.EventStream(0, "events", "AnonyNoise", (width, height))
    if tls is None:
        path = f"{spec['folder']}/dv-writer.sock"
        Path(path).unlink(missing_ok=True)  # the previous writer's
        server = dv.io.NetworkWriter(dv.Path(path), stream)
        endpoint = f"unix {path}"
    else:  # TLS is the NetworkWriter's: a loopback port, relayed byte for byte
        for attempt in range(5):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            try:
                server = dv.io.NetworkWriter("127.0.0.1", port, stream,
                                             *(dv.Path(p) for p in tls))
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        endpoint = f"tcp {port}"
    pull = zmq.Context.instance().socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, spec["queue_windows"])
    pull.setsockopt(zmq.LINGER, 0)
    pull.connect(spec["address"])
    status.put(f"ready {endpoint}")
    from anonynoise.events import PACKED_DTYPE

    while not stop():
        if not pull.poll(250):
            continue
        parts = pull.recv_multipart(copy=False)
        if parts[0].bytes != b"w":
            time.sleep(0.2)  # let the last packets leave
            break
        records = np.frombuffer(parts[1].buffer, PACKED_DTYPE)
        if len(records) and server.getClientCount() > 0:
            server.writeEvents(to_event_store(EventBatch.trusted(
                records["t"], records["x"], records["y"], records["p"], width, height)))
    os._exit(0)  # here, while `server` lives: its destructor would wait forever


_SERVE = {"record": _record, "dv": _serve_dv, "dv-writer": _dv_writer}
