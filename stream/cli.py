"""`anonynoise-stream`: camera or recording in, anonymized events out over ZeroMQ.

    anonynoise-stream                                  the embedded default: the shipped model
                                                       on the synthetic live source
    anonynoise-stream --replay face.aedat4 --record out.aedat4
    anonynoise-stream --camera [SERIAL] --model my.pt --publish tcp://127.0.0.1:5555
    anonynoise-stream keys DIR                         CURVE keys for non-loopback publishing

Thin: parse, build source, anonymizer, publisher and sinks, run the pipeline, report.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from anonynoise.atomic import refuse_overwriting_input
from anonynoise.cli import add_filter_arguments, bounded, filter_config, parse_sensor, run
from anonynoise.errors import AnonyNoiseError

log = logging.getLogger("stream")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5555"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="anonynoise-stream", description=__doc__.splitlines()[0],
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
                    help="anonymizer checkpoint (the shipped default), or none: the privacy "
                         "filters alone (--filters with warp or jitter)")
    ap.add_argument("--allow-weak", action="store_true",
                    help="accept a checkpoint whose noise is near zero")
    ap.add_argument("--window-ms", type=bounded(float, 0.1, 60_000, "--window-ms"), default=None,
                    help="window length (default: the one the model was trained with)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when there is a GPU), cpu, cuda")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for the model (default: all cores but one, which the "
                         "source, the publisher and the sinks need; more makes latency spikes)")
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
    ap.add_argument("--preview", action="store_true",
                    help="a local window: the raw input next to the anonymized output (a demo "
                         "on this screen; raw events never leave the process)")
    ap.add_argument("--preview-screenshot", metavar="OUT.png", default=None,
                    help=argparse.SUPPRESS)  # tests: save the last preview picture
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


def status_line(s: dict, final: bool = False) -> str:
    d = s["dropped"]
    lat = "" if s["latency_ms_p50"] is None else \
        f", latency p50 {s['latency_ms_p50']:.1f} ms p99 {s['latency_ms_p99']:.1f} ms"
    if s["latency_ms_p50"] is not None and s["latency_ms_p50"] > BEHIND_MS:
        lat += (" - slower than real time: the anonymizer cannot keep up with this source "
                "here (a camera loses windows; for a file, --fast or `anonynoise anonymize`)")
    # in the last line, windows cut but never sent (still queued when a signal stopped us)
    unsent = s["windows_in"] - s["windows_out"] - d["queue"] - d["anonymization"]
    return (f"{s['seconds']:.1f} s: in {s['events_in_per_s'] / 1e6:.2f} M ev/s, out "
            f"{s['events_out_per_s'] / 1e6:.2f} M ev/s, windows {s['windows_out']}/"
            f"{s['windows_in']} (dropped: queue {d['queue']}, anonymization "
            f"{d['anonymization']}, sink {d['sink']}; burst events cut {d['burst_events']}"
            + (f"; {unsent} still queued at the stop" if final and unsent > 0 else "") + ")"
            + lat)


def stream_main(args) -> int:
    from anonynoise.memory import keep_freed_memory
    from anonynoise.offline import open_anonymizer
    from stream.pipeline import Pipeline, StreamConfig
    from stream.publisher import Publisher
    from stream.sinks import DVNetworkSink, RecorderSink
    from anonynoise.windower import warm_up

    if args.replay and args.record:
        refuse_overwriting_input(args.replay, args.record)
    keep_freed_memory()  # a large sensor's window tensors, reused instead of faulted in
    if args.preview:  # before opening anything: no display, no stream
        from stream.preview import NO_DISPLAY_INSTEAD
        from viewer.app import check_display

        check_display(instead=NO_DISPLAY_INSTEAD)
    anonymizer, window, identity = open_anonymizer(
        args.model, args.device, window_ms=args.window_ms, threads=model_threads(args.threads),
        allow_weak=args.allow_weak, filters=filter_config(args))
    source = make_source(args)
    anonymizer.check_source(source.width, source.height,
                            window if anonymizer.representation.window_us is not None else None)
    anonymizer.warm_up(source.width, source.height)
    warm_up()
    publish = None if args.publish in (None, "none") else args.publish
    if not (publish or args.lossless or args.record or args.dv_port is not None):
        raise AnonyNoiseError("no output: give --publish, --lossless, --record or --dv-port")
    publisher = Publisher(publish, args.lossless, curve_keys=args.curve_keys,
                          insecure=args.insecure)
    sinks = []
    try:
        if args.record:
            sinks.append(RecorderSink(args.record, source.width, source.height))
        if args.dv_port is not None:
            sinks.append(DVNetworkSink(args.dv_port, source.width, source.height, args.dv_host,
                                       tls=tuple(args.dv_tls) if args.dv_tls else None,
                                       insecure=args.insecure))
        config = StreamConfig(window_us=window, max_window_events=args.max_window_events,
                              absolute_time=args.absolute_time)
        paced = source.live or (args.replay is not None and not args.fast)
        latest = None
        if args.preview:
            from stream.preview import LatestPair

            latest = LatestPair()
        pipeline = Pipeline(source, anonymizer, publisher, sinks, config,
                            identity, paced=paced,
                            speed=args.speed if args.replay else 1.0, preview=latest)
        if args.lossless and not source.live:
            log.info("waiting for a subscriber on %s", args.lossless)
            if not publisher.wait_for_lossless_subscriber(args.wait_subscriber):
                raise AnonyNoiseError(f"no subscriber on {args.lossless} within "
                                      f"{args.wait_subscriber} s")
        stopped_by = _on_signals(pipeline)
        reporter = _Reporter(pipeline, args.status_every)
        reporter.start()
        try:
            if latest is not None:
                from stream.preview import run_with_preview

                summary = run_with_preview(pipeline, source.width, source.height, latest,
                                           screenshot=args.preview_screenshot)
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
                log.error("%s", e)
        publisher.close()
    why = f"stopped by {stopped_by[0]}" if stopped_by else "source ended"
    print(f"anonynoise-stream: {why}: " + status_line(summary, final=True)
          + (f"; recorded {args.record}" if args.record else ""), file=sys.stderr)
    return 0


def model_threads(asked: int | None) -> int:
    """The model's CPU threads: as asked, else all cores but one. With every core, torch's
    parallel regions wait for a thread the source or a sink has pre-empted: on 2 cores the
    demo's net took up to 63 ms a window instead of 11, and the p99 latency doubled."""
    if asked is not None:
        if asked < 1:
            raise AnonyNoiseError(f"--threads must be at least 1, got {asked}")
        return asked
    return max(1, (os.cpu_count() or 1) - 1)


