"""Privacy filters on events: ours (numba) and the nearest peers side by side, one core.

    python bench/filters.py            # the full run (about a minute)
    python bench/filters.py --tiny     # a few windows, to check the script still works

Stream: the clustered stream of peer-benchmarks.md (16 moving blobs + 15 % noise, 2 Mev/s) at
128x128, 346x260 and 640x480, cut into the stream's 50 ms windows (100k events each), timed per
window, the tools taking turns round after round (3 rounds), each keeping its best. No peer
does what our filters do, so each is set beside the peer doing the nearest job:

- refractory (at most one event per pixel and polarity in 10 ms, the state carried from
  window to window) beside tonic's RefractoryPeriod (10 ms, per window; a pure-Python loop,
  timed on the first 3 windows only);
- slots (the first event of each pixel and polarity per 10 ms slot) beside dv-processing's
  BackgroundActivityNoiseFilter (a per-pixel timestamp test as well, on the stream converted
  to a dv.EventStore once, untimed: dv has no fast numpy path);
- jitter (each event to a random pixel of its 4x4 block) beside tonic's SpatialJitter
  (Gaussian, variance 1.25 per axis, that of a uniform pixel of the block; outliers
  dropped);
- warp (a smooth warp map looked up per event, stochastic rounding) and the whole chain
  warp+slots+jitter: no peer; their share of the window's 50 ms is the number that counts.

The ratio is ours over the peer in events/s (above 1: ours faster).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import timedelta

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise import filters  # noqa: E402
from anonynoise.events import to_structured  # noqa: E402
from anonynoise.examples import clustered_stream  # noqa: E402
from anonynoise.io import to_event_store  # noqa: E402
from anonynoise.rng import rng_state  # noqa: E402

WINDOW_US = 50_000
BINS = 5  # slots of 10 ms
BLOCK = 4
TONIC_REFRACTORY_WINDOWS = 3


def bench_size(width, height, duration_s, rounds):
    """Rows (what, tool, events/s, ms/window, ours events/s or None) for one sensor size."""
    import dv_processing as dv
    import tonic.transforms as T

    events = clustered_stream(width, height, duration_s=duration_s, rate=2e6, seed=1)
    bounds = [(k * WINDOW_US, (k + 1) * WINDOW_US) for k in range(int(events.t[-1] // WINDOW_US))]
    slices = [events.slice_time(a, b) for a, b in bounds]
    structured = [to_structured(s) for s in slices]
    store = to_event_store(events)
    state = rng_state(0)
    warp = filters.smooth_warp_map(width, height, np.random.default_rng(0))
    chain = filters.PrivacyFilter(filters.FilterConfig("warp+slots+jitter", block=BLOCK))
    refractory = T.RefractoryPeriod(delta=10_000)
    spread = (BLOCK ** 2 - 1) / 12  # the variance of a uniform pixel of the block, per axis
    jitter = T.SpatialJitter((width, height, 2), var_x=spread, var_y=spread, clip_outliers=True)
    n_events = sum(len(s) for s in slices)
    few = TONIC_REFRACTORY_WINDOWS
    n_few = sum(len(s) for s in slices[:few])

    def each(fn, k=len(slices)):
        def run():
            for i in range(k):
                fn(i)
        return run

    def dv_background_activity():
        ba = dv.noise.BackgroundActivityNoiseFilter((width, height),
                                                    backgroundActivityDuration=timedelta(
                                                        milliseconds=10))
        for a, b in bounds:
            ba.accept(store.sliceTime(a, b))
            ba.generateEvents()

    # name -> (what, tool, run, events timed)
    last = filters.never_fired(width, height)

    def refractory_window(i):
        if i == 0:  # a new round replays the stream: a new state
            last[:] = filters.never_fired(width, height)
        filters.refractory_events(slices[i], 10_000, last)

    tools = {
        "refractory": ("per-pixel timestamp filter, 10 ms", "ours refractory",
                       each(refractory_window), n_events),
        "slots": ("per-pixel timestamp filter, 10 ms", "ours slots", each(
            lambda i: filters.first_event_per_slot(slices[i], *bounds[i], BINS)), n_events),
        "tonic refractory": ("per-pixel timestamp filter, 10 ms", "tonic RefractoryPeriod",
                             each(lambda i: refractory(structured[i]), few), n_few),
        "dv ba": ("per-pixel timestamp filter, 10 ms", "dv BackgroundActivity",
                  dv_background_activity, n_events),
        "jitter": ("each event moved within 4 px", "ours jitter", each(
            lambda i: filters.block_jitter(slices[i], BLOCK, state)), n_events),
        "tonic jitter": ("each event moved within 4 px", "tonic SpatialJitter", each(
            lambda i: jitter(structured[i].copy())), n_events),
        "warp": ("smooth random warp", "ours warp", each(
            lambda i: filters.warp_events(slices[i], *warp, state)), n_events),
        "chain": ("warp+slots+jitter", "ours", each(
            lambda i: chain(slices[i], *bounds[i], BINS)), n_events),
    }
    best = {name: float("inf") for name in tools}
    for _ in range(rounds):
        for name, (_, _, run, _) in tools.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    rate = {name: tools[name][3] / best[name] for name in tools}
    versus = {"tonic refractory": "refractory", "dv ba": "slots", "tonic jitter": "jitter"}
    rows = []
    for name, (what, tool, _, n) in tools.items():
        per_window = best[name] / (few if name == "tonic refractory" else len(slices)) * 1e3
        rows.append((what, tool, rate[name], per_window,
                     rate[versus[name]] if name in versus else None))
    return rows, n_events / len(slices)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    args = ap.parse_args(argv)
    duration_s, rounds = (0.2, 1) if args.tiny else (2.0, 3)
    filters.warm_up()
    print(f"# privacy filters, {WINDOW_US // 1000} ms windows, clustered stream at 2 Mev/s, "
          f"{duration_s:g} s, one core ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs)")
    print(f"{'sensor':>8} | {'job':<37} | {'tool':<23} | {'events/s':>9} | {'ms/window':>9} | "
          "share of 50 ms | ratio")
    for width, height in [(128, 128), (346, 260), (640, 480)]:
        rows, per_window = bench_size(width, height, duration_s, rounds)
        for what, tool, rate, ms, ours in rows:
            ratio = f"ours {ours / rate:.1f}x" if ours is not None else ""
            print(f"{width}x{height:<4} | {what:<37} | {tool:<23} | {rate / 1e6:7.1f} M | "
                  f"{ms:9.2f} | {ms / (WINDOW_US / 1e3):13.1%} | {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
