"""The anonymizer nets, the runtime and the stream's pipeline on CUDA (or the CPU, --tiny).

    python bench/gpu.py                      # on a GPU machine: the full table (a few minutes)
    python bench/gpu.py --device cpu --tiny  # a smoke run (the test suite runs it)

1. Net latency, batch 1, for the shipped light net and the paper net (untrained, same cost) at
   128x128, 346x260 and 640x480: float32 eager, channels_last, bf16 autocast, and a CUDA graph
   replay of the float32 forward (noise drawn inside the graph). Median of timed runs after
   warm-up, synchronised.
2. The runtime (anonynoise.anonymizer.Anonymizer) per window, events in -> events out, on the
   device and on the CPU, and a check that both paths compute the same net: with the same input
   and the same noise tensor, the predicted scale / mean agree to 1e-3 (the noise generators of
   the two devices differ, so anonymized windows are compared by their statistics only).
3. A replay through the stream's Pipeline (windows -> anonymizer -> a publisher that counts):
   real-time factor and windows dropped, on the device.

Needs torch, numpy and numba only (no ZeroMQ, no dv-processing): it runs on a bare GPU image.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise.anonymizer import Anonymizer  # noqa: E402
from anonynoise.checkpoint import Representation, load_checkpoint, save_checkpoint  # noqa: E402
from anonynoise.examples import clustered_stream  # noqa: E402
from anonynoise.io import save_npz  # noqa: E402
from anonynoise.models import ANONYMIZER_KINDS, PaperAnonNet  # noqa: E402
from anonynoise.offline import default_model  # noqa: E402

SIZES = [(128, 128), (346, 260), (640, 480)]
WINDOW_US = 50_000


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_ms(fn, device, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def nets(folder: Path):
    light = load_checkpoint(default_model(), ANONYMIZER_KINDS).build(torch.device("cpu"))
    torch.manual_seed(0)
    paper = PaperAnonNet(10)
    torch.nn.init.zeros_(paper.convs3[-1].weight)
    torch.nn.init.constant_(paper.convs3[-1].bias, 0.5)
    paper_path = save_checkpoint(folder / "paper.pt", paper, Representation(window_us=WINDOW_US))
    return {"light": (light.eval(), default_model()), "paper": (paper.eval(), paper_path)}


def net_latencies(net, size, device, repeats) -> dict:
    w, h = size
    net = net.to(device)
    x = torch.rand(1, 10, h, w, device=device) * 2
    out = {}
    with torch.inference_mode():
        out["fp32"] = timed_ms(lambda: net(x), device, repeats)
        xc = x.contiguous(memory_format=torch.channels_last)
        net_cl = net.to(memory_format=torch.channels_last)
        out["channels_last"] = timed_ms(lambda: net_cl(xc), device, repeats)
        net.to(memory_format=torch.contiguous_format)
        if device.type == "cuda":
            def bf16():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    net(x)
            out["bf16"] = timed_ms(bf16, device, repeats)
    if device.type == "cuda":
        try:
            out["cuda_graph"] = _graph_ms(net, x, device, repeats)
        except Exception as e:  # a graph that cannot be captured is reported, not fatal
            out["cuda_graph_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
    return out


def _graph_ms(net, x, device, repeats) -> float:
    """The float32 forward (noise drawn inside) captured once and replayed."""
    static_x = x.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):  # warm-up on a side stream, as capture wants
            net(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_y = net(static_x)
    ms = timed_ms(graph.replay, device, repeats)
    assert torch.isfinite(static_y).all()
    return ms


def same_net_on_both(net, device, size) -> float:
    """Largest difference of the predicted maps between the CPU and the device, same input
    and same noise (relative to the maps' scale)."""
    w, h = size
    torch.manual_seed(1)
    x, n = torch.rand(1, 10, h, w) * 2, torch.randn(1, 10, h, w)
    with torch.inference_mode():
        cpu = net.to("cpu").predict(x, n)
        dev = net.to(device).predict(x.to(device), n.to(device)).cpu()
    return float((cpu - dev).abs().max() / cpu.abs().max().clamp(min=1e-6))


def runtime(path: Path, device: str, size, seconds: float) -> dict:
    w, h = size
    events = clustered_stream(w, h, seconds, 1e6, seed=2)
    anon = Anonymizer(path, device, seed=None)
    anon.warm_up(w, h)
    times, n_out = [], 0
    for t0 in range(0, int(seconds * 1e6) - WINDOW_US + 1, WINDOW_US):
        start = time.perf_counter()
        out = anon.anonymize(events, t0, t0 + WINDOW_US)
        times.append(time.perf_counter() - start)
        n_out += len(out.events)
    return {"ms_per_window_p50": statistics.median(times) * 1e3,
            "ms_per_window_max": max(times) * 1e3,
            "events_out_per_in": n_out / max(len(events), 1), "refused": anon.refused}


class CountingPublisher:
    """Stands in for stream.publisher.Publisher: counts what would be sent."""

    def __init__(self):
        self.windows = self.events = 0
        self.lossless_dropped = 0  # the pipeline reports it in every header

    def publish(self, header, events, wait=False):
        self.windows += 1
        self.events += len(events)
        return True

    def status(self, _):
        pass

    def close(self):
        pass


def pipeline_replay(path: Path, device: str, size, seconds: float, folder: Path) -> dict:
    from stream.pipeline import Pipeline, StreamConfig
    from stream.sources import ReplaySource

    w, h = size
    recording = folder / f"in-{w}x{h}.npz"
    save_npz(recording, clustered_stream(w, h, seconds, 2e6, seed=3))
    anon = Anonymizer(path, device)
    anon.warm_up(w, h)
    pub = CountingPublisher()
    pipeline = Pipeline(ReplaySource(recording, speed=None), anon, pub, (),
                        StreamConfig(window_us=WINDOW_US), paced=False)
    start = time.perf_counter()
    status = pipeline.run()
    wall = time.perf_counter() - start
    return {"x_real_time": seconds / wall, "windows": status["windows_out"],
            "published": pub.windows, "dropped": sum(status["dropped"].values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device here (use --device cpu --tiny for a smoke run)",
              file=sys.stderr)
        return 2
    sizes = [(64, 48)] if args.tiny else SIZES
    repeats, seconds = (3, 0.2) if args.tiny else (50, 2.0)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    results: dict = {"device": name, "torch": torch.__version__, "nets": {}, "runtime": {},
                     "pipeline": {}, "same_net_max_rel_diff": {}}
    print(f"# bench/gpu.py on {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind, (net, path) in nets(folder).items():
            for size in sizes:
                if kind == "paper" and size == (640, 480) and device.type == "cpu":
                    continue  # seconds per window on a CPU: the CPU bench covers it
                key = f"{kind} {size[0]}x{size[1]}"
                lat = net_latencies(net, size, device, repeats)
                results["nets"][key] = lat
                print(key, json.dumps(lat), flush=True)
                results["same_net_max_rel_diff"][key] = same_net_on_both(net, device, size)
                rt = runtime(path, args.device, size, seconds)
                results["runtime"][key] = rt
                print(key, "runtime", json.dumps(rt), flush=True)
            size = sizes[0] if args.tiny else (346, 260)
            pl = pipeline_replay(path, args.device, size, seconds * (1 if args.tiny else 5),
                                 folder)
            results["pipeline"][f"{kind} {size[0]}x{size[1]} 2e6 ev/s"] = pl
            print(kind, "pipeline", json.dumps(pl), flush=True)
    print(json.dumps(results["same_net_max_rel_diff"]))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
