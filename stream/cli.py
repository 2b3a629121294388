"""`anonynoise-stream`: camera or recording in, anonymized events out over ZeroMQ.

    anonynoise-stream                                  the embedded default: the shipped model
                                                       on the synthetic live source
    anonynoise-stream --replay face.aedat4 --record out.aedat4
    anonynoise-stream --camera [SERIAL] --model my.pt --publish tcp://127.0.0.1:5555
    anonynoise-stream keys DIR                         CURVE keys for non-loopback publishing

Thin: parse, build source, anonymizer, publisher and sinks, run the pipeline, report.
"""

from __future__ import annotations

# Only what is already loaded up here: main() installs its signal handlers first, before
# anything is imported (anonynoise imports numba, the service torch: a second and more).
import os
import signal
import sys
import threading

PROG = "anonynoise-stream"
# the name this run's lines start with: PROG, or the command that runs the same stream
# (anonynoise-preview; serve sets it)
_prog = [PROG]
DEFAULT_PUBLISH = "tcp://127.0.0.1:5555"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:  # noqa: F821 - imported below
    """The stream's options; `prog` for the commands that run the same stream
    (anonynoise-preview)."""
    import argparse

    from anonynoise.cli_support import add_filter_arguments, bounded, parse_sensor

    ap = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                 epilog="anonynoise-stream keys DIR [--clients NAME ...] makes "
                                        "the CURVE key pairs that --curve-keys DIR reads.")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--replay", metavar="FILE",
                     help="replay a recording (.aedat4, .raw, .dat, .npy, .npz)")
    src.add_argument("--camera", nargs="?", const="", metavar="SERIAL",
                     help="a live DVS camera (the first one, or this serial)")
    src.add_argument("--synthetic", action="store_true",
                     help="the synthetic person (the default source)")
    ap.add_argument("--roi", type=int, nargs=4, metavar=("X", "Y", "W", "H"), default=None,
                    help="camera region of interest (cameras that have one)")
    ap.add_argument("--subsample", type=int, default=1,
                    help="camera subsampling factor (cameras that have it)")
    ap.add_argument("--sensor", type=parse_sensor, default=None,
                    help="WxH for files without a size (.npy); the synthetic source's size "
                         "(default 128x128)")
    ap.add_argument("--speed", type=bounded(float, 1e-3, 1e6, "--speed"), default=1.0,
                    help="replay speed (1 = real time)")
    ap.add_argument("--fast", action="store_true", help="replay as fast as possible")
    ap.add_argument("--loop", action="store_true", help="replay again and again")
    ap.add_argument("--model", default=None,
                    help="none (the default): the privacy filters alone; net: the shipped "
                         "learned net behind its filters (docs/model-card.md); or a "
                         "checkpoint")
    ap.add_argument("--allow-weak", action="store_true",
                    help="accept a checkpoint whose noise is near zero")
    ap.add_argument("--window-ms", type=bounded(float, 0.1, 60_000, "--window-ms"), default=None,
                    help="window length (default: the one the model was trained with)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for the model, at most the cores this process may use "
                         "(default: all cores but one, which the source, the publisher and the "
                         "sinks need; more makes latency spikes)")
    ap.add_argument("--publish", default=DEFAULT_PUBLISH,
                    help=f"live endpoint, PUB (default {DEFAULT_PUBLISH}; 'none' to disable)")
    ap.add_argument("--lossless", default=None, metavar="ADDR",
                    help="lossless endpoint (XPUB, waits for subscribers of a replay)")
    ap.add_argument("--wait-subscriber", type=bounded(float, 0.0, 1e9, "--wait-subscriber"),
                    default=None, metavar="SECONDS",
                    help="with --lossless: wait this long for a subscriber before replaying "
                         "(default: forever)")
    ap.add_argument("--record", metavar="OUT.aedat4", help="record the anonymized stream")
    ap.add_argument("--dv-port", type=bounded(int, 1, 65535, "--dv-port"), default=None,
                    help="serve DV's network protocol on this TCP port")
    ap.add_argument("--dv-host", default="127.0.0.1",
                    help="the address --dv-port listens on (default 127.0.0.1; any other "
                         "needs --dv-tls or --insecure)")
    ap.add_argument("--dv-tls", nargs=3, metavar=("CERT", "KEY", "CA"), default=None)
    ap.add_argument("--curve-keys", metavar="DIR", default=None,
                    help="CURVE keys (from `anonynoise-stream keys DIR`) for non-loopback use")
    ap.add_argument("--insecure", action="store_true",
                    help="allow non-loopback endpoints without encryption")
    ap.add_argument("--absolute-time", action="store_true",
                    help="keep the source's timestamps (default: relative to the stream start)")
    ap.add_argument("--status-every", type=bounded(float, 0.0, 1e9, "--status-every"),
                    default=5.0, metavar="SECONDS",
                    help="status line interval on stderr (0: none)")
    ap.add_argument("--max-window-events", type=bounded(int, 1, 10**9, "--max-window-events"),
                    default=2_000_000,
                    help="a window with more events is thinned to this many, and counted, "
                         "rather than stalling the stream (default 2,000,000)")
    add_filter_arguments(ap)
    return ap


