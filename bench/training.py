"""The privacy studies' training steps on the CPU: ours beside the plain torch formulation.

    python bench/training.py            # the full table (about two minutes)
    python bench/training.py --tiny     # a smoke run

The privacy report (experiments.privacy_report) and the controls spend their time in four kinds of
step, timed here at the report's CPU size (48x48 windows, 60 of 50 ms to a 3 s clip, 5 bins x
2 polarities, the light net 8 wide, ResNet-18 16 wide, a DnCNN 16 x 5):

- the pipeline's anonymizer step (train.composite): every window through the anonymizer with
  its own noise, the runtime's event-rate cap, the events round trip (straight-through), the
  clips re-binned, a loss on them and the backward pass to the anonymizer;
- an anonymized draw of clips (train.clips.anonymized_clips, no gradient), which every
  attacker's training set is made of;
- a ClassNet's training step (train.classify.fit_classnet: the clean nets, the post-trained
  gesture nets, the attackers), alone and behind a denoiser.

The plain formulation is what the torch code reads like without our care: NCHW, torch's
single-threaded samplers, the straight-through estimator as x + (round(x) - x).detach(). Ours
are the library's own functions. Both take turns in rounds and each keeps its best round (the
machine is shared); the ratio is plain / ours. Both run in a process that keeps freed memory,
as the studies' processes do (anonynoise.memory); a second table times our steps again in a child
process with glibc's malloc as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO, cap_event_rate  # noqa: E402
from anonynoise.memory import keep_freed_memory  # noqa: E402
from anonynoise.models import ClassNet  # noqa: E402
from anonynoise.models.denoise import DenoiseNet  # noqa: E402
from anonynoise.models.noise import LightAnonNet  # noqa: E402
from train.classify import cpu_input, cpu_layout  # noqa: E402
from train.clips import (anonymized_clips, compose_clips, flat_windows, stream_windows,  # noqa: E402
                         study_generators)

CPU = torch.device("cpu")


def plain_round_trip(x: torch.Tensor) -> torch.Tensor:
    v = x.detach().clamp(min=0)
    floor = v.floor()
    return floor + (torch.rand(v.shape) < v - floor).to(v.dtype)


def plain_anonymizer_step(anon, windows, backward=True):
    n, w = windows.shape[:2]
    flat = windows.float().reshape(n * w, *windows.shape[2:])
    out = cap_event_rate(anon(flat), flat, DEFAULT_MAX_EVENT_RATIO)
    seen = out + (plain_round_trip(out) - out).detach() if backward else plain_round_trip(out)
    clip = compose_clips(seen.reshape(n, w, *seen.shape[1:]))
    if backward:
        anon.zero_grad(set_to_none=True)
        clip.square().mean().backward()
    return clip


def our_anonymizer_step(anon, windows, generators):
    n, w = windows.shape[:2]
    flat = flat_windows(windows.float())
    raw = anon(flat, generator=generators)
    seen = stream_windows(raw, flat, straight_through=True, generator=generators)
    clip = compose_clips(seen.reshape(n, w, *seen.shape[1:]))
    anon.zero_grad(set_to_none=True)
    clip.square().mean().backward()
    return clip


@torch.no_grad()
def plain_draw(anon, windows, batch=8):
    return torch.cat([plain_anonymizer_step(anon, torch.from_numpy(windows[k:k + batch]),
                                            backward=False)
                      for k in range(0, len(windows), batch)]).numpy()


def attacker_step(parts, x, y, ours):
    net, den, opt = parts
    xb = cpu_input(x, CPU) if ours else x
    loss = 0.0
    if den is not None:
        xb = den(xb)
        loss = F.mse_loss(xb, x)
    logits, _, _ = net(xb)
    loss = loss + F.cross_entropy(logits, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def attacker_parts(ours, width, denoiser=True):
    torch.manual_seed(0)
    net = ClassNet("resnet18", 50, 10, width)
    den = DenoiseNet(10, width=16, depth=5) if denoiser else None
    if ours:
        net = cpu_layout(net, CPU)
        den = cpu_layout(den, CPU) if denoiser else None
    params = [*net.parameters(), *(den.parameters() if denoiser else [])]
    return net, den, torch.optim.Adam(params, 1e-3)


def best_of_rounds(cases: dict, rounds: int, repeats: int) -> dict:
    """Seconds per call of each case, the best round's mean; the cases take turns."""
    best = {k: float("inf") for k in cases}
    for f in cases.values():
        f()  # warm up (allocator, oneDNN primitives)
    for _ in range(rounds):
        for name, f in cases.items():
            t0 = time.perf_counter()
            for _ in range(repeats):
                f()
            best[name] = min(best[name], (time.perf_counter() - t0) / repeats)
    return best


