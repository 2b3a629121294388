"""Metrics: top-1 accuracy; Re-ID retrieval (CMC rank-k and mAP) with the reference's rules.

Re-ID follows the reference's evaluation: descriptor = embedding(x) + embedding(flip(x)),
L2-normalised, ranked by cosine similarity. For each query, gallery items of the same
identity that share the query's file or its target label (gesture, emotion, camera) are junk
and removed; the other same-identity items are the good matches. AP is the Market-1501
trapezoid; queries without a good match add nothing but still count in the denominator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


def top1_accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows whose largest logit is the target class."""
    if len(target) == 0:
        raise ValueError("accuracy of an empty batch")
    return float((logits.argmax(dim=1) == target).float().mean())


def flip_descriptor(embed: Callable[[torch.Tensor], torch.Tensor],
                    x: torch.Tensor) -> torch.Tensor:
    """L2-normalised embed(x) + embed(x flipped left-right); x is (N, C, H, W)."""
    d = embed(x) + embed(torch.flip(x, dims=(3,)))
    return d / (d.norm(dim=1, keepdim=True) + 1e-12)


def average_precision(order: np.ndarray, good: np.ndarray, junk: np.ndarray) -> tuple[float, np.ndarray]:
    """The reference's AP and CMC row for one query, from the gallery ranking `order`.

    Returns (ap, cmc) with cmc (one entry per gallery item) = 1 from the rank of the first
    good match on (ranks counted after junk removal); (0, None) when there is no good match.
    """
    if good.size == 0:
        return 0.0, None
    cmc = np.zeros(len(order), dtype=np.int64)
    order = order[~np.isin(order, junk)]
    hits = np.flatnonzero(np.isin(order, good))  # ranks of the good matches, ascending
    cmc[hits[0]:] = 1
    ap = 0.0
    n_good = len(good)
    for i, rank in enumerate(hits):
        precision = (i + 1) / (rank + 1)
        old_precision = i / rank if rank != 0 else 1.0
        ap += (old_precision + precision) / (2 * n_good)
    return ap, cmc


@dataclass(frozen=True)
class ReidResult:
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    queries: int
    queries_without_match: int

    def as_dict(self) -> dict:
        return {"rank1": self.rank1, "rank5": self.rank5, "rank10": self.rank10,
                "mAP": self.mAP, "queries": self.queries,
                "queries_without_match": self.queries_without_match}


def reid_evaluate(query_desc, query_id, query_file, query_target,
                  gallery_desc, gallery_id, gallery_file, gallery_target) -> ReidResult:
    """CMC rank-1/5/10 and mAP of normalised descriptors (numpy or torch, (N, D))."""
    q = np.asarray(query_desc, dtype=np.float64)
    g = np.asarray(gallery_desc, dtype=np.float64)
    q_id, q_file, q_tgt = (np.asarray(a) for a in (query_id, query_file, query_target))
    g_id, g_file, g_tgt = (np.asarray(a) for a in (gallery_id, gallery_file, gallery_target))
    if len(q) == 0 or len(g) == 0:
        raise ValueError("Re-ID evaluation needs at least one query and one gallery item")
    scores = q @ g.T
    cmc_sum = np.zeros(len(g), dtype=np.float64)
    ap_sum, unmatched = 0.0, 0
    for i in range(len(q)):
        # Descending score; ties broken as the reference's argsort(...)[::-1] breaks them.
        order = np.argsort(scores[i], kind="stable")[::-1]
        same_id = np.flatnonzero(g_id == q_id[i])
        same_file_or_target = np.flatnonzero((g_file == q_file[i]) | (g_tgt == q_tgt[i]))
        good = np.setdiff1d(same_id, same_file_or_target)
        junk = np.intersect1d(same_id, same_file_or_target)
        ap, cmc = average_precision(order, good, junk)
        if cmc is None:
            unmatched += 1
            continue
        cmc_sum += cmc
        ap_sum += ap
    n = len(q)

    def rank(k):
        return float(cmc_sum[min(k, len(g)) - 1] / n)

    return ReidResult(rank(1), rank(5), rank(10), ap_sum / n, n, unmatched)
