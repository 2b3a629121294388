"""Run every benchmark in one go and rewrite bench/results/benchmarks.md from their output.

    python bench/run_all.py            # the full run (several minutes), rewrites bench/results/benchmarks.md
    python bench/run_all.py --tiny     # a smoke run (to runs/tiny/benchmarks.md)

Each script prints ours and the peers side by side from one run on this machine; this file adds
the machine, the versions and what each table measures. GPU numbers cannot be measured here: the
last `bench/gpu.py --out bench/results/gpu-<card>.json` run on a lent GPU machine is rendered.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

SECTIONS = [
    ("represent.py", "Events <-> tensors",
     "The clustered stream of `../shared/docs/peer-benchmarks.md` (16 moving Gaussian blobs + "
     "15 % noise) cut into windows, timed per window up to the dense tensor, one core, the "
     "tools taking turns round after round (each keeps its best round, so a slow spell of the "
     "shared machine hits all alike). Ours gives float32 `(5, 2, H, W)` counts (the model's "
     "input), float32 `(1, 2, H, W)` counts "
     "(one frame per polarity) and float32 `(5, H, W)` voxel grids; tonic's `ToFrame` int16 and "
     "`ToVoxelGrid` float64; dv-processing's `EdgeMapAccumulator` one 8-bit frame per window "
     "(compared with our one frame, then with our 5 bins); numpy `bincount` the same float32 "
     "counts as ours. Tensor -> events is timed on the windows' counts and on counts plus "
     "noise."),
    ("filters.py", "Privacy filters",
     "The stream's privacy filters (`--filters`, `anonynoise/filters.py`) on the clustered "
     "stream's 50 ms windows (100k events each), one core, the tools taking turns in 3 "
     "rounds. No peer does what they do, so each is set beside the nearest job: refractory "
     "(one event per pixel and polarity in 10 ms, its state carried across windows) beside "
     "tonic's `RefractoryPeriod` (per window; a Python loop, timed on 3 windows); slots (one "
     "event per pixel, polarity and 10 ms slot) beside dv-processing's "
     "`BackgroundActivityNoiseFilter` (a per-pixel timestamp test too); jitter (a random pixel of the 4x4 block) beside tonic's "
     "`SpatialJitter` (Gaussian of the same variance). The warp and the whole chain have no "
     "peer: their share of the window's 50 ms is what counts."),
    ("io.py", "Reading .aedat4",
     "Whole files decoded to numpy arrays (t, x, y, p): our reader, dv-processing directly, "
     "tonic's `read_aedat4`; the event counts of all three are checked to agree."),
    ("models.py", "Anonymizer nets on the CPU",
     "Batch 1, float32, median per window of one forward pass as the runtime makes it (noise "
     "drawn, net, x + s * n), 1 and 2 threads, NCHW and channels_last (the light net's two "
     "layouts take turns in 3 rounds of 10 runs; the best round's median). The light net's "
     "targets: <= 5 ms at 128x128 and <= 40 ms at 480x640 with 2 threads."),
    ("training.py", "The privacy studies' training steps",
     "The steps the privacy report and the controls spend their CPU time in, at the "
     "report's CPU size (48x48, 60 windows of 50 ms to a 3 s clip, the light net 8 wide, a "
     "ResNet-18 16 wide, a DnCNN 16 x 5), 2 threads: the pipeline's anonymizer step "
     "(every window anonymized, capped, round-tripped straight-through, re-binned, backward), "
     "an anonymized draw of clips (no gradient), a ClassNet's step (any of the report's "
     "ResNets) and an attacker's step behind a denoiser. "
     "The peer is the plain torch formulation of the same computation (NCHW, torch's "
     "single-threaded samplers, the straight-through estimator as x + (round(x) - x)."
     "detach()); ours are the library's functions. Milliseconds per clip or attacker input, "
     "the best of 3 rounds taken in turns. Both in a process that keeps freed memory, as the "
     "studies' processes do (anonynoise.memory); the second table times our steps with "
     "glibc's malloc as it is, in a child process, beside that."),
    ("pipeline.py", "The stream end to end",
     "Replays of 5 s of the clustered stream through the real Pipeline with 50 ms windows, the "
     "shipped light net behind the privacy filters it was trained behind (the paper net "
     "untrained and without filters, same net cost), a ZeroMQ endpoint with a "
     "subscriber that reads everything, and the recorder / DV output on or off (a DV client "
     "reading it: without one the DV output builds nothing). Fast: times "
     "real time (best of 3, the fast cases taking turns; the 128x128 light-net ones replay 10 s "
     "so that the first window and the recorder's last weigh less). Paced: p50 / p99 latency "
     "from a window's end (on the replay's clock) to its publication. Then "
     "the protocol alone: windows of 10k and 100k events to one client. Targets (issue 6): "
     "fast 1 M ev/s at 128x128 >= 5x real time; paced p99 <= 20 ms; 346x260 at 2 M ev/s paced "
     "keeps up. The recorder (faery's AEDAT 4 encoder) and the DV output run in processes of "
     "their own; the DV output is bounded by dv-processing's EventStore, built one event at a "
     "time (no bulk numpy path exists; see `../shared/docs/ecosystem-notes.md`)."),
]


def run_script(name: str, tiny: bool) -> tuple[str, float]:
    started = time.time()
    done = subprocess.run([sys.executable, str(BENCH / name), *(["--tiny"] if tiny else [])],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return f"FAILED (exit {done.returncode}): {tail[0]}", time.time() - started
    return done.stdout.rstrip(), time.time() - started


def gpu_section() -> list[str]:
    files = sorted((BENCH / "results").glob("gpu-*.json"))
    if not files:
        return []
    r = json.loads(files[-1].read_text())
    lines = ["## On a GPU (`python bench/gpu.py`)", "",
             f"Rendered from `{files[-1].relative_to(ROOT)}`: one run on a lent {r['device']}, "
             f"torch {r['torch']}. Net latency batch 1, median of 50 synchronised runs; the "
             "runtime is one 50 ms window of a 1 M ev/s stream, events in to events out (binning "
             "and sampling events back run on the CPU with numba, the net on the GPU). CPU and "
             "GPU compute the same net: same input and noise give maps that differ by at most "
             f"{max(r['same_net_max_rel_diff'].values()):.1e} relative.", "",
             "| net | sensor | fp32 eager (ms) | channels_last | bf16 autocast | CUDA graph | "
             "runtime per window (ms, p50) | events out per in |",
             "|---|---|---|---|---|---|---|---|"]
    for key, lat in r["nets"].items():
        net, size = key.split()
        rt = r["runtime"][key]
        graph = lat.get("cuda_graph")
        lines.append(f"| {net} | {size} | {lat['fp32']:.2f} | {lat['channels_last']:.2f} | "
                     f"{lat.get('bf16', float('nan')):.2f} | "
                     f"{'-' if graph is None else f'{graph:.2f}'} | "
                     f"{rt['ms_per_window_p50']:.1f} | {rt['events_out_per_in']:.2f} |")
    lines += ["", "Replay through the Pipeline as fast as possible (a counting publisher: the GPU "
              "image has no ZeroMQ):", "", "| case | x real time | windows | dropped |",
              "|---|---|---|---|"]
    for key, pl in r["pipeline"].items():
        lines.append(f"| {key} | {pl['x_real_time']:.2f} | {pl['windows']} | {pl['dropped']} |")
    lines += ["", "On the GPU the nets stop being the cost; a window's time is the CPU side "
              "(binning, copying, sampling events back), single-threaded.", ""]
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=None,
                    help="default bench/results/benchmarks.md (--tiny: runs/tiny/benchmarks.md)")
    args = ap.parse_args(argv)
    import numba
    import numpy
    import torch

    lines = ["# Benchmarks", "",
             f"Generated by `python bench/run_all.py{' --tiny' if args.tiny else ''}` on "
             f"{time.strftime('%Y-%m-%d')}: {platform.machine()}, {os.cpu_count()} CPUs "
             f"({platform.processor() or 'unknown processor'}), Python "
             f"{platform.python_version()}, torch {torch.__version__}, numpy "
             f"{numpy.__version__}, numba {numba.__version__}. This machine is shared: from "
             "one hour to the next the same measurement moves by up to a third, so each "
             "script lets the tools it compares take turns and keeps their best rounds; "
             "compare ratios within one table.", ""]
    failed = False
    for script, title, what in SECTIONS:
        out, seconds = run_script(script, args.tiny)
        failed |= out.startswith("FAILED")
        print(f"{script}: {seconds:.0f} s", file=sys.stderr, flush=True)
        table = out if out.lstrip().startswith("|") else f"```\n{out}\n```"
        lines += [f"## {title} (`python bench/{script}`, {seconds:.0f} s)", "", what, "",
                  table, ""]
    lines += gpu_section()
    out = Path(args.out or (ROOT / "runs" / "tiny" / "benchmarks.md" if args.tiny
                            else ROOT / "bench" / "results" / "benchmarks.md"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
