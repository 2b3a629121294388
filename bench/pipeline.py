"""The streaming pipeline end to end: replay -> windows -> anonymizer -> ZeroMQ + recorder.

    python bench/pipeline.py            # the full table (under two minutes)
    python bench/pipeline.py --tiny     # a smoke run

Each row replays the built-in clustered stream (anonynoise.examples) from an .npz file with
50 ms windows (5 s of events; the fast 128x128 light-net replays, the target's case, 10 s, so
that a replay's fixed costs, its first window and the recorder's last, weigh less) through the
real Pipeline, a lossless ZeroMQ endpoint with a subscriber that reads everything, and the
.aedat4 recorder on or off. As fast as possible, it reports how many times real time the
pipeline runs (the best of 3 replays, taking turns with the other fast cases: the machine is
shared); paced (real time), the p50 / p99 latency from the end of a window (on the replay's
clock) to its publication, and whether windows were dropped.

Targets (issue 6, this 2-core CPU): fast replay of 1 M ev/s at 128x128 with the light net
>= 5x real time; paced p99 <= 20 ms; at 346x260 and 2 M ev/s paced replay keeps up.
Issue 39: at 1280x720 the real Prophesee recording ../shared/data/real/sky_imx636.dat (10.8 s,
1.2 M events; skipped where absent) replayed fast with the recorder on >= 2x real time, and
paced with every window sent and p99 <= 100 ms; a synthetic 1280x720 stream of 1 M ev/s
paced with no window dropped. The 640x480 rows are for the docs' table of sensor sizes.
The "filters" rows run the privacy filters alone (the shipped model's, no net).
The light net is the shipped default model (anonynoise/models/default_anonymizer.pt), behind
the privacy filters it was trained behind (as the stream runs it); the paper net is untrained with its output bias set to half a count (speed does not depend on the
weights; the number of output events does, and the runtime caps it at 2.9 per input event).
The paper net's rows replay 1 s: it is far from real time on a CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise.anonymizer import Anonymizer  # noqa: E402
from anonynoise.checkpoint import Representation, save_checkpoint  # noqa: E402
from anonynoise.examples import clustered_stream  # noqa: E402
from anonynoise.io import save_npz  # noqa: E402
from anonynoise.models import PaperAnonNet  # noqa: E402
from anonynoise.offline import default_model  # noqa: E402
from stream.client import StreamClient  # noqa: E402
from stream.pipeline import Pipeline, StreamConfig  # noqa: E402
from stream.publisher import Publisher  # noqa: E402
from stream.sinks import DVNetworkSink, RecorderSink  # noqa: E402
from stream.sources import ReplaySource  # noqa: E402

WINDOW_US = 50_000


SKY = Path(__file__).resolve().parent.parent.parent / "shared/data/real/sky_imx636.dat"


def anonymizer_for(kind: str, folder: Path, threads: int) -> Anonymizer:
    if kind == "filters":  # the default: the shipped net's filters, no net
        return Anonymizer(None, "cpu", threads=threads)
    return Anonymizer(checkpoint(kind, folder), "cpu", threads=threads)


def checkpoint(kind: str, folder: Path) -> Path:
    if kind == "light":
        return default_model()
    torch.manual_seed(0)
    net = PaperAnonNet(10)
    last = net.convs3[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, 0.5)  # noise of half a count everywhere
    return save_checkpoint(folder / f"{kind}.pt", net, Representation(window_us=WINDOW_US))


def run(kind: str, size: tuple[int, int], rate: float, seconds: float, fast: bool,
        folder: Path, threads: int, record: bool = True, live: bool = False,
        dv_sink: bool = False) -> dict:
    """One replay through the Pipeline. live: the live PUB endpoint (a slow subscriber loses
    windows) instead of the lossless one; dv_sink: the DV network output on as well."""
    if isinstance(size, Path):  # a real recording, replayed whole
        from anonynoise.io import open_events

        recording = size
        reader = open_events(recording)
        w, h = reader.sensor_size
        t = np.concatenate([b.t[[0, -1]] for b in reader if len(b)])
        seconds = (t.max() - t.min()) / 1e6
    else:
        w, h = size
        recording = folder / f"in-{w}x{h}-{rate:g}-{seconds:g}.npz"
        if not recording.exists():
            save_npz(recording, clustered_stream(w, h, seconds, rate, seed=1))
    anonymizer = anonymizer_for(kind, folder, threads)
    anonymizer.warm_up(w, h)
    address = f"ipc://{folder}/bench-{kind}-{'live' if live else 'lossless'}"
    publisher = Publisher(address, None) if live else Publisher(None, address)
    client = StreamClient(address, timeout_s=0.2)
    received, finished = [], threading.Event()

    def read():  # until the publisher is closed and nothing came for 0.2 s
        while True:
            received.extend(len(x.events) for x in client)
            if finished.is_set():
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if live:
        time.sleep(0.5)  # let the subscription arrive (PUB sends nothing to late joiners)
    else:
        publisher.wait_for_lossless_subscriber(10)
    recorder = RecorderSink(folder / "out.aedat4", w, h) if record else None
    sinks = [recorder] if record else []
    dv_reader = None
    if dv_sink:
        port = _free_port()
        sinks.append(DVNetworkSink(port, w, h))
        # a DV client that reads everything: without one the sink builds nothing
        dv_reader = threading.Thread(target=_read_dv, args=(port, finished), daemon=True)
        dv_reader.start()
        time.sleep(0.5)  # let it connect
    source = ReplaySource(recording, speed=None if fast else 1.0)
    pipeline = Pipeline(source, anonymizer, publisher, sinks,
                        StreamConfig(window_us=WINDOW_US), paced=not fast)
    start = time.perf_counter()
    status = pipeline.run()
    for sink in sinks:
        sink.close()
    wall = time.perf_counter() - start
    publisher.close()
    finished.set()
    reader.join(10)
    if dv_reader is not None:
        dv_reader.join(10)
    client.close()
    real = isinstance(size, Path)
    return {"net": kind, "size": f"{w}x{h}" + (f" {size.stem}" if real else ""),
            "rate": status["events_in"] / seconds if real else rate,
            "mode": "fast" if fast else "paced",
            "recorder": "on" if record else "off", "endpoint": "live" if live else "lossless",
            "dv": "on" if dv_sink else "off",
            "x_real_time": seconds / wall, "p50": status["latency_ms_p50"],
            "p99": status["latency_ms_p99"], "windows": status["windows_out"],
            "received": len(received), "dropped": sum(status["dropped"].values()),
            "out_per_in": status["events_out"] / max(status["events_in"], 1)}


def _read_dv(port: int, finished: threading.Event) -> None:
    import dv_processing as dv

    reader = dv.io.NetworkReader("127.0.0.1", port)
    while not finished.is_set():
        if reader.getNextEventBatch() is None:
            time.sleep(0.001)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def zmq_throughput(events_per_window: int, windows: int, transport: str, folder: Path) -> dict:
    """Windows of n events through the lossless endpoint to a client, nothing else: events/s
    and MB/s of the protocol (13 bytes per event) on this machine."""
    from anonynoise.events import EventBatch, to_packed
    from stream.protocol import WindowHeader, new_session_id

    rng = np.random.default_rng(0)
    n = events_per_window
    batch = EventBatch(np.sort(rng.integers(0, 50_000, n)).astype(np.int64),
                       rng.integers(0, 640, n).astype(np.int16),
                       rng.integers(0, 480, n).astype(np.int16),
                       rng.integers(0, 2, n).astype(np.uint8), 640, 480)
    address = f"ipc://{folder}/zmq-{n}" if transport == "ipc" else f"tcp://127.0.0.1:{_free_port()}"
    publisher = Publisher(None, address)
    client = StreamClient(address, timeout_s=5)
    got, last = [], [0.0]

    def read():
        for x in client:  # decoded to numpy, as a consumer gets them
            got.append(len(x.events))
            last[0] = time.perf_counter()
            if len(got) == windows:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    publisher.wait_for_lossless_subscriber(10)
    session = new_session_id()
    # each window's events inside its own [t_start, t_end), as a consumer checks them; packed
    # before the clock starts, as the pipeline packs once for every endpoint
    payloads = [to_packed(batch, seq * 50_000) for seq in range(windows)]
    start = time.perf_counter()
    for seq in range(windows):
        header = WindowHeader(session=session, seq=seq, t_start=seq * 50_000,
                              t_end=(seq + 1) * 50_000, width=640, height=480, events=n)
        publisher.publish(header, payloads[seq], wait=True)
    reader.join(30)
    wall = max(last[0] - start, 1e-9)
    publisher.close()
    client.close()
    return {"events_per_window": n, "transport": transport, "windows": windows,
            "received": len(got), "events_per_s": n * len(got) / wall,
            "mb_per_s": n * len(got) * 13 / wall / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--seconds", type=float, default=5.0, help="event time of a replay")
    ap.add_argument("--fast-seconds", type=float, default=10.0,
                    help="event time of the light net's fast 128x128 replays (the target's "
                         "case): a replay's fixed costs weigh less")
    ap.add_argument("--threads", type=int, default=1,
                    help="model threads (the recorder and ZeroMQ need the other core)")
    args = ap.parse_args(argv)
    seconds = 0.5 if args.tiny else args.seconds
    fast_seconds = 0.5 if args.tiny else args.fast_seconds
    # (net, sensor, rate, fast, recorder, live endpoint, DV sink)
    s128, s346, s640, s1280 = (128, 128), (346, 260), (640, 480), (1280, 720)
    cases = [("light", s128, 1e6, True, True, False, False),
             ("light", s128, 1e6, True, False, False, False),
             ("light", s128, 1e6, False, True, False, False),
             ("light", s128, 1e6, False, False, False, False),
             ("light", s128, 1e6, False, False, True, False),
             ("light", s128, 1e6, False, False, False, True),
             ("light", s346, 2e6, False, True, False, False),
             ("light", s346, 2e6, False, False, False, False),
             ("light", s346, 2e6, True, False, False, False),
             ("paper", s128, 1e6, True, False, False, False),
             ("paper", s128, 1e6, False, False, False, False),
             ("light", s640, 2e6, True, True, False, False),
             ("light", s640, 2e6, False, True, False, False),
             ("light", s1280, 1e6, False, True, False, False),
             ("filters", s1280, 1e6, False, True, False, False)]
    if SKY.is_file():
        cases += [("light", SKY, None, True, True, False, False),
                  ("light", SKY, None, False, True, False, False),
                  ("filters", SKY, None, True, True, False, False)]
    if args.tiny:
        cases = [("light", (64, 48), 2e5, True, True, False, False),
                 ("light", (64, 48), 2e5, False, True, False, False),
                 ("light", (64, 48), 2e5, False, False, True, True),
                 ("filters", (64, 48), 2e5, False, True, False, False)]
    print("| net | sensor | rate (ev/s) | replay | recorder | endpoint | DV sink | x real time | "
          "latency p50 / p99 (ms) | windows sent / received | dropped | events out per in |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        def replay(case):
            kind, size, rate, fast, record, live, dv = case
            length = seconds if kind in ("light", "filters") else min(seconds, 1.0)
            if kind == "light" and fast and size == s128:
                length = fast_seconds
            return run(kind, size, rate, length, fast, Path(tmp), args.threads, record, live, dv)

        # The light net's fast replays: the best of 3, the cases taking turns round after
        # round so that a slow spell of the shared machine does not land on one of them alone.
        best = {}
        for _ in range(1 if args.tiny else 3):
            for case in cases:
                if case[0] in ("light", "filters") and case[3]:
                    r = replay(case)
                    if case not in best or r["x_real_time"] > best[case]["x_real_time"]:
                        best[case] = r
        for case in cases:
            r = best.get(case) or replay(case)
            lat = "-" if r["p50"] is None else f"{r['p50']:.1f} / {r['p99']:.1f}"
            print(f"| {r['net']} | {r['size']} | {r['rate']:.0e} | {r['mode']} | {r['recorder']} | "
                  f"{r['endpoint']} | {r['dv']} | "
                  f"{r['x_real_time']:.2f} | {lat} | {r['windows']} / {r['received']} | "
                  f"{r['dropped']} | {r['out_per_in']:.2f} |", flush=True)
        print()
        print("| ZeroMQ, lossless endpoint to one client | transport | windows | events/s | MB/s |")
        print("|---|---|---|---|---|")
        for n in (10_000, 100_000):
            for transport in ("ipc", "tcp"):
                z = zmq_throughput(n, 20 if args.tiny else 200, transport, Path(tmp))
                print(f"| {n:,} events per window | {transport} | {z['received']} / "
                      f"{z['windows']} | {z['events_per_s'] / 1e6:.1f} M | {z['mb_per_s']:.0f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
