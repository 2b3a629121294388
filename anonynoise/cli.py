"""`anonynoise`: the core's command line (inspect and convert event files, run the demo).

Thin by design: parse, call the library, print. Bad input ends in one line on stderr and a
non-zero exit status, never a traceback (set ANONYNOISE_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

from anonynoise.cli_support import (ANONYMIZER_FLAGS, add_filter_arguments, bounded,
                                    filter_config, parse_sensor, print_npy_note, run)
from anonynoise.errors import AnonyNoiseError


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


def _sensor_source(source: str) -> str:
    """Where the sensor size came from, in the command line's terms."""
    from anonynoise.io import FROM_CALLER, FROM_EXTENT

    return {FROM_CALLER: "--sensor",
            FROM_EXTENT: f"{FROM_EXTENT}; give --sensor WxH if it is wrong"}.get(source, source)


def _print_summary(s: dict) -> None:
    rate = s["event_rate_per_s"]
    streams = ["events"] + [f"{k} ({v})" for k, v in s["other_streams"].items()]
    lines = [
        ("file", s["path"]),
        ("format", s["format"] + (f", camera {s['camera']}" if s["camera"] else "")),
        ("sensor", f"{s['sensor'][0]}x{s['sensor'][1]} "
                   f"(from {_sensor_source(s['sensor_source'])})"),
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
                      help="none (the default): the privacy filters alone; net: the shipped "
                           "learned net behind its filters (docs/model-card.md); or a "
                           "checkpoint")
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


# the flags of the library parameters errors can name (cli_support.run)
FLAGS = ANONYMIZER_FLAGS | {"users": "--users", "test_users": "--test-users", "reps": "--reps",
                            "size": "--size", "duration_s": "--duration", "force": "--force"}


def _main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


def main(argv=None) -> int:
    # synth dataset's workers and partial files: SIGTERM interrupts
    return run(_main, argv, sigterm_interrupts=True, flags=FLAGS)


if __name__ == "__main__":
    sys.exit(main())