def make_source(args):
    from stream.sources import CameraSource, ReplaySource, SyntheticSource

    if args.replay:
        return ReplaySource(args.replay, speed=None if args.fast else args.speed, loop=args.loop,
                            sensor_size=args.sensor)
    if args.camera is not None:
        return CameraSource(args.camera or None, roi=args.roi, subsample=args.subsample)
    w, h = args.sensor or (128, 128)
    return SyntheticSource(w, h, realtime=not args.fast)


# A paced source's median latency past this: the anonymizer is slower than the source. A
# replay waits for it, so its latency grows without bound (a 1280x720 recording: p50 15 s
# after 40 s); a camera's queue is full and windows are dropped instead.
BEHIND_MS = 1000.0


def event_rate(per_s: float) -> str:
    """An event rate in the unit that reads best: 850 ev/s, 12.3 k ev/s, 1.20 M ev/s."""
    per_s = max(0.0, float(per_s))
    if per_s < 999.5:
        return f"{per_s:.0f} ev/s"
    if per_s < 999_950:
        return f"{per_s / 1e3:.1f} k ev/s"
    if per_s < 999_995_000:
        return f"{per_s / 1e6:.2f} M ev/s"
    return f"{per_s / 1e9:.2f} G ev/s"


def status_line(s: dict, final: bool = False, previous: dict | None = None) -> str:
    """The status line of a pipeline status `s`. Rates are over the interval since `previous`
    (the reporter's last status), else over the whole run. Drop counters: windows lost to the
    queue, the anonymizer, a sink or a lossless subscriber; events cut from bursts and events
    that came after their window had closed."""
    d = s["dropped"]
    span = s["seconds"]
    in_rate, out_rate = s["events_in_per_s"], s["events_out_per_s"]
    windows_sent = s["windows_out"]
    if previous is not None and s["seconds"] > previous["seconds"] \
            and "events_in" in s and "events_in" in previous:
        span = s["seconds"] - previous["seconds"]
        in_rate = (s["events_in"] - previous["events_in"]) / span
        out_rate = (s["events_out"] - previous["events_out"]) / span
        windows_sent = s["windows_out"] - previous["windows_out"]
    load = s.get("load")
    # the anonymizer's working time per second of event time: under 100 % it keeps up live
    busy = "" if load is None else f", anonymizer busy {load:.0%} of real time"
    lat = "" if s["latency_ms_p50"] is None else \
        f", latency p50 {s['latency_ms_p50']:.1f} ms p99 {s['latency_ms_p99']:.1f} ms"
    if s["latency_ms_p50"] is not None and s["latency_ms_p50"] > BEHIND_MS:
        lat += (" - slower than real time: the anonymizer cannot keep up with this source "
                "here (a camera loses windows; for a file, --fast or `anonynoise anonymize`)")
    warning = ""
    if in_rate > 0 and out_rate <= 0:
        why = ("the model and privacy filters removed every event (check --filters and "
               "--model)") if windows_sent > 0 else "no window went out (see dropped)"
        over = "in this run" if previous is None else f"in the last {span:.1f} s"
        warning = f" - WARNING: events came in but none went out {over}: {why}"
    # in the last line, windows cut but never sent (still queued when a signal stopped us)
    unsent = s["windows_in"] - s["windows_out"] - d.get("queue", 0) - d.get("anonymization", 0)
    return (f"{s['seconds']:.1f} s: in {event_rate(in_rate)}, out {event_rate(out_rate)}, "
            f"windows {s['windows_out']}/{s['windows_in']} (dropped: queue {d.get('queue', 0)}, "
            f"anonymization {d.get('anonymization', 0)}, sink {d.get('sink', 0)}, lossless "
            f"{d.get('lossless', 0)}; burst events cut {d.get('burst_events', 0)}, late events "
            f"{d.get('late_events', 0)}"
            + (f"; {unsent} still queued at the stop" if final and unsent > 0 else "") + ")"
            + (f", time jumps skipped {s['time_jumps']} (largest "
               f"{s.get('time_jump_largest_s', 0):.0f} s)" if s.get("time_jumps") else "")
            + busy + lat + warning)


