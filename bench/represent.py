"""Events <-> dense tensors: ours (numba) and tonic side by side on the same stream, one core.

    python bench/represent.py            # the full run (about a minute)
    python bench/represent.py --tiny     # a few windows, to check the script still works

Stream: the clustered stream of peer-benchmarks.md (16 moving blobs + 15 % noise, 2 Mev/s),
cut into 20 ms windows (about 40k events each). Timed per window, up to the dense tensor:
ours produces float32 (5, 2, H, W) counts and (5, H, W) voxel grids, ready for the model;
tonic's ToFrame produces int16 (5, 2, H, W) and ToVoxelGrid float64 (5, 1, H, W) (their
conversion to float32 is not timed). The inverse, tensor -> events, is timed on the windows'
counts (integers) and on counts plus Gaussian noise (what an anonymizer hands back).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise import represent  # noqa: E402
from anonynoise.events import to_structured  # noqa: E402
from anonynoise.examples import clustered_stream  # noqa: E402

BINS = 5
TONIC_VOXEL_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "<i1")])


def windows(events, window_us):
    n_windows = int(events.t[-1] // window_us)  # complete windows only, as tonic SliceByTime
    return [(k * window_us, (k + 1) * window_us) for k in range(n_windows)]


def best_of(repeats, fn):
    """Smallest wall time of `repeats` runs of fn (seconds) and fn's last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def bench_size(width, height, duration_s, window_ms, repeats, with_tonic):
    import tonic.transforms as T

    events = clustered_stream(width, height, duration_s=duration_s, seed=1)
    bounds = windows(events, window_ms * 1000)
    slices = [events.slice_time(a, b) for a, b in bounds]
    n_events = sum(len(s) for s in slices)
    out = np.empty((BINS, 2, height, width), np.float32)
    vox = np.empty((BINS, height, width), np.float32)
    rows = []

    def ours_counts():
        for (a, b), s in zip(bounds, slices):
            represent.events_to_counts(s, a, b, BINS, out=out)

    def ours_voxel():
        for (a, b), s in zip(bounds, slices):
            represent.events_to_voxel(s, a, b, BINS, out=vox)

    sec, _ = best_of(repeats, ours_counts)
    rows.append(("events -> counts f32 (5,2,H,W)", "ours", n_events / sec, sec / len(bounds)))
    sec_v, _ = best_of(repeats, ours_voxel)
    rows.append(("events -> voxel f32 (5,H,W)", "ours", n_events / sec_v, sec_v / len(bounds)))
    if with_tonic:
        frames = T.ToFrame(sensor_size=(width, height, 2), n_time_bins=BINS)
        voxels = T.ToVoxelGrid(sensor_size=(width, height, 2), n_time_bins=BINS)
        structured = [to_structured(s) for s in slices]
        structured_v = [to_structured(s, TONIC_VOXEL_DTYPE) for s in slices]
        sec_t, _ = best_of(max(1, repeats // 3), lambda: [frames(s) for s in structured])
        rows.append(("events -> counts i16 (5,2,H,W)", "tonic ToFrame", n_events / sec_t,
                     sec_t / len(bounds)))
        sec_tv, _ = best_of(max(1, repeats // 3), lambda: [voxels(s.copy()) for s in structured_v])
        rows.append(("events -> voxel f64 (5,1,H,W)", "tonic ToVoxelGrid", n_events / sec_tv,
                     sec_tv / len(bounds)))

    # Inverse, on the count tensors of the first windows (kept small in memory).
    k = min(len(bounds), 40)
    counts = [represent.events_to_counts(s, a, b, BINS) for (a, b), s in zip(bounds[:k],
                                                                           slices[:k])]
    rng = np.random.default_rng(2)
    noisy = [c + rng.normal(0, 0.5, c.shape).astype(np.float32) for c in counts]
    for label, tensors in (("counts", counts), ("counts + N(0, 0.5^2)", noisy)):
        def inverse(tensors=tensors):
            return sum(len(represent.counts_to_events(c, a, b))
                       for c, (a, b) in zip(tensors, bounds[:k]))
        sec_i, n_out = best_of(repeats, inverse)
        rows.append((f"tensor -> events ({label})", "ours", n_out / sec_i, sec_i / k))
    return rows, n_events / len(bounds), len(bounds)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    ap.add_argument("--no-tonic", action="store_true", help="time ours only")
    args = ap.parse_args(argv)
    sizes = [(128, 128), (346, 260), (640, 480)]
    duration_s, repeats = (0.1, 1) if args.tiny else (5.0, 5)
    represent.warm_up()
    print(f"# events <-> tensors, {BINS} bins, 20 ms windows, clustered stream at 2 Mev/s, "
          f"one core ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)")
    print(f"{'sensor':>8} | {'path':<32} | {'tool':<17} | {'events/s':>9} | {'ms/window':>9}"
          f" | ratio")
    for width, height in sizes:
        rows, per_window, n_windows = bench_size(width, height, duration_s, 20, repeats,
                                                 not args.no_tonic)
        ours = {path.split(" f32")[0].split(" i16")[0].split(" f64")[0]: rate
                for path, tool, rate, _ in rows if tool == "ours"}
        for path, tool, rate, per in rows:
            key = path.split(" f32")[0].split(" i16")[0].split(" f64")[0]
            ratio = f"ours {ours[key] / rate:.1f}x" if tool != "ours" else ""
            print(f"{width}x{height:<4} | {path:<32} | {tool:<17} | {rate / 1e6:7.1f} M |"
                  f" {per * 1e3:9.3f} | {ratio}")
        print(f"{'':8} | ({n_windows} windows of {per_window:,.0f} events on average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
