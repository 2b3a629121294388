"""What every command line of the project shares: argument types, the privacy-filter
options, and `run`, which turns errors into one line and an exit status.

The entry points (`anonynoise`, `anonynoise-stream`, `anonynoise-view`, `anonynoise-preview`,
the training commands) import these from here; the library below them never names a
command-line flag: its errors name the parameter they are about, and `run` puts the flag for
it in front (each command maps its own).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import threading
from pathlib import Path

from anonynoise.errors import AnonyNoiseError

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def parse_sensor(text: str) -> tuple[int, int]:
    """'640x480' -> (640, 480)."""
    from anonynoise.events import MAX_SENSOR_SIDE

    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    if not all(0 < int(p) <= MAX_SENSOR_SIDE for p in parts):
        raise argparse.ArgumentTypeError(f"width and height must be 1 to {MAX_SENSOR_SIDE}, "
                                         f"got {text!r}")
    return int(parts[0]), int(parts[1])


def bounded(kind, low, high, what):
    """An argparse type: a number of `kind` in [low, high], finite."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not (low <= value <= high):  # also false for NaN
            raise argparse.ArgumentTypeError(f"{what} must be between {low} and {high}, "
                                             f"got {text}")
        return value
    return parse


MODEL_FILTERS = "model"  # --filters model: the ones the checkpoint was trained behind
# what the shipped net records, anonynoise.filters.SHIPPED_FILTERS (a test holds this to it;
# importing it here would load numba for every --help)
SHIPPED_FILTERS = "warp+refractory+jitter, jitter tiles an eighth of the sensor's height"


def add_filter_arguments(ap: argparse.ArgumentParser) -> None:
    """--filters and its parameters (anonynoise.filters), for every command that anonymizes."""
    from anonynoise.filters import FILTER_STEPS, MAX_BLOCK, FilterConfig

    d = FilterConfig()
    g = ap.add_argument_group("privacy filters (fixed transforms before the net; "
                              "docs/privacy.md)")
    g.add_argument("--filters", default=MODEL_FILTERS, metavar="SPEC",
                   help=f"{', '.join(FILTER_STEPS)} joined by '+', applied left to right (e.g. "
                        f"{d.spec}), none, or {MODEL_FILTERS}: the ones the model was trained "
                        "behind, with their parameters (default; without a model, and for "
                        f"the shipped net: {SHIPPED_FILTERS})")
    g.add_argument("--jitter-block", type=bounded(int, 2, MAX_BLOCK, "--jitter-block"),
                   default=None, metavar="PX",
                   help=f"jitter's tile in pixels (default: an eighth of the sensor's height, "
                        f"a person filling the frame; with --filters model, the model's share "
                        f"of the height. Where a person appears P px tall, give P/8)")
    g.add_argument("--warp-period", type=bounded(float, 0.001, 1e9, "--warp-period"),
                   default=None, metavar="SECONDS",
                   help=f"a new random warp every this many seconds (default "
                        f"{d.warp_period_s:g}; with --filters model, the model's)")
    g.add_argument("--refractory-ms", type=bounded(float, 0.001, 60_000, "--refractory-ms"),
                   default=None, metavar="MS",
                   help=f"refractory's period: a pixel and polarity keeps at most one event in "
                        f"this many ms (default {d.refractory_ms:g}; with --filters model, "
                        "the model's)")


def filter_config(args):
    """What add_filter_arguments' options ask for: a FilterConfig, None for --filters none, or
    for --filters model a ModelFilters that the anonymizer resolves from its checkpoint. An
    unknown filter is an AnonyNoiseError."""
    from anonynoise.filters import FilterConfig, ModelFilters

    if args.filters == MODEL_FILTERS:
        return ModelFilters(block=args.jitter_block, warp_period_s=args.warp_period,
                            refractory_ms=args.refractory_ms)
    given = {k: v for k, v in (("block", args.jitter_block),
                               ("warp_period_s", args.warp_period),
                               ("refractory_ms", args.refractory_ms)) if v is not None}
    try:
        config = FilterConfig(args.filters, **given).check()
    except AnonyNoiseError as e:  # the library's list lacks the command line's own choice
        raise AnonyNoiseError(str(e).replace("; or none)", "; or none, or model: the "
                                             "checkpoint's own, the default)")) from None
    return config if config.steps else None


def print_npy_note(output, size) -> None:
    if Path(output).suffix.lower() == ".npy":
        print(f"note: .npy files do not store the sensor size; read it back with --sensor "
              f"{size[0]}x{size[1]}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Inside: SIGTERM (a scheduler, a timeout, kill) interrupts like Ctrl-C, so `with` and
    `finally` blocks run: worker pools are terminated and partial output is removed, where a
    plain SIGTERM would kill this process alone and leave its workers running."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# The command-line flag of each library parameter an error can be about (AnonyNoiseError's
# `parameter`), for the commands that anonymize: the library names its parameters, a command
# line its flags. Each command passes run() the map of its own flags.
ANONYMIZER_FLAGS = {"allow_weak": "--allow-weak", "device": "--device", "filters": "--filters",
                    "model": "--model", "sensor_size": "--sensor", "window": "--window-ms"}


def run(main, argv=None, prog: str = "anonynoise", sigterm_interrupts: bool = False,
        flags: dict[str, str] | None = None) -> int:
    """Call main(argv), turning project errors into one line and an exit status; an error
    about a library parameter that `flags` maps to a flag names the flag first. With
    `sigterm_interrupts`, SIGTERM stops it as Ctrl-C does (sigterm_as_interrupt): for the
    commands with worker processes or partial output, not for the stream and the viewer,
    which stop on their own terms."""
    try:
        with sigterm_as_interrupt() if sigterm_interrupts else contextlib.nullcontext():
            return main(argv)
    except AnonyNoiseError as e:
        flag = (flags or {}).get(e.parameter or "")
        print(f"{prog}: error: {flag + ': ' if flag else ''}{e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as e:
        if _stdout_closed():
            return 128 + signal.SIGPIPE  # `... | head`: the reader has all it wanted
        print(f"{prog}: error: {e}", file=sys.stderr)  # a socket's or a child's pipe
        return EXIT_BAD_INPUT
    except OSError as e:  # the environment (missing file, permissions, full disk), not a bug
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("ANONYNOISE_DEBUG"):
            raise
        print(f"{prog}: internal error: {type(e).__name__}: {e} "
              "(set ANONYNOISE_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _stdout_closed() -> bool:
    """Whether stdout's reader is gone; if so, stdout goes to /dev/null from now on, so that
    Python's own flush at exit does not report the broken pipe again."""
    try:
        fd = sys.stdout.fileno()
        poll = select.poll()  # a pipe whose reader is gone polls as an error
        poll.register(fd, select.POLLOUT)
        closed = any(events & select.POLLERR for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), no real stdout
        return False
    if closed:
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    return closed