def stream_main(args, run=None, observe=None) -> int:
    """Run the stream that `args` asks for until it ends or is stopped. The seam for
    anonynoise-preview: `observe(raw, anonymized)` sees each window in this process (the
    pipeline's local observer; raw events go nowhere else) and `run(pipeline, width, height)`
    replaces pipeline.run() (it runs the pipeline and returns its summary)."""
    import logging

    from anonynoise.atomic import refuse_overwriting_input
    from anonynoise.cli_support import filter_config
    from anonynoise.errors import AnonyNoiseError
    from anonynoise.memory import keep_freed_memory
    from anonynoise.offline import open_anonymizer
    from stream.pipeline import Pipeline, StreamConfig
    from stream.publisher import Publisher
    from stream.sinks import DVNetworkSink, RecorderSink
    from anonynoise.windower import warm_up

    if args.replay and args.record:
        refuse_overwriting_input(args.replay, args.record)
    check_outputs(args)  # in the flags' terms, and before the model loads
    keep_freed_memory()  # a large sensor's window tensors, reused instead of faulted in
    anonymizer = open_anonymizer(
        args.model, args.device, window_ms=args.window_ms, threads=model_threads(args.threads),
        allow_weak=args.allow_weak, filters=filter_config(args))
    source = make_source(args)
    anonymizer.check_source(source.width, source.height)
    anonymizer.warm_up(source.width, source.height)
    warm_up()
    publish = None if args.publish in (None, "none") else args.publish
    if not (publish or args.lossless or args.record or args.dv_port is not None):
        raise AnonyNoiseError("no output: give --publish, --lossless, --record or --dv-port")
    publisher = Publisher(publish, args.lossless, curve_keys=args.curve_keys,
                          insecure=args.insecure)
    say_where(args, publish)
    sinks = []
    recorder = None
    try:
        if args.record:
            recorder = RecorderSink(args.record, source.width, source.height)
            sinks.append(recorder)
        if args.dv_port is not None:
            sinks.append(DVNetworkSink(args.dv_port, source.width, source.height, args.dv_host,
                                       tls=tuple(args.dv_tls) if args.dv_tls else None,
                                       insecure=args.insecure))
        config = StreamConfig(max_window_events=args.max_window_events,
                              absolute_time=args.absolute_time)
        paced = source.live or (args.replay is not None and not args.fast)
        pipeline = Pipeline(source, anonymizer, publisher, sinks, config,
                            anonymizer.identity, paced=paced,
                            speed=args.speed if args.replay else 1.0, preview=observe)
        if args.lossless and not source.live:
            logging.getLogger("stream").info("waiting for a subscriber on %s", args.lossless)
            _stage[0] = f"while waiting for a subscriber on {args.lossless}"
            if not publisher.wait_for_lossless_subscriber(args.wait_subscriber):
                raise AnonyNoiseError(f"no subscriber on {args.lossless} within "
                                      f"{args.wait_subscriber} s")
        say_grid(anonymizer, source.width, source.height)
        stopped_by = _on_signals(pipeline)  # from here a signal stops the stream cleanly
        reporter = _Reporter(pipeline, args.status_every)
        reporter.start()
        try:
            if run is not None:
                summary = run(pipeline, source.width, source.height)
            else:
                summary = pipeline.run()
        finally:
            reporter.stop()
        for sink in sinks:
            sink.close()
        sinks = []
    finally:
        for sink in sinks:  # an error: close what was opened (a recording stays complete)
            try:
                sink.close()
            except AnonyNoiseError as e:
                logging.getLogger("stream").error("%s", e)
        publisher.close()
    why = f"stopped by {stopped_by[0]}" if stopped_by else "source ended"
    if recorder is None:
        recorded = ""
    elif recorder.recorded:
        recorded = f"; recorded {args.record}"
    else:  # stopped before any window: an existing file is not replaced by an empty one
        recorded = (f"; nothing recorded: no window reached the recorder ({args.record} "
                    + ("left as it was)" if os.path.exists(args.record) else "not written)"))
    print(f"{_prog[0]}: {why}: " + status_line(summary, final=True) + recorded, file=sys.stderr)
    return 0


