""".aedat4 decoding: our reader, dv-processing directly and tonic's read_aedat4 on the same files.

    python bench/io.py            # the full run (about 20 s; most of it writing the file)
    python bench/io.py --tiny     # a small file, to check the script still works

Files: a synthetic LZ4 .aedat4 written by our Aedat4Writer from the clustered stream of
peer-benchmarks.md (640x480, 2 s at 5 Mev/s = 10 M events; tiny: 64x48, 0.2 s), and the real
recording ../shared/data/real/face_dvxplorer.aedat4 when that folder exists. Timed, best of a
few repeats, from the path to the whole file's events in memory:
  ours           read_events(path): one EventBatch, contiguous t/x/y/p arrays (SoA)
  dv-processing  MonoCameraRecording + getNextEventBatch().numpy() per batch + np.concatenate
                 (one structured array, 16 bytes an event)
  tonic          tonic.io.read_aedat4(path) (through the `aedat` package; one structured array)
The check column compares each peer's events (count, then t, x, y, p) with ours. A peer that
cannot read a file (tonic without `aedat` installed, say) gets its error in the table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise.examples import clustered_stream  # noqa: E402
from anonynoise.io import Aedat4Writer, read_events  # noqa: E402

REAL_FILE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "real" / \
    "face_dvxplorer.aedat4"
WRITE_CHUNK = 500_000  # events per write


def best_of(repeats, fn):
    """Smallest wall time of `repeats` runs of fn (seconds) and fn's last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        result = None  # free the previous result before the next run allocates its own
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def write_synthetic(path, width, height, duration_s, rate):
    events = clustered_stream(width, height, duration_s=duration_s, rate=rate, seed=1)
    with Aedat4Writer(path, (width, height)) as writer:
        for i in range(0, len(events), WRITE_CHUNK):
            writer.write(events[i:i + WRITE_CHUNK])
    return len(events)


# Each reader returns (t, x, y, p) as numpy arrays (field views for the structured ones).

def read_ours(path):
    ev = read_events(path)
    return ev.t, ev.x, ev.y, ev.p


def read_dv(path):
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    chunks = []
    while (batch := rec.getNextEventBatch()) is not None:
        chunks.append(batch.numpy())
    a = np.concatenate(chunks)
    return a["timestamp"], a["x"], a["y"], a["polarity"]


def read_tonic(path):
    import tonic.io

    a = tonic.io.read_aedat4(str(path))
    return a["t"], a["x"], a["y"], a["p"]


PEERS = [("dv-processing", read_dv), ("tonic", read_tonic)]


def check(ours, theirs):
    """'ok' when a peer decoded exactly our events, else what differs."""
    if len(theirs[0]) != len(ours[0]):
        return f"count {len(theirs[0]):,} != ours {len(ours[0]):,}"
    differ = [name for name, a, b in zip("txyp", ours, theirs) if not np.array_equal(a, b)]
    return "ok" if not differ else f"{','.join(differ)} differ"


def short_error(e):
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}"[:70]


def bench_file(label, path, repeats):
    """Rows (file, events, tool, rate or None, seconds or None, ratio, check) for one file."""
    sec, ours = best_of(repeats, lambda: read_ours(path))
    n = len(ours[0])
    rows = [(label, n, "ours", n / sec, sec, "", "reference")]
    for tool, read in PEERS:
        try:
            read(path)  # warm up: imports, and an error shows here before any timing
            sec_p, theirs = best_of(repeats, lambda: read(path))
        except Exception as e:  # a peer failing on a file is a result, not a crash
            rows.append((label, None, tool, None, None, "", f"error {short_error(e)}"))
            continue
        rows.append((label, len(theirs[0]), tool, len(theirs[0]) / sec_p, sec_p,
                     f"ours {sec_p / sec:.1f}x", check(ours, theirs)))
        del theirs
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    args = ap.parse_args(argv)
    width, height, duration_s, rate = (64, 48, 0.2, 5e6) if args.tiny else (640, 480, 2.0, 5e6)
    repeats = 2 if args.tiny else 3
    print(f"# .aedat4 decode to numpy, whole file, best of {repeats}, page cache "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = Path(tmp) / "clustered.aedat4"
        t0 = time.perf_counter()
        n = write_synthetic(synthetic, width, height, duration_s, rate)
        print(f"# wrote {synthetic.name}: {n:,} events {width}x{height}, LZ4, "
              f"{synthetic.stat().st_size / 2**20:.1f} MiB, in {time.perf_counter() - t0:.1f} s")
        files = [(f"clustered {width}x{height}", synthetic, repeats)]
        if REAL_FILE.exists():
            # 112 k events: a read takes milliseconds, so more repeats cost little
            files.append((REAL_FILE.name, REAL_FILE.resolve(), 5 * repeats))
        else:
            print(f"# {REAL_FILE.resolve()} not found: real recording skipped")
        print(f"{'file':<22} | {'events':>10} | {'tool':<13} | {'events/s':>9} | {'seconds':>8}"
              f" | {'ratio':<9} | check")
        for label, path, reps in files:
            for f, n, tool, r, s, ratio, ok in bench_file(label, path, reps):
                rate_s = f"{r / 1e6:7.1f} M" if r else f"{'-':>9}"
                sec_s = f"{s:8.4f}" if s else f"{'-':>8}"
                n_s = f"{n:>10,}" if n is not None else f"{'-':>10}"
                print(f"{f:<22} | {n_s} | {tool:<13} | {rate_s} | {sec_s} | {ratio:<9} | {ok}",
                      flush=True)
    print("# ratio: the peer's time / ours (above 1: ours is faster); "
          "check: the peer's events against ours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
