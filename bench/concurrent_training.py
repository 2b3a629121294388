"""The privacy study's unit of work, several at once on one device: how fast N processes each
training a ResNet-18 Re-ID net (train.classify.fit_classnet, 64x64 clips, batch 32) go.

    python bench/concurrent_training.py --procs 6         # on a GPU machine
    nvidia-cuda-mps-control -d                            # then again, with CUDA's MPS
    python bench/concurrent_training.py --procs 6
    echo quit | nvidia-cuda-mps-control
    python bench/concurrent_training.py --device cpu --tiny   # a smoke run (the test suite's)

experiments.privacy_report runs its trainings as such concurrent jobs (--jobs). Their kernels are
small, so without MPS one GPU's time is sliced between the processes; with MPS they share it.
Prints the time a step takes each process and the steps a second all processes make together
(after one warm-up epoch each, synchronised).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

import numpy as np

CLIPS, IDS = 1320, 30  # the study's training clips on every 3 s span, and its people


def identities(clips: int) -> np.ndarray:
    return np.repeat(np.arange(IDS), -(-clips // IDS))[:clips]


def train_one(job: tuple) -> float:
    import torch

    from train.classify import FitConfig, fit_classnet

    rank, device, epochs, clips, size, threads = job
    torch.set_num_threads(threads)
    rng = np.random.default_rng(rank)
    x = rng.poisson(0.3, (clips, 10, size, size)).astype(np.float32)
    ids = identities(clips)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    fit_classnet(x[:64], ids[:64], IDS, True, FitConfig(epochs=1, device=device))  # warm-up
    sync()
    started = time.perf_counter()
    fit_classnet(x, ids, IDS, True, FitConfig(epochs=epochs, device=device, seed=rank))
    sync()
    return time.perf_counter() - started


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="2 processes, 64 clips at 32x32")
    args = ap.parse_args(argv)
    procs, clips, size = (2, 64, 32) if args.tiny else (args.procs, CLIPS, 64)
    threads = max(1, (os.cpu_count() or 2) // procs)
    with multiprocessing.get_context("spawn").Pool(procs) as pool:
        seconds = pool.map(train_one, [(r, args.device, args.epochs, clips, size, threads)
                                       for r in range(procs)])
    from train.classify import identity_batches

    steps = args.epochs * len(identity_batches(identities(clips), 4, 32,
                                               np.random.default_rng(0)))
    pipe = os.path.join(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"), "control")
    mps = ("on" if os.path.exists(pipe) else "off") if args.device.startswith("cuda") else "-"
    print("| device | processes | MPS | steps a process | ms a step, each | steps/s, all |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.device} | {procs} | {mps} | {steps} | {1000 * np.mean(seconds) / steps:.1f} "
          f"| {procs * steps / max(seconds):.0f} |")


if __name__ == "__main__":
    main()
