"""Run a command on a case file, bounded: wall-clock timeout (the whole process group is
killed), RLIMIT_AS, stdin closed; and the acceptance predicate on what it did.

Two ways to run, with the same results (tests/fuzz/test_fuzz_harness.py compares them):

  SubprocessRunner  the installed script in a fresh interpreter (start-up with torch: seconds)
  ForkServer        a server that imported the command line modules once forks a child per
                    command (tests/fuzz/forkserver.py): a fraction of a second a case
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .forkserver import kill_group as _kill_group  # stdlib only: safe to import

AS_LIMIT = 4 << 30  # bytes of address space a command may map
OK_EXITS = (0, 2)  # done, or bad input said in one line
# module of each command, for `python -m` where the installed script is not found
MODULES = {"anonynoise": "anonynoise", "anonynoise-stream": "stream"}
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    rc: int  # negative: killed by that signal (a timeout is SIGKILL, -9)
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def failure(result: Result) -> str | None:
    """None where the result meets the acceptance predicate, else the kind of failure:
    timeout, traceback, exit-N / signal-NAME, no-message (exit 2, nothing said) or
    extra-lines (more than one non-empty line on stderr)."""
    if result.timed_out:
        return "timeout"
    if "Traceback" in result.stderr:
        return "traceback"
    if result.rc not in OK_EXITS:
        if result.rc < 0:
            try:
                return f"signal-{signal.Signals(-result.rc).name}"
            except ValueError:
                return f"signal-{-result.rc}"
        return f"exit-{result.rc}"
    lines = stderr_lines(result.stderr)
    if len(lines) > 1:
        return "extra-lines"
    if result.rc == 2 and not lines:
        return "no-message"
    return None


def describe(result: Result, command: list[str] | None = None, limit: int = 1500) -> str:
    """What a case did, for an assertion message or a report."""
    err = result.stderr if len(result.stderr) <= limit else \
        result.stderr[:limit // 2] + "\n[...]\n" + result.stderr[-limit // 2:]
    head = f"$ {shlex.join(command)}\n" if command else ""
    how = "timed out (killed)" if result.timed_out else f"exit {result.rc}"
    return (f"{head}{how} after {result.elapsed:.1f} s; stderr "
            f"({len(stderr_lines(result.stderr))} lines):\n{err.rstrip() or '(empty)'}")


READ_LIMIT = 256 << 10  # of a command's stdout or stderr: its start and end


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(READ_LIMIT)
            size = os.fstat(f.fileno()).st_size
            if size > 2 * READ_LIMIT:
                f.seek(size - READ_LIMIT)
                data += f"\n[... {size - 2 * READ_LIMIT} bytes ...]\n".encode() + f.read()
            else:
                data += f.read()
        return data.decode("utf-8", "replace")
    except OSError:
        return ""


def environment() -> dict[str, str]:
    """The commands' environment: this one, without ANONYNOISE_DEBUG (which asks for the
    tracebacks the suite checks never come)."""
    env = dict(os.environ)
    env.pop("ANONYNOISE_DEBUG", None)
    return env


def _set_limit(limit: int | None):
    def preexec():
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def script(prog: str) -> list[str]:
    """The installed console script, else `python -m` its module."""
    path = Path(sys.executable).parent / prog
    if path.is_file() and os.access(path, os.X_OK):
        return [str(path)]
    return [sys.executable, "-m", MODULES[prog]]


class SubprocessRunner:
    """Each command in a fresh interpreter: the reference behaviour, slower."""

    name = "subprocess"

    def run(self, prog: str, argv: list[str], cwd: str | os.PathLike, timeout: float,
            as_limit: int | None = AS_LIMIT, code: str | None = None) -> Result:
        """prog: anonynoise or anonynoise-stream, or python to run `code`."""
        args = [sys.executable, "-c", code] if prog == "python" else [*script(prog), *argv]
        return self.run_args(args, cwd, timeout, as_limit)

    def run_args(self, args: list[str], cwd: str | os.PathLike, timeout: float,
                 as_limit: int | None = AS_LIMIT) -> Result:
        cwd = Path(cwd)
        out, err = cwd / ".fuzz-stdout", cwd / ".fuzz-stderr"
        start = time.monotonic()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, env=environment(),
                                    stdout=fo, stderr=fe, start_new_session=True,
                                    preexec_fn=_set_limit(as_limit))
            timed_out = False
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid, wait=0)  # our own child stays a zombie until waited
                proc.wait()
            elapsed = time.monotonic() - start
            _kill_group(proc.pid)  # what it left running
        return Result(proc.returncode, _read(out), _read(err), elapsed, timed_out)

    def close(self) -> None:
        pass


class ForkServerError(RuntimeError):
    pass


class ForkServer:
    """Commands forked from a server that imported them once (see forkserver.py)."""

    name = "forkserver"

    def __init__(self, start_timeout: float = 300.0):
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkserver.py"))], cwd=REPO,
            env=environment(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self._readline(start_timeout)
        if not line or not json.loads(line).get("ready"):
            self.close()
            raise ForkServerError(f"the fork server did not start: {line!r}")

    def _readline(self, timeout: float) -> str:
        box: list[str] = []
        reader = threading.Thread(target=lambda: box.append(self._proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        if reader.is_alive():
            self.close()
            raise ForkServerError(f"no answer from the fork server in {timeout:.0f} s")
        return box[0] if box else ""

    def run(self, prog: str, argv: list[str], cwd: str | os.PathLike, timeout: float,
            as_limit: int | None = AS_LIMIT, code: str | None = None) -> Result:
        cwd = Path(cwd)
        out, err = cwd / ".fuzz-stdout", cwd / ".fuzz-stderr"
        request = {"prog": prog, "argv": list(map(str, argv)), "cwd": str(cwd),
                   "stdout": str(out), "stderr": str(err), "timeout": timeout,
                   "as_limit": as_limit, "code": code}
        with self._lock:
            if self._proc.poll() is not None:
                raise ForkServerError(f"the fork server is gone (exit {self._proc.returncode})")
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._readline(timeout + 60)  # the server kills at `timeout` itself
        if not line:
            raise ForkServerError(f"the fork server died (exit {self._proc.poll()})")
        reply = json.loads(line)
        if "error" in reply:
            raise ForkServerError(reply["error"])
        return Result(reply["rc"], _read(out), _read(err), reply["elapsed"], reply["timed_out"])

    def close(self) -> None:
        proc = self._proc
        if proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> "ForkServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_runner(kind: str | None = None):
    """FUZZ_RUNNER=subprocess (or kind) for the plain subprocess, else the fork server."""
    kind = kind or os.environ.get("FUZZ_RUNNER", "forkserver")
    if kind == "subprocess" or not hasattr(os, "fork"):
        return SubprocessRunner()
    if kind == "forkserver":
        return ForkServer()
    raise ValueError(f"unknown runner {kind!r} (forkserver, subprocess)")
