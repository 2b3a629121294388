"""A fork server for the fuzz suite: imports the command line modules once, then forks a child
per request, which runs a command's main(argv) as the installed script would.

Started by tests/fuzz/runner.py as `python forkserver.py` (a plain script, stdlib only at the
top, so it runs whatever the package the fuzz suite was imported as). The protocol is one JSON
object a line: requests on stdin, replies on stdout.

    request {"prog": "anonynoise" | "anonynoise-stream" | "python", "argv": [...],
             "code": "..." (prog python only), "cwd": DIR, "stdout": FILE, "stderr": FILE,
             "timeout": SECONDS, "as_limit": BYTES or null}
    reply   {"rc": INT (negative: killed by that signal), "elapsed": SECONDS,
             "timed_out": BOOL}

A child: its own process group (a timeout kills it and everything it started), RLIMIT_AS,
stdin from /dev/null, stdout and stderr to the files, the working directory; then main(argv),
SystemExit and uncaught exceptions handled as the interpreter does (a traceback on stderr,
exit 1), non-daemon threads joined and atexit handlers run as at interpreter exit, and
os._exit(code). The server itself never runs product code, so the children start from a
process with only modules imported: no threads of torch's, no warm numba kernels.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
import traceback
import warnings

# What the commands import lazily (each child would otherwise import them again). A module
# that fails to import here is left to the child, which reports it as the command would.
PRELOAD = (
    "anonynoise.cli", "anonynoise.cli_support", "stream.cli", "anonynoise.io",
    "anonynoise.events", "anonynoise.filters", "anonynoise.offline", "anonynoise.anonymizer", "anonynoise.windower",
    "anonynoise.memory", "stream.sources", "stream.pipeline", "stream.publisher",
    "stream.sinks", "dv_processing", "expelliarmus", "faery", "torch", "zmq",
)

_WARNING_FILTERS: list = []
_PARENT = os.getppid()
MAINS = {"anonynoise": ("anonynoise.cli", "main"), "anonynoise-stream": ("stream.cli", "main")}


def preload() -> None:
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the child meets it again, as the real command would
            pass


def _exit_code(code) -> int:
    """sys.exit's argument as the interpreter turns it into a status (a message: printed,
    status 1)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def child(request: dict, proto_fds: tuple[int, int]) -> None:
    """In the forked child: set up, run, and never return."""
    code = 1
    try:
        for fd in proto_fds:
            os.close(fd)
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as the interpreter sets it
        warnings.filters[:] = _WARNING_FILTERS
        limit = request.get("as_limit")
        if limit:
            resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
        os.chdir(request["cwd"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, key in ((1, "stdout"), (2, "stderr")):
            out = os.open(request[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(out, fd)
            os.close(out)
        prog = request["prog"]
        sys.argv = [prog, *request.get("argv", [])]
        try:
            if prog == "python":
                exec(compile(request["code"], "<fuzz>", "exec"), {"__name__": "__main__"})
                code = 0
            else:
                import importlib

                module, name = MAINS[prog]
                main = getattr(importlib.import_module(module), name)
                code = _exit_code(main(list(request.get("argv", []))))
        except SystemExit as e:
            code = _exit_code(e.code)
        except BaseException:  # noqa: BLE001 - as the interpreter: traceback, status 1
            traceback.print_exc()
            code = 1
        _interpreter_exit()
    except BaseException:  # noqa: BLE001 - the set-up itself failed
        try:
            traceback.print_exc()
        except BaseException:  # noqa: BLE001
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:  # noqa: BLE001
            pass
        os._exit(code)


def _interpreter_exit() -> None:
    """What the interpreter does at exit after main: wait for non-daemon threads, then run
    atexit handlers."""
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]  # joins non-daemon threads
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
    atexit._run_exitfuncs()


def kill_group(pid: int, wait: float = 2.0) -> None:
    """SIGKILL a process group, and wait a little until it is gone (the next case should not
    share the CPU with the last one's leftovers). The runner uses it too."""
    deadline = time.monotonic() + wait
    try:
        os.killpg(pid, signal.SIGKILL)
        while time.monotonic() < deadline:
            time.sleep(0.01)
            os.killpg(pid, 0)  # raises once no process of the group is left
    except (ProcessLookupError, PermissionError):
        pass


def serve(request: dict, proto_fds: tuple[int, int]) -> dict:
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(request, proto_fds)
    try:
        os.setpgid(pid, pid)  # also here: the kill below must find the group at once
    except OSError:
        pass
    deadline = start + float(request["timeout"])
    timed_out = False
    status = None
    delay = 0.002
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if os.getppid() != _PARENT:  # the suite is gone: so are its cases
            kill_group(pid)
            os._exit(1)
        if time.monotonic() >= deadline:
            timed_out = True
            kill_group(pid, wait=0)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    elapsed = time.monotonic() - start
    kill_group(pid)  # whatever it left running in its group
    rc = os.waitstatus_to_exitcode(status)
    return {"rc": rc, "elapsed": elapsed, "timed_out": timed_out}


def main() -> None:
    global _WARNING_FILTERS
    _WARNING_FILTERS = list(warnings.filters)  # as the interpreter set them, for the children
    warnings.simplefilter("ignore")  # the preload's own warnings
    # the protocol gets its own descriptors; the modules' prints go to /dev/null
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    preload()
    warnings.filters[:] = _WARNING_FILTERS
    reader = os.fdopen(proto_in, "r")
    writer = os.fdopen(proto_out, "w")
    writer.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    writer.flush()
    for line in reader:
        if not line.strip():
            continue
        try:
            reply = serve(json.loads(line), (proto_in, proto_out))
        except Exception as e:  # noqa: BLE001 - a bad request: say so, keep serving
            reply = {"error": f"{type(e).__name__}: {e}"}
        writer.write(json.dumps(reply) + "\n")
        writer.flush()


if __name__ == "__main__":
    main()
