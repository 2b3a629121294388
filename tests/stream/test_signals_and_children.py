"""The service's processes and signals, with the real command in real processes: its sink
processes die with it however it ends (SIGKILL included) and leave no partial file; a signal at
any moment of its start-up ends it in one line, with 128 + the signal's number, leaving an
existing recording as it was; --threads is bounded by the cores; the DV output costs nothing
while no client is connected; the status line's units and warnings.

Linux only (/proc). The replays use ../shared/data/real/face_dvxplorer.aedat4 (skipped where
it is absent)."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FACE = "face_dvxplorer.aedat4"
COMMAND = Path(sys.executable).parent / "anonynoise-stream"  # the installed entry point
PRECIOUS = b"an earlier recording that no stopped start-up may replace\n" * 500

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs /proc")


def _stat(pid: int) -> list[str] | None:
    """Fields 3... of /proc/PID/stat (state, ppid, pgrp, ...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def _cpu_s(pid: int) -> float:
    st = _stat(pid)
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def _catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for signum (/proc/PID/status, SigCgt)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    except OSError:
        pass
    return False


def _group(pgid: int) -> list[int]:
    """The running processes of a process group (the service's: its own session)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] != "Z" and int(st[2]) == pgid:
                out.append(int(entry))
    return out


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[0] != "Z" and int(st[1]) == pid:
                out.append(int(entry))
    return out


class Service:
    """The command in a session of its own (its process group: it and everything it starts),
    its stderr collected by a thread, and every process of its group seen while it ran."""

    def __init__(self, *args: str):
        command = [str(COMMAND)] if COMMAND.exists() else [sys.executable, "-m", "stream"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*command, *args], cwd=REPO, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.lines: list[str] = []
        self.seen: set[int] = set()
        self.folders: set[str] = set()  # the sink processes' private folders
        self._booted: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def watch(self) -> list[int]:
        """The group's processes other than the service itself, remembered (and the private
        folder each sink process was given: `python -c BOOT PARENT FOLDER ...`)."""
        now = [p for p in _group(self.proc.pid) if p != self.proc.pid]
        for pid in set(now) - self._booted:  # (just forked: still the service's cmdline)
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if len(argv) > 4 and argv[1] == b"-c" and b"_child_main" in argv[2]:
                self._booted.add(pid)
                if argv[4]:
                    self.folders.add(argv[4].decode())
        self.seen.update(now)
        return now

    def wait_for(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.watch()
            if condition():
                return
            if self.proc.poll() is not None:
                pytest.fail(f"the service ended (status {self.proc.returncode}) before {what}:"
                            f" {self.lines}")
            time.sleep(0.005)
        pytest.fail(f"no {what} within {timeout} s: {self.lines}")

    def signal_at(self, signum: int, seconds: float) -> None:
        """Send signum `seconds` after the start, or once the service can take it if that is
        later: before its first line of Python runs (some 30 ms) no program can do anything."""
        self.wait_for(lambda: time.monotonic() - self.started >= seconds, seconds + 1, "time")
        self.wait_for(lambda: _catches(self.proc.pid, signal.SIGTERM), 10,
                      "signal handlers")
        self.watch()
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 30) -> int:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(5)
        return self.proc.returncode

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _gone_within(pids, seconds: float) -> list[int]:
    """Those of pids still running after up to `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        left = [p for p in pids if _running(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _running(p)]


def _partials(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if "partial" in p.name]


@pytest.fixture
def face(real_file):
    return real_file(FACE)


def _recording(face, out, *more):
    return ("--replay", str(face), "--loop", "--publish", "none", "--record", str(out),
            "--status-every", "0.2", *more)


# --- children die with the service ---------------------------------------------------------


@pytest.mark.parametrize("moment", ["recorder starting", "recording"])
def test_a_killed_service_leaves_no_process_and_no_partial_file(tmp_path, face, moment):
    # a SIGKILL within a second of the recorder's start used to leave the recorder (and
    # multiprocessing's resource tracker) running for ever, and a partial file behind
    out = tmp_path / "rec.aedat4"
    out.write_bytes(PRECIOUS)
    service = Service(*_recording(face, out))
    try:
        if moment == "recorder starting":
            service.wait_for(lambda: service.watch(), 60, "sink process")
        else:
            service.wait_for(lambda: any(re.search(r"windows [1-9]\d*/", line)
                                         for line in service.lines), 60, "window recorded")
        service.watch()
        service.proc.kill()  # the service cannot clean anything: its children must
        service.proc.wait(10)
        assert service.seen, "no sink process was seen"
        if moment == "recording":
            assert service.folders, "no sink process's folder was seen"
        assert _gone_within(service.seen, 10) == []
        assert _group(service.proc.pid) == []
        assert _partials(tmp_path) == []
        assert [f for f in service.folders if Path(f).exists()] == []
        if moment == "recorder starting":  # nothing was recorded: the old file stays
            assert out.read_bytes() == PRECIOUS
        else:  # what was recorded is kept, complete
            from anonynoise.io import read_events

            recorded = read_events(out)
            assert len(recorded) > 0
    finally:
        service.kill_group()


# --- a signal during the start-up ----------------------------------------------------------


def _check_stopped_during_start_up(service, signum, out, folder):
    status = service.finish(30)
    name = signal.Signals(signum).name
    assert status == 128 + signum, (status, service.lines)
    assert service.lines == [f"anonynoise-stream: stopped by {name} during start-up"], \
        service.lines
    assert out.read_bytes() == PRECIOUS  # byte for byte
    assert _partials(folder) == []
    assert _gone_within(service.seen, 5) == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_any_moment_of_the_start_up_ends_in_one_line(tmp_path, face, signum):
    # SIGTERM before the handlers used to kill the service silently, SIGINT printed a
    # KeyboardInterrupt traceback; a signal as the recorder started left it running, or
    # replaced an existing recording by an empty one. Several services at once: each is
    # signalled at its moment (or as soon as it can take a signal).
    moments = (0.05, 0.3, 0.8, 1.5)
    runs = []
    try:
        for k, seconds in enumerate(moments):
            folder = tmp_path / f"at{k}"
            folder.mkdir()
            out = folder / "rec.aedat4"
            out.write_bytes(PRECIOUS)
            runs.append((Service(*_recording(face, out)), seconds, out, folder))
        for service, seconds, _, _ in sorted(runs, key=lambda r: r[1]):
            service.signal_at(signum, seconds)
        for service, _, out, folder in runs:
            _check_stopped_during_start_up(service, signum, out, folder)
    finally:
        for service, *_ in runs:
            service.kill_group()


@pytest.mark.parametrize("signum,after", [(signal.SIGTERM, 0.0), (signal.SIGINT, 0.3)])
def test_a_signal_as_the_recorder_starts_leaves_the_old_recording(tmp_path, face, signum,
                                                                   after):
    out = tmp_path / "rec.aedat4"
    out.write_bytes(PRECIOUS)
    service = Service(*_recording(face, out))
    try:
        service.wait_for(lambda: service.watch(), 60, "sink process")
        time.sleep(after)
        service.watch()
        if service.proc.poll() is None and not any("windows" in line for line in service.lines):
            service.proc.send_signal(signum)
        else:
            pytest.skip("the stream had started already")
        _check_stopped_during_start_up(service, signum, out, tmp_path)
    finally:
        service.kill_group()


# --- --threads -----------------------------------------------------------------------------


def test_threads_beyond_the_cores_are_refused_in_one_line(tmp_path):
    # 100000 used to segfault (status 139), 20000 ended in libgomp's error, 5000 made 10,000
    # threads
    cores = len(os.sched_getaffinity(0))
    out = tmp_path / "rec.aedat4"
    command = [str(COMMAND)] if COMMAND.exists() else [sys.executable, "-m", "stream"]
    runs = {value: subprocess.Popen([*command, "--synthetic", "--fast", "--publish", "none",
                                     "--record", str(out), "--threads", value], cwd=REPO,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)
            for value in ("100000", "0", "-1", str(cores + 1))}
    try:
        for value, proc in runs.items():
            _, err = proc.communicate(timeout=60)
            lines = err.strip().splitlines()
            assert proc.returncode == 2, (value, proc.returncode, err[-500:])
            assert len(lines) == 1 and "--threads must be at least 1 and at most " \
                f"{cores}" in lines[0] and f"got {value}" in lines[0], (value, lines)
    finally:
        for proc in runs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert not out.exists()


def test_model_threads_follow_the_cores_this_process_may_use(monkeypatch):
    from anonynoise.errors import AnonyNoiseError
    from stream.cli import model_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # the machine's: not ours to use
    assert model_threads(None) == 3
    assert model_threads(4) == 4
    with pytest.raises(AnonyNoiseError, match="at most 4"):
        model_threads(5)
    with pytest.raises(AnonyNoiseError, match="at least 1"):
        model_threads(0)


# --- the DV output's idle cost -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_dv_output_costs_nothing_while_no_client_is_connected(face):
    # dv-processing's NetworkWriter polls without blocking: the DV process took 35 % of a
    # core with no client, and a loaded machine's paced replay went from p99 0.5 s to 4.7 s
    pytest.importorskip("dv_processing")
    port = _free_port()
    service = Service("--replay", str(face), "--loop", "--publish", "none", "--dv-port",
                      str(port), "--status-every", "0.2")
    try:
        service.wait_for(lambda: any("windows" in line for line in service.lines), 60,
                         "status line")
        children = [p for p in _children(service.proc.pid)
                    if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(children) == 1, children
        dv_process = children[0]
        time.sleep(0.3)
        before = _cpu_s(dv_process)
        time.sleep(3)  # windows keep coming, 20 a second: the process drops them, no client
        idle = _cpu_s(dv_process) - before
        assert idle < 0.3, f"{idle:.2f} s of CPU in 3 s without a client"
        assert _children(dv_process) == []  # no NetworkWriter while nobody watches

        import dv_processing as dv

        reader = dv.io.NetworkReader("127.0.0.1", port)  # a client comes...
        got, deadline = 0, time.monotonic() + 20
        while got < 1000 and time.monotonic() < deadline:
            batch = reader.getNextEventBatch()
            got += 0 if batch is None else batch.size()
            if batch is None:
                time.sleep(0.01)
        assert got >= 1000 and reader.getEventResolution() == (320, 240)
        del reader  # ... and goes: its NetworkWriter's process goes with it
        assert _gone_within(_children(dv_process), 10) == []
        before = _cpu_s(dv_process)
        time.sleep(2)
        assert _cpu_s(dv_process) - before < 0.2
        service.proc.send_signal(signal.SIGINT)
        assert service.finish(60) == 0, service.lines
    finally:
        service.kill_group()


# --- the status line -----------------------------------------------------------------------


def _status(seconds, events_in, events_out, windows_in, windows_out, **dropped):
    return {"seconds": seconds, "events_in": events_in, "events_out": events_out,
            "events_in_per_s": events_in / seconds, "events_out_per_s": events_out / seconds,
            "windows_in": windows_in, "windows_out": windows_out, "latency_ms_p50": None,
            "latency_ms_p99": None,
            "dropped": {"queue": 0, "anonymization": 0, "sink": 0, "burst_events": 0,
                        **dropped}}


def test_the_status_line_gives_rates_in_units_that_read():
    from stream.cli import status_line

    assert "in 850 ev/s, out 425 ev/s" in status_line(_status(2.0, 1700, 850, 40, 40))
    assert "in 12.3 k ev/s, out 1.0 k ev/s" in status_line(_status(1.0, 12_345, 1000, 20, 20))
    assert "in 1.20 M ev/s, out 600.0 k ev/s" in status_line(
        _status(10.0, 12_000_000, 6_000_000, 200, 200))
    # over the interval since the last line, when there is one
    first, second = _status(5.0, 5_000, 5_000, 100, 100), _status(10.0, 5_000_000, 2_505_000,
                                                                  200, 200)
    assert "in 999.0 k ev/s, out 500.0 k ev/s" in status_line(second, previous=first)
    # the drop counters the pipeline keeps, those it may not have yet as zero
    line = status_line(_status(1.0, 10, 10, 3, 3, lossless=2, late_events=7))
    assert "lossless 2" in line and "late events 7" in line
    assert "lossless 0" in status_line(_status(1.0, 10, 10, 3, 3))
    assert "WARNING" not in line


def test_the_status_line_warns_when_events_come_in_and_none_go_out():
    from stream.cli import status_line

    first = _status(5.0, 50_000, 40_000, 100, 100)
    emptied = _status(10.0, 100_000, 40_000, 200, 200)  # windows out, every event removed
    line = status_line(emptied, previous=first)
    assert "WARNING: events came in but none went out in the last 5.0 s" in line
    assert "removed every event" in line
    stalled = _status(10.0, 100_000, 40_000, 200, 100, queue=100)  # no window out at all
    assert "no window went out" in status_line(stalled, previous=first)
    quiet = _status(10.0, 50_000, 40_000, 200, 200)  # nothing came in: nothing to say
    assert "WARNING" not in status_line(quiet, previous=first)
    assert "WARNING" in status_line(_status(3.0, 900, 0, 60, 60), final=True)