def _on_signals(pipeline) -> list:
    """SIGINT / SIGTERM stop the pipeline cleanly (recordings are closed, not cut)."""
    stopped_by: list = []

    def handler(signum, frame):
        if stopped_by:  # a second signal: the user does not want to wait for a clean stop
            print("anonynoise-stream: stopped at once (a recording may be incomplete)",
                  file=sys.stderr, flush=True)
            os._exit(130)
        stopped_by.append(signal.Signals(signum).name)
        pipeline.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
    return stopped_by


class _Reporter(threading.Thread):
    """A status line on stderr every few seconds."""

    def __init__(self, pipeline, every: float):
        super().__init__(name="status", daemon=True)
        self.pipeline, self.every = pipeline, every
        self._stop = threading.Event()

    def run(self) -> None:
        if self.every <= 0:
            return
        while not self._stop.wait(self.every):
            print("anonynoise-stream: " + status_line(self.pipeline.status()), file=sys.stderr,
                  flush=True)

    def stop(self) -> None:
        self._stop.set()


def keys_main(argv) -> int:
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="anonynoise-stream: %(message)s")
    return stream_main(args)


def main(argv=None) -> int:
    return run(_main, argv, prog="anonynoise-stream")


if __name__ == "__main__":
    sys.exit(main())
