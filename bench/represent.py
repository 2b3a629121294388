"""Events <-> dense tensors: ours (numba) and its peers side by side on the same stream, one core.

    python bench/represent.py            # the full run (about 90 s)
    python bench/represent.py --tiny     # a few windows, to check the script still works

Stream: the clustered stream of peer-benchmarks.md (16 moving blobs + 15 % noise, 2 Mev/s)
at 128x128, 346x260 and 640x480, cut into windows of 10, 20 and 50 ms (20k, 40k and 100k
events each). Timed per window, up to the dense output, the tools taking turns round after
round (3 rounds) and each keeping its best; what each tool produces:

- ours: float32 (5, 2, H, W) counts and float32 (5, H, W) bilinear voxel grids, for the model;
  and float32 (1, 2, H, W) counts, one frame per polarity (our representation with one bin),
  the output closest to dv's single frame and the one peer-benchmarks.md's numba reference makes;
- numpy np.bincount: the same float32 (5, 2, H, W) counts (int64 counts cast to float32; checked
  equal to ours on one window);
- tonic ToFrame: int16 (5, 2, H, W) counts; ToVoxelGrid: float64 (5, 1, H, W) (their
  conversion to float32 is not timed);
- dv-processing EventStreamSlicer + EdgeMapAccumulator: one uint8 (H, W) edge map per window
  (polarity ignored, each event adds 0.25, saturating at 255): a single 8-bit channel, not
  counts. The stream is converted to a dv.EventStore once, untimed (dv has no fast numpy path).

The ratio is ours over the peer, in events/s, like for like: tonic and numpy against our 5-bin
counts (voxel for ToVoxelGrid); dv against our one-frame counts, and then against our 5-bin
counts, whose 12.3 MB float32 clear per window dominates at 640x480. That clear is what
CountBuffer saves: one buffer across windows, clearing only the cells the last window touched
(the row "ours, CountBuffer", and tonic's second ratio). The inverse,
tensor -> events, is timed on 20 ms windows' counts (integers) and on counts plus Gaussian
noise (what an anonymizer hands back).
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

from anonynoise import represent  # noqa: E402
from anonynoise.events import to_structured  # noqa: E402
from anonynoise.examples import clustered_stream  # noqa: E402
from anonynoise.io import to_event_store  # noqa: E402

BINS = 5
WINDOWS_MS = (10, 20, 50)
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


def numpy_counts(s, t_start, t_end):
    """Our (5, 2, H, W) float32 counts with np.bincount: ((bin * 2 + p) * H + y) * W + x."""
    index = ((s.t - t_start) * BINS // (t_end - t_start) * 2 + s.p) * s.height + s.y
    index = index * s.width + s.x
    counts = np.bincount(index, minlength=BINS * 2 * s.height * s.width)
    return counts.reshape(BINS, 2, s.height, s.width).astype(np.float32)


def dv_edge_maps(store, width, height, window_ms):
    """(events, windows) of a dv EventStreamSlicer feeding an EdgeMapAccumulator per window."""
    import dv_processing as dv

    edges = dv.EdgeMapAccumulator((width, height))
    slicer = dv.EventStreamSlicer()
    done = [0, 0]

    def on_window(window):
        edges.accept(window)
        edges.generateFrame()  # dv.Frame, .image uint8 (H, W)
        done[0] += window.size()
        done[1] += 1

    slicer.doEveryTimeInterval(timedelta(milliseconds=window_ms), on_window)
    slicer.accept(store)
    return done


def bench_window(events, store, window_ms, repeats, with_tonic):
    """Rows (path, tool, events/s, s/window, ours events/s to compare with or None).

    The tools take turns, round after round, and each keeps its best round: a neighbour
    loading the shared machine for a while then slows every tool alike, not the one that
    happened to run at that moment. Every tool gets the same rounds."""
    import tonic.transforms as T

    width, height = events.width, events.height
    bounds = windows(events, window_ms * 1000)
    slices = [events.slice_time(a, b) for a, b in bounds]
    n_events = sum(len(s) for s in slices)
    out = np.empty((BINS, 2, height, width), np.float32)
    frame = np.empty((1, 2, height, width), np.float32)
    vox = np.empty((BINS, height, width), np.float32)
    buffer = represent.CountBuffer(width, height, BINS)

    def over_windows(fn):
        """fn(window events, t_start, t_end) over all windows, results dropped (keeping 500
        dense outputs would cost gigabytes)."""
        def run():
            for (a, b), s in zip(bounds, slices):
                fn(s, a, b)
        return run

    (a, b), s = bounds[0], slices[0]
    assert np.array_equal(numpy_counts(s, a, b), represent.events_to_counts(s, a, b, BINS)), \
        "numpy bincount counts differ from ours"
    # name -> (path, tool, run)
    tools = {
        "counts": ("events -> counts f32 (5,2,H,W)", "ours", over_windows(
            lambda s, a, b: represent.events_to_counts(s, a, b, BINS, out=out))),
        "reused": ("events -> counts f32 (5,2,H,W)", "ours, CountBuffer", over_windows(
            lambda s, a, b: buffer(s, a, b))),
        "frame": ("events -> counts f32 (1,2,H,W)", "ours", over_windows(
            lambda s, a, b: represent.events_to_counts(s, a, b, 1, out=frame))),
        "voxel": ("events -> voxel f32 (5,H,W)", "ours", over_windows(
            lambda s, a, b: represent.events_to_voxel(s, a, b, BINS, out=vox))),
        "numpy": ("events -> counts f32 (5,2,H,W)", "numpy bincount",
                  over_windows(numpy_counts)),
        "dv": ("events -> edge map u8 (H,W)", "dv EdgeMapAccumulator",
               lambda: dv_edge_maps(store, width, height, window_ms)),
    }
    if with_tonic:
        frames = T.ToFrame(sensor_size=(width, height, 2), n_time_bins=BINS)
        voxels = T.ToVoxelGrid(sensor_size=(width, height, 2), n_time_bins=BINS)
        structured, structured_v = {}, {}  # tonic's inputs, by window start
        for (a, _), s in zip(bounds, slices):
            structured[a], structured_v[a] = to_structured(s), to_structured(s, TONIC_VOXEL_DTYPE)
        tools["tonic frame"] = ("events -> counts i16 (5,2,H,W)", "tonic ToFrame", over_windows(
            lambda s, a, b: frames(structured[a])))
        tools["tonic voxel"] = ("events -> voxel f64 (5,1,H,W)", "tonic ToVoxelGrid",
                                over_windows(lambda s, a, b: voxels(structured_v[a].copy())))
    best = {name: float("inf") for name in tools}
    dv_done = None
    for _ in range(repeats):
        for name, (_, _, run) in tools.items():
            sec, result = best_of(1, run)
            best[name] = min(best[name], sec)
            if name == "dv":
                dv_done = result

    def rate(name):
        return (dv_done[0] if name == "dv" else n_events) / best[name]

    # the peer -> (label, our tool) pairs its ratios are taken against
    versus = {"numpy": [("", "counts")], "dv": [("1 bin", "frame"), ("5 bins", "counts")],
              "tonic frame": [("", "counts"), ("CountBuffer", "reused")],
              "tonic voxel": [("", "voxel")]}
    rows = []
    for name, (path, tool, _) in tools.items():
        against = [(label, rate(ours)) for label, ours in versus.get(name, [])]
        n_windows = dv_done[1] if name == "dv" else len(bounds)
        rows.append((path, tool, rate(name), best[name] / n_windows, against))
    return rows, n_events / len(bounds), len(bounds)


def bench_inverse(events, window_ms, repeats):
    """Rows for tensor -> events, on the count tensors of the first windows (kept small)."""
    bounds = windows(events, window_ms * 1000)[:40]
    counts = [represent.events_to_counts(events.slice_time(a, b), a, b, BINS)
              for a, b in bounds]
    rng = np.random.default_rng(2)
    noisy = [c + rng.normal(0, 0.5, c.shape).astype(np.float32) for c in counts]
    rows = []
    for label, tensors in (("counts", counts), ("counts + N(0, 0.5^2)", noisy)):
        def inverse(tensors=tensors):
            return sum(len(represent.counts_to_events(c, a, b))
                       for c, (a, b) in zip(tensors, bounds))
        sec, n_out = best_of(repeats, inverse)
        rows.append((f"tensor -> events ({label})", "ours", n_out / sec, sec / len(bounds), []))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    ap.add_argument("--no-tonic", action="store_true", help="leave tonic out")
    args = ap.parse_args(argv)
    sizes = [(128, 128), (346, 260), (640, 480)]
    duration_s, repeats = (0.1, 1) if args.tiny else (4.0, 3)
    represent.warm_up()
    print(f"# events <-> tensors, {BINS} bins, windows of {', '.join(map(str, WINDOWS_MS))} ms, "
          f"clustered stream at 2 Mev/s, {duration_s:g} s, one core "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)")
    print(f"{'sensor':>8} | {'window':>6} | {'path':<39} | {'tool':<21} | {'events/s':>9} |"
          f" {'ms/window':>9} | ratio")
    for width, height in sizes:
        events = clustered_stream(width, height, duration_s=duration_s, seed=1)
        store = to_event_store(events)  # once, untimed
        for window_ms in WINDOWS_MS:
            rows, per_window, n_windows = bench_window(events, store, window_ms, repeats,
                                                       not args.no_tonic)
            if window_ms == 20:
                rows += bench_inverse(events, window_ms, repeats)
            for path, tool, rate, per, versus in rows:
                ratio = ", ".join(f"{ours / rate:.1f}x" + (f" ({label})" if label else "")
                                  for label, ours in versus)
                ratio = f"ours {ratio}" if ratio else ""
                print(f"{width}x{height:<4} | {window_ms:>3} ms | {path:<39} | {tool:<21} |"
                      f" {rate / 1e6:7.1f} M | {per * 1e3:9.3f} | {ratio}")
            print(f"{'':8} | {'':6} | ({n_windows} windows of {per_window:,.0f} events"
                  " on average)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