def measure(tiny: bool) -> tuple[str, list[tuple[str, str, dict]]]:
    """The header and, per step, (name, batch, {case: ms per sample})."""
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    size, n_windows, clips = (16, 10, 4) if tiny else (48, 60, 16)
    rounds, repeats = (1, 1) if tiny else (3, 3)
    rng = np.random.default_rng(0)
    # about the synthetic benchmark's density at 48x48: 2 % of a window's cells hold an event
    windows = (rng.random((clips, n_windows, 10, size, size)) < 0.02).astype(np.uint8)
    anon = LightAnonNet(10, 1.0, "mean_scale", width=8)
    generators = study_generators(CPU)
    x = torch.rand(32, 10, size, size)
    y = torch.randint(0, 50, (32,))
    plain_net, our_net = (attacker_parts(ours, 16, denoiser=False) for ours in (False, True))
    plain_den, our_den = (attacker_parts(ours, 16) for ours in (False, True))
    w_t = torch.from_numpy(windows)
    rows = [
        ("anonymizer step (pipeline)", f"{clips} clips x {n_windows} windows",
         {"plain": lambda: plain_anonymizer_step(anon, w_t),
          "ours": lambda: our_anonymizer_step(anon, w_t, generators)}, clips),
        ("anonymized draw (no gradient)", f"{clips} clips x {n_windows} windows",
         {"plain": lambda: plain_draw(anon, windows),
          "ours": lambda: anonymized_clips(anon, windows)}, clips),
        ("attacker (or any ClassNet) step", "batch 32",
         {"plain": lambda: attacker_step(plain_net, x, y, False),
          "ours": lambda: attacker_step(our_net, x, y, True)}, 32),
        ("attacker step behind a denoiser", "batch 32",
         {"plain": lambda: attacker_step(plain_den, x, y, False),
          "ours": lambda: attacker_step(our_den, x, y, True)}, 32),
    ]
    header = (f"# CPU ({os.cpu_count()} cores), {torch.get_num_threads()} threads, torch "
              f"{torch.__version__}, {size}x{size}; ms per sample (clip or attacker input), "
              f"the best of {rounds} rounds of {repeats}")
    return header, [(name, batch, {k: 1e3 * v / per for k, v in
                                   best_of_rounds(cases, rounds, repeats).items()})
                    for name, batch, cases, per in rows]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a quick run that checks the script")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc as it is (the child run of the second table)")
    ap.add_argument("--json", action="store_true", help="print the times as JSON")
    args = ap.parse_args(argv)
    kept = False if args.default_malloc else keep_freed_memory()
    header, rows = measure(args.tiny)
    if args.json:
        print(json.dumps(rows))
        return 0
    print(header + (", freed memory kept (anonynoise.memory)" if kept else ""))
    print("| step | batch | plain torch | ours | plain / ours |")
    print("|---|---|---|---|---|")
    for name, batch, t in rows:
        print(f"| {name} | {batch} | {t['plain']:.2f} | {t['ours']:.2f} | "
              f"ours {t['plain'] / t['ours']:.2f}x |")
    if not kept:
        return 0
    # the allocator is the process's: glibc's default malloc is timed in a child process
    child = subprocess.run([sys.executable, os.path.abspath(__file__), "--default-malloc",
                            "--json", *(["--tiny"] if args.tiny else [])],
                           capture_output=True, text=True, check=True)
    default = {name: t for name, _, t in json.loads(child.stdout.splitlines()[-1])}
    print("\nOur steps with glibc's default malloc (a child process) and with freed memory "
          "kept (anonynoise.memory.keep_freed_memory, this process):\n")
    print("| step | default malloc | kept | default / kept |")
    print("|---|---|---|---|")
    for name, _, t in rows:
        d = default[name]["ours"]
        print(f"| {name} | {d:.2f} | {t['ours']:.2f} | kept {d / t['ours']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
