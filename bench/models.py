"""Anonymizer net latency: the paper net and the light net, batch 1, float32, on the CPU.

    python bench/models.py             # the full table (under two minutes)
    python bench/models.py --tiny      # small sizes, to check the script still works

Each row is one forward pass as the runtime makes it (noise drawn by one generator per thread,
net, x + s * n), median of repeated runs under inference mode, for 1 and 2 threads, NCHW (eager)
and channels_last. The light net's layouts take turns in 3 rounds and each keeps its best round's
median, so a slow spell of the shared machine does not land on one of them alone.
Targets for the light net (the foundation of the product's real-time path on this 2-core
machine): <= 5 ms at 1x10x128x128 and <= 40 ms at 1x10x480x640, 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise.checkpoint import load_checkpoint  # noqa: E402
from anonynoise.models import ANONYMIZER_KINDS, PaperAnonNet  # noqa: E402
from anonynoise.models.noise import noise_generators  # noqa: E402
from anonynoise.offline import default_model  # noqa: E402

SIZES = [(128, 128), (260, 346), (480, 640)]
TARGETS_MS = {(128, 128): 5.0, (480, 640): 40.0}


def latency_ms(net, x, repeats, warmup=2):
    # the runtime's noise generators: one per thread, each drawing part of the window's noise
    generators = noise_generators(torch.get_num_threads())
    for g in generators:
        g.manual_seed(int.from_bytes(os.urandom(8), "little"))
    with torch.inference_mode():
        for _ in range(warmup):
            net(x, generator=generators)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            net(x, generator=generators)
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    ap.add_argument("--compile", action="store_true",
                    help="also time torch.compile (cold compiles take seconds per shape)")
    args = ap.parse_args(argv)
    sizes = [(32, 48)] if args.tiny else SIZES
    # the light net as shipped (anonynoise/models/default_anonymizer.pt); the paper net
    # untrained (the same cost as a trained one)
    shipped = load_checkpoint(default_model(), ANONYMIZER_KINDS).build(torch.device("cpu"))
    nets = [("light", shipped), ("paper", PaperAnonNet(10))]
    print(f"# anonymizer nets, batch 1, float32, CPU ({os.cpu_count()} cores), torch "
          f"{torch.__version__}; median ms per window")
    for name, net in nets:
        print(f"# {name}: {sum(p.numel() for p in net.parameters()):,} parameters")
    print(f"{'net':<6} | {'input':<14} | {'threads':>7} | {'eager':>9} | {'channels_last':>13}"
          + (f" | {'compile+cl':>10}" if args.compile else "") + " | target")
    for name, net in nets:
        net.eval()
        for h, w in sizes:
            # The paper net takes seconds per large window: fewer repeats keep this quick.
            repeats = 2 if args.tiny else (10 if name == "light" else max(1, 10 * 128 * 128 // (h * w)))
            rounds = 3 if name == "light" and not args.tiny else 1
            warmup = 1 if name == "paper" else 2
            for threads in (1, 2):
                torch.set_num_threads(threads)
                x = torch.rand(1, 10, h, w) * 2
                x_cl = x.contiguous(memory_format=torch.channels_last)
                eager = cl = float("inf")
                for _ in range(rounds):
                    net.to(memory_format=torch.contiguous_format)
                    eager = min(eager, latency_ms(net, x, repeats, warmup))
                    net_cl = net.to(memory_format=torch.channels_last)
                    cl = min(cl, latency_ms(net_cl, x_cl, repeats, warmup))
                net.to(memory_format=torch.contiguous_format)
                row = (f"{name:<6} | 1x10x{h}x{w:<6} | {threads:>7} | {eager:9.2f} | {cl:13.2f}")
                if args.compile:
                    compiled = torch.compile(net_cl)
                    row += f" | {latency_ms(compiled, x_cl, repeats):10.2f}"
                target = TARGETS_MS.get((h, w)) if name == "light" and threads == 2 else None
                if target is not None:
                    best = min(eager, cl)
                    row += f" | <= {target:g} ms: {'met' if best <= target else 'MISSED'}"
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
