"""`anonynoise`: the core's command line (inspect and convert event files, run the demo).

Thin by design: parse, call the library, print. Bad input ends in one line on stderr and a
non-zero exit status, never a traceback (set ANONYNOISE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import signal
import sys
import threading
import time
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
# what the shipped checkpoint records (a test holds this to it; reading it here would load
# torch for every --help)
SHIPPED_FILTERS = "warp+refractory+jitter, 6 px jitter tiles"


def add_filter_arguments(ap: argparse.ArgumentParser) -> None:
    """--filters and its parameters (anonynoise.filters), for every command that anonymizes."""
    from anonynoise.filters import FILTER_STEPS, FilterConfig

    d = FilterConfig()
    g = ap.add_argument_group("privacy filters (fixed transforms before the net; "
                              "docs/privacy-filters.md)")
    g.add_argument("--filters", default=MODEL_FILTERS, metavar="SPEC",
                   help=f"{', '.join(FILTER_STEPS)} joined by '+', applied left to right (e.g. "
                        f"{d.spec}), none, or {MODEL_FILTERS}: the ones the model was trained "
                        "behind, with their parameters (default; the shipped model: "
                        f"{SHIPPED_FILTERS})")
    g.add_argument("--jitter-block", type=bounded(int, 2, 64, "--jitter-block"), default=None,
                   metavar="PX", help=f"jitter's tile in pixels (default {d.block}; with "
                                      "--filters model, the model's)")
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


def summarize(path: str, sensor_size=None) -> dict:
    """Read a whole event file and describe it: sensor, duration, count, rate, streams."""
    from anonynoise.io import open_events

    with open_events(path, sensor_size) as reader:
        info = reader.info
        count, first, last = 0, None, None
        for batch in reader:
            if len(batch):
                first = int(batch.t[0]) if first is None else first
                last = int(batch.t[-1])
                count += len(batch)
    duration_us = (last - first) if count else 0
    return {
        "path": info.path,
        "format": info.format,
        "camera": info.camera,
        "sensor": [info.width, info.height],
        "sensor_source": info.sensor_source,
        "events": count,
        "t_first_us": first,
        "t_last_us": last,
        "duration_s": duration_us / 1e6,
        "event_rate_per_s": count / (duration_us / 1e6) if duration_us > 0 else None,
        "other_streams": info.other_streams,
    }


def _print_summary(s: dict) -> None:
    rate = s["event_rate_per_s"]
    streams = ["events"] + [f"{k} ({v})" for k, v in s["other_streams"].items()]
    lines = [
        ("file", s["path"]),
        ("format", s["format"] + (f", camera {s['camera']}" if s["camera"] else "")),
        ("sensor", f"{s['sensor'][0]}x{s['sensor'][1]} (from {s['sensor_source']})"),
        ("events", f"{s['events']:,}"),
        ("duration", f"{s['duration_s']:.6f} s"
         + (f" (t = {s['t_first_us']} .. {s['t_last_us']} µs)" if s["events"] else "")),
        ("event rate", f"{rate / 1e6:.3f} Mev/s" if rate else "-"),
        ("streams", ", ".join(streams)),
    ]
    if s["other_streams"]:
        lines.append(("", "only events are ever read out; frames, IMU and triggers stay in "
                          "the file"))
    for key, value in lines:
        print(f"{key:>11}  {value}")


def cmd_info(args) -> int:
    summary = summarize(args.file, args.sensor)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


def cmd_convert(args) -> int:
    from anonynoise.atomic import refuse_overwriting_input
    from anonynoise.io import open_events, write_events

    refuse_overwriting_input(args.input, args.output)
    with open_events(args.input, args.sensor) as reader:
        n = write_events(args.output, iter(reader), reader.sensor_size)
        size = reader.sensor_size
    print(f"wrote {n:,} events to {args.output}")
    print_npy_note(args.output, size)
    return 0


def print_npy_note(output, size) -> None:
    if Path(output).suffix.lower() == ".npy":
        print(f"note: .npy files do not store the sensor size; read it back with --sensor "
              f"{size[0]}x{size[1]}")


def cmd_demo(args) -> int:
    """The core on the built-in example stream, window by window, until the stream exists."""
    if args.sensor[0] > 1280 or args.sensor[1] > 720:
        raise AnonyNoiseError(f"--sensor {args.sensor[0]}x{args.sensor[1]}: the demo goes up "
                              "to 1280x720")
    import numpy as np

    from anonynoise import represent
    from anonynoise.examples import clustered_stream
    from anonynoise.io import Aedat4Writer

    width, height = args.sensor
    if args.window_ms * 1000 > args.seconds * 1e6:
        raise AnonyNoiseError(f"--window-ms {args.window_ms} is longer than --seconds "
                              f"{args.seconds:g}")
    represent.warm_up()
    events = clustered_stream(width, height, duration_s=args.seconds, seed=None)
    window_us, bins = args.window_ms * 1000, 5
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnonyNoiseError(f"{out_dir}: cannot create the output folder: "
                              f"{e.strerror or e}") from None
    out_path = out_dir / "demo-resampled.aedat4"
    print(f"built-in example: {len(events):,} events of 16 moving blobs on a {width}x{height} "
          f"sensor, {args.seconds:g} s, cut into {args.window_ms} ms windows of {bins} bins")
    counts = np.empty((bins, 2, height, width), np.float32)
    t_fwd = t_inv = 0.0
    n_in = n_out = n_windows = 0
    with Aedat4Writer(out_path, (width, height), camera_name="AnonyNoise demo") as writer:
        for k in range(int(args.seconds * 1e6) // window_us):  # complete windows only
            t0 = k * window_us
            window = events.slice_time(t0, t0 + window_us)
            a = time.perf_counter()
            represent.events_to_counts(window, t0, t0 + window_us, bins, out=counts)
            b = time.perf_counter()
            resampled = represent.counts_to_events(counts, t0, t0 + window_us)
            c = time.perf_counter()
            writer.write(resampled)
            t_fwd, t_inv = t_fwd + (b - a), t_inv + (c - b)
            n_in, n_out, n_windows = n_in + len(window), n_out + len(resampled), n_windows + 1
    print(f"{n_windows} windows: events -> ({bins}, 2, {height}, {width}) float32 at "
          f"{n_in / max(t_fwd, 1e-9) / 1e6:.0f} M events/s, tensor -> events at "
          f"{n_out / max(t_inv, 1e-9) / 1e6:.0f} M events/s, {n_in:,} events in, "
          f"{n_out:,} out")
    print(f"the round trip alone (events -> tensor -> events, no anonymizer: `anonynoise "
          f"anonymize` and anonynoise-stream add the model) went to {out_path}:")
    _print_summary(summarize(str(out_path)))
    return 0


def cmd_synth_dataset(args) -> int:
    from anonynoise.synth.dataset import DatasetConfig, generate_dataset

    config = DatasetConfig(users=args.users, test_users=args.test_users, reps=args.reps,
                           seed=args.seed, size=args.size, duration_s=args.duration,
                           cues=tuple(args.cues))
    config.check()
    bar = _progress_bar(len(range(config.users)) * config.reps * 11, "recordings")
    root = generate_dataset(args.out, config, workers=args.workers, force=args.force,
                            progress=lambda done, total: bar.update(1))
    bar.close()
    manifest = json.loads((root / "anonynoise-synth.json").read_text())
    print(f"wrote {manifest['recordings']} recordings ({manifest['events']:,} events) of "
          f"{config.users} people ({config.test_users} for testing) to {root}")
    return 0


def cmd_synth_record(args) -> int:
    from anonynoise.io import Aedat4Writer
    from anonynoise.synth.gestures import GESTURES
    from anonynoise.synth.scene import LiveScene

    if Path(args.out).suffix.lower() != ".aedat4":  # the writer would not look at the name
        raise AnonyNoiseError(f"{args.out}: synth record writes .aedat4 (convert it to .npz "
                              "or .npy afterwards with `anonynoise convert`)")
    scene = LiveScene(args.size, args.size, seed=args.seed, realtime=args.realtime)
    end_us = int(args.seconds * 1e6)
    chunks = -(-end_us // int(scene.chunk_us))  # the chunks that cover [0, end)
    n = 0
    with Aedat4Writer(args.out, (args.size, args.size), camera_name="AnonyNoise synth") as w:
        for batch in itertools.islice(scene, chunks):
            batch = batch.slice_time(0, end_us)
            w.write(batch)
            n += len(batch)
    done = [GESTURES[g] for start, g in scene.gestures if start * 1e6 < end_us]
    print(f"wrote {n:,} events ({args.seconds:g} s, gestures: {', '.join(done)}) to {args.out}")
    return 0


def cmd_synth_picture(args) -> int:
    from anonynoise.synth.picture import gesture_picture

    print(f"wrote {gesture_picture(args.out)}")
    return 0


def _progress_bar(total: int, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, unit=f" {unit}", disable=not sys.stderr.isatty(), file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="anonynoise", description="AnonyNoise core tools.")
    sub = ap.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="describe an event file (.aedat4, .raw, .dat, .npy, .npz)")
    info.add_argument("file")
    info.add_argument("--sensor", type=parse_sensor, metavar="WxH",
                      help="sensor size where the file's header has none")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=cmd_info)
    conv = sub.add_parser("convert", help="convert an event file (to .aedat4, .npz or .npy)")
    conv.add_argument("input")
    conv.add_argument("output")
    conv.add_argument("--sensor", type=parse_sensor, metavar="WxH",
                      help="sensor size where the input's header has none")
    conv.set_defaults(func=cmd_convert)
    anon = sub.add_parser("anonymize", help="anonymize an event file (to .aedat4, .npy or .npz)")
    anon.add_argument("input")
    anon.add_argument("output")
    anon.add_argument("--model", default=None,
                      help="anonymizer checkpoint (the shipped default), or none: the privacy "
                           "filters alone (--filters with warp or jitter)")
    anon.add_argument("--window-ms", type=bounded(float, 0.1, 60_000, "--window-ms"),
                      default=None, help="window length (default: the model's)")
    anon.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu")
    anon.add_argument("--sensor", type=parse_sensor, metavar="WxH",
                      help="sensor size where the input's header has none")
    anon.add_argument("--absolute-time", action="store_true",
                      help="keep the input's timestamps (default: start at 0)")
    anon.add_argument("--allow-weak", action="store_true",
                      help="accept a checkpoint whose noise is near zero")
    add_filter_arguments(anon)
    anon.set_defaults(func=cmd_anonymize)
    demo = sub.add_parser("demo", help="run the core on the built-in example stream")
    demo.add_argument("--sensor", type=parse_sensor, default=(128, 128), metavar="WxH",
                      help="sensor size (default 128x128, at most 1280x720)")
    demo.add_argument("--seconds", type=bounded(float, 0.01, 600, "--seconds"), default=2.0,
                      help="length of the example stream (default 2)")
    demo.add_argument("--window-ms", type=bounded(int, 1, 10_000, "--window-ms"), default=20,
                      help="window length (default 20)")
    demo.add_argument("--out", default="demo-output", help="folder for the output recording")
    demo.set_defaults(func=cmd_demo)
    _synth_parser(sub)
    return ap


def cmd_anonymize(args) -> int:
    import logging

    from anonynoise.memory import keep_freed_memory
    from anonynoise.offline import anonymize_file

    logging.basicConfig(level=logging.WARNING, format="anonynoise: %(message)s")
    keep_freed_memory()  # a large sensor's window tensors, reused instead of faulted in
    s = anonymize_file(args.input, args.output, args.model, window_ms=args.window_ms,
                       device=args.device, sensor_size=args.sensor,
                       absolute_time=args.absolute_time, allow_weak=args.allow_weak,
                       filters=filter_config(args))
    print(f"wrote {args.output}: {s['events_out']:,} anonymized events from {s['events_in']:,} "
          f"in {s['windows']} windows ({s['refused']} dropped: anonymization failed"
          + (f"; {s['time_jumps']} jumps in event time skipped, the largest "
             f"{s['time_jump_largest_s']:.0f} s" if s["time_jumps"] else "") + ")")
    print_npy_note(args.output, s["sensor_size"])
    return 0


def _synth_parser(sub) -> None:
    from anonynoise.synth.people import ALL_CUES

    synth = sub.add_parser("synth", help="the built-in synthetic benchmark (people doing "
                                         "gestures, as events)")
    ssub = synth.add_subparsers(dest="synth_command", required=True)
    ds = ssub.add_parser("dataset", help="write the benchmark in tonic's DVS-Gesture layout")
    ds.add_argument("out", help="folder; the dataset goes to OUT/DVSGesture")
    ds.add_argument("--users", type=bounded(int, 2, 999, "--users"), default=40)
    ds.add_argument("--test-users", type=bounded(int, 1, 998, "--test-users"), default=10)
    ds.add_argument("--reps", type=bounded(int, 1, 5, "--reps"), default=2,
                    help="sessions per person, each under another lighting (default 2)")
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--size", type=bounded(int, 16, 1024, "--size"), default=128,
                    help="sensor width and height in pixels (default 128; 64 for quick runs)")
    ds.add_argument("--duration", type=bounded(float, 0.2, 60, "--duration"), default=3.0,
                    help="seconds per recording (default 3)")
    ds.add_argument("--cues", nargs="+", choices=ALL_CUES, default=list(ALL_CUES),
                    help="identity cues people differ in (default all; for ablations)")
    ds.add_argument("--workers", type=bounded(int, 1, 256, "--workers"), default=None,
                    help="processes (default: one per CPU)")
    ds.add_argument("--force", action="store_true", help="replace an existing dataset")
    ds.set_defaults(func=cmd_synth_dataset)
    rec = ssub.add_parser("record", help="record a person doing random gestures to .aedat4")
    rec.add_argument("out")
    rec.add_argument("--seconds", type=bounded(float, 0.1, 3600, "--seconds"), default=10.0)
    rec.add_argument("--size", type=bounded(int, 16, 1024, "--size"), default=128)
    rec.add_argument("--seed", type=int, default=None, help="default: a different person "
                                                            "every time")
    rec.add_argument("--realtime", action="store_true", help="pace the recording in real time")
    rec.set_defaults(func=cmd_synth_record)
    pic = ssub.add_parser("picture", help="a PNG of a few people and gestures as events")
    pic.add_argument("out")
    pic.set_defaults(func=cmd_synth_picture)


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


def run(main, argv=None, prog: str = "anonynoise", sigterm_interrupts: bool = False) -> int:
    """Call main(argv), turning project errors into one line and an exit status. With
    `sigterm_interrupts`, SIGTERM stops it as Ctrl-C does (sigterm_as_interrupt): for the
    commands with worker processes or partial output, not for the stream and the viewer,
    which stop on their own terms."""
    try:
        with sigterm_as_interrupt() if sigterm_interrupts else contextlib.nullcontext():
            return main(argv)
    except AnonyNoiseError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
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


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv=None) -> int:
    return run(_main, argv, sigterm_interrupts=True)  # synth dataset's workers, partial files


if __name__ == "__main__":
    sys.exit(main())