def say_where(args, publish: str | None) -> None:
    """Where the anonymized stream goes and the command that watches it, at the start, on
    stdout (stderr is for the status lines and the one line of an error)."""
    keys = f" --curve-keys {args.curve_keys}" if args.curve_keys else ""
    lines = [f"{name} stream on {address}; watch it with: anonynoise-view {address}{keys}"
             for name, address in (("live", publish), ("lossless", args.lossless)) if address]
    if args.record:
        lines.append(f"recording to {args.record}")
    if args.dv_port is not None:
        lines.append(f"DV network output on {args.dv_host}:{args.dv_port}")
    for line in lines:
        print(f"{_prog[0]}: {line}", flush=True)


def say_grid(anonymizer, width: int, height: int) -> None:
    """The privacy grid on this sensor, on stdout beside where the stream goes: what the
    jitter keeps of positions, and what a window's tensors cost (anonynoise.anonymizer)."""
    g = anonymizer.grid(width, height)
    jitter = "no jitter" if g["jitter_block"] is None else \
        f"jitter tiles {g['jitter_block']} px"
    grid = "windows at full resolution" if g["cell"] == 1 else \
        f"windows on a {g['grid'][0]}x{g['grid'][1]} grid of {g['cell']} px cells"
    print(f"{_prog[0]}: {width}x{height} sensor: {jitter}; {grid}", flush=True)


def check_outputs(args) -> None:
    """Refuse what the library would refuse later in its own terms (stream.publisher,
    stream.sinks), here in the flags' terms: a recording that is not .aedat4, and an endpoint
    reachable from other machines without encryption or --insecure."""
    from pathlib import Path

    from anonynoise.errors import AnonyNoiseError
    from stream.publisher import is_loopback

    if args.record and Path(args.record).suffix.lower() != ".aedat4":
        raise AnonyNoiseError(f"--record {args.record}: recordings are .aedat4 files")
    if args.insecure:
        return
    if args.curve_keys is None:
        for flag, address in (("--publish", args.publish), ("--lossless", args.lossless)):
            if address not in (None, "none") and not is_loopback(address):
                raise AnonyNoiseError(f"{flag} {address} is reachable from other machines: give "
                                      "--curve-keys DIR (make one with `anonynoise-stream keys "
                                      "DIR`) or say --insecure")
    host = f"[{args.dv_host}]" if ":" in args.dv_host else args.dv_host  # an IPv6 address
    if args.dv_port is not None and args.dv_tls is None \
            and not is_loopback(f"tcp://{host}:{args.dv_port}"):
        raise AnonyNoiseError(f"--dv-host {args.dv_host} is reachable from other machines: "
                              "give --dv-tls CERT KEY CA or say --insecure")


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset
    narrow), else the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def model_threads(asked: int | None) -> int:
    """The model's CPU threads: as asked (1 to the cores this process may use: more only
    oversubscribes the cores, and libgomp fails or the process crashes long before 100,000),
    else all cores but one. With every core, torch's parallel regions wait for a thread the
    source or a sink has pre-empted: on 2 cores the demo's net took up to 63 ms a window
    instead of 11, and the p99 latency doubled."""
    cores = machine_cores()
    if asked is not None:
        if not 1 <= asked <= cores:
            from anonynoise.errors import AnonyNoiseError

            raise AnonyNoiseError(f"--threads must be at least 1 and at most {cores} (the cores "
                                  f"this process may use), got {asked}")
        return asked
    return max(1, cores - 1)


# --- signals ---------------------------------------------------------------------------------
#
# From the first line of main() until the stream runs, SIGINT or SIGTERM ends the service at
# once with one line on stderr and 128 + the signal's number: the sink processes started so
# far are ended (a recorder removes its partial file; an existing recording is left as it was)
# and nothing else is waited for. While the stream runs, the first signal stops it cleanly
# (recordings are closed, not cut; status 0) and a second one ends it at once.

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stage = ["during start-up"]  # what the service was doing, for the early-stop line


