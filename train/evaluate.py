"""Evaluation of the stages on FrameSets: task top-1 on val, Re-ID on query / gallery.

`prepare` is what happens to an input before the net sees it (nothing, the anonymizer, the
anonymizer and the denoiser, ...). For Re-ID the flipped copy goes through `prepare` again, so
an anonymizer draws fresh noise for it, as in the reference.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from anonynoise.metrics import ReidResult, flip_descriptor, reid_evaluate
from train.datasets.base import FrameSet

Prepare = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def batches(frameset: FrameSet, batch: int, workers: int = 0, sampler=None,
            shuffle: bool = False, drop_last: bool = False,
            generator: torch.Generator | None = None) -> DataLoader:
    return DataLoader(frameset, batch_size=batch, shuffle=shuffle and sampler is None,
                      sampler=sampler, num_workers=workers, drop_last=drop_last,
                      persistent_workers=False, generator=generator)


@torch.no_grad()
def target_top1(net: torch.nn.Module, val: FrameSet, prepare: Prepare = _identity,
                batch: int = 32, device: str | torch.device = "cpu", workers: int = 0) -> float:
    """Fraction of val samples whose predicted class is the target (over all samples, not a
    mean of per-batch accuracies as the reference logs it)."""
    net.eval()
    hits = total = 0
    for x, target, *_ in batches(val, batch, workers):
        logits = net(prepare(x.to(device)))[0]
        hits += int((logits.argmax(1).cpu() == target).sum())
        total += len(target)
    return hits / max(total, 1)


@torch.no_grad()
def descriptors(net: torch.nn.Module, frames: FrameSet, prepare: Prepare = _identity,
                batch: int = 32, device: str | torch.device = "cpu", workers: int = 0):
    """(descriptors, users, recordings, targets) with the reference's flip descriptor."""
    net.eval()
    out, users, recs, targets = [], [], [], []
    for x, target, _, user, rec in batches(frames, batch, workers):
        out.append(flip_descriptor(lambda v: net(prepare(v))[1], x.to(device)).cpu())
        users.append(user)
        recs.append(rec)
        targets.append(target)
    cat = lambda parts: torch.cat(parts).numpy()  # noqa: E731
    return cat(out), cat(users), cat(recs), cat(targets)


def reid_metrics(net: torch.nn.Module, query: FrameSet, gallery: FrameSet,
                 prepare: Prepare = _identity, batch: int = 32,
                 device: str | torch.device = "cpu", workers: int = 0) -> ReidResult:
    """Rank-k and mAP on unseen identities; junk = same recording or same target label."""
    q = descriptors(net, query, prepare, batch, device, workers)
    g = descriptors(net, gallery, prepare, batch, device, workers)
    return reid_evaluate(q[0], q[1], q[2], q[3], g[0], g[1], g[2], g[3])


def summary(result: ReidResult) -> dict:
    return {"reid_rank1": result.rank1, "reid_rank5": result.rank5,
            "reid_rank10": result.rank10, "reid_mAP": float(np.float64(result.mAP))}