def _say(line: str) -> None:
    """One line on stderr from a signal handler: straight to the file descriptor (the handler
    may have interrupted a write to sys.stderr)."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError, RuntimeError):
        pass
    try:
        os.write(2, (line + "\n").encode())
    except OSError:
        pass


def _end_now(signum: int, line: str) -> None:
    """End the process now: sink processes first, then one line, then 128 + signum."""
    for s in _STOP_SIGNALS:  # one stop is enough: further signals wait for this one
        signal.signal(s, signal.SIG_IGN)
    sinks = sys.modules.get("stream.sinks")
    if sinks is not None:
        try:
            sinks.end_all_children()
        except Exception:  # noqa: BLE001 - the children die with us anyway (PDEATHSIG)
            pass
    _say(line)
    os._exit(128 + signum)


def _stop_early(signum, frame) -> None:
    _end_now(signum, f"{_prog[0]}: stopped by {signal.Signals(signum).name} {_stage[0]}")


def _install_early_handlers() -> dict | None:
    """SIGINT / SIGTERM end the start-up at once (see above); the previous handlers, to put
    back, or None off the main thread (where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    _stage[0] = "during start-up"
    for s in _STOP_SIGNALS:
        signal.signal(s, _stop_early)
    return previous


def _on_signals(pipeline) -> list:
    """SIGINT / SIGTERM stop the pipeline cleanly (recordings are closed, not cut)."""
    stopped_by: list = []

    def handler(signum, frame):
        if stopped_by:  # a second signal: the user does not want to wait for a clean stop
            _end_now(signum, f"{_prog[0]}: stopped at once by a second "
                             f"{signal.Signals(signum).name} (a recording keeps the windows "
                             "that reached the recorder)")
        stopped_by.append(signal.Signals(signum).name)
        pipeline.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stopped_by


class _Reporter(threading.Thread):
    """A status line on stderr every few seconds, with the rates over that interval."""

    def __init__(self, pipeline, every: float):
        super().__init__(name="status", daemon=True)
        self.pipeline, self.every = pipeline, every
        self._stop = threading.Event()

    def run(self) -> None:
        if self.every <= 0:
            return
        previous = None
        while not self._stop.wait(self.every):
            status = self.pipeline.status()
            print(f"{_prog[0]}: " + status_line(status, previous=previous), file=sys.stderr,
                  flush=True)
            previous = status

    def stop(self) -> None:
        self._stop.set()


def keys_main(argv) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="anonynoise-stream keys",
                                 description="make CURVE key pairs for the server and clients")
    ap.add_argument("folder")
    ap.add_argument("--clients", nargs="+", default=["client"])
    args = ap.parse_args(argv)
    from stream.keys import make_keys

    folder = make_keys(args.folder, tuple(args.clients))
    print(f"keys in {folder}: server.key(_secret), clients/<name>.key(_secret); give each "
          "client its pair and server.key")
    return 0


def _main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["keys"]:
        return keys_main(argv[1:])
    return start_stream(build_parser().parse_args(argv))


def start_stream(args, run=None, observe=None) -> int:
    """What follows parsing in every command that runs the stream: check, log, stream_main."""
    model_threads(args.threads)  # a bad --threads: one line now, not after loading the model
    import logging

    logging.basicConfig(level=logging.INFO, format=f"{_prog[0]}: %(message)s")
    return stream_main(args, run=run, observe=observe)


def serve(command, argv=None, prog: str = PROG) -> int:
    """Run command(argv) as the stream's commands run: the early signal handlers from the
    first line, errors as one line and an exit status."""
    _prog[0] = prog
    previous = _install_early_handlers()  # first: a signal from now on ends in one line
    try:
        from anonynoise.cli_support import ANONYMIZER_FLAGS, run

        # the flags of the library parameters errors can name (cli_support.run)
        flags = ANONYMIZER_FLAGS | {"speed": "--speed", "tls": "--dv-tls",
                                    "curve_keys": "--curve-keys"}
        return run(command, argv, prog=prog, flags=flags)
    finally:
        if previous is not None:
            for s, handler in previous.items():
                signal.signal(s, handler)


def main(argv=None) -> int:
    return serve(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
