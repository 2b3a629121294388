"""Training losses: the batch-hard triplet loss and the cross-entropy wiring of the stages."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

TRIPLET_MARGIN = 4.0


def pairwise_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(m, n) Euclidean distances, clamped at 1e-12 before the square root as the reference
    does (so a sample's distance to itself is 1e-6, and gradients stay finite)."""
    sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1, keepdim=True).t() - 2.0 * a @ b.t()
    return sq.clamp(min=1e-12).sqrt()


def batch_hard_triplet(embeddings: torch.Tensor, labels: torch.Tensor,
                       margin: float = TRIPLET_MARGIN) -> torch.Tensor:
    """mean(max(0, d_ap - d_an + margin)) with the hardest positive and negative per sample.

    As in the reference: the positives include the sample itself, so a sample without another
    positive gets d_ap = 1e-6; a sample without a negative gets d_an = inf (no loss).
    Embeddings are not normalised.
    """
    dist = pairwise_euclidean(embeddings, embeddings)
    same = labels.view(-1, 1) == labels.view(1, -1)
    d_ap = dist.masked_fill(~same, float("-inf")).max(dim=1).values
    d_an = dist.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(d_ap - d_an + margin).mean()


def target_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target net's loss: cross-entropy on the task labels."""
    return F.cross_entropy(logits, target)


def reid_loss(logits: torch.Tensor, embedding: torch.Tensor, identity: torch.Tensor,
              margin: float = TRIPLET_MARGIN) -> torch.Tensor:
    """The Re-ID net's loss: cross-entropy on identities plus the batch-hard triplet loss."""
    return F.cross_entropy(logits, identity) + batch_hard_triplet(embedding, identity, margin)


def confusion_loss(id_logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(id_logits)) averaged over the batch: 0 where the Re-ID net's
    posterior over the training identities is uniform, growing as it singles anyone out.

    Pushing a Re-ID net's loss up (the triplet term) can be won by making it confidently
    wrong, a relabelling a fresh attacker learns back; this term is won only by a net that
    cannot tell the identities apart, and it stops there by itself (no cap needed)."""
    log_p = F.log_softmax(id_logits, dim=1)
    return (-log_p.mean(dim=1) - math.log(id_logits.shape[1])).mean()


def anonymizer_loss(target_logits: torch.Tensor, target: torch.Tensor,
                    id_embedding: torch.Tensor | Sequence[torch.Tensor], identity: torch.Tensor,
                    reid_weight: float = 1.0, margin: float = TRIPLET_MARGIN,
                    reid_cap: float | None = None, push: str = "triplet",
                    id_logits: torch.Tensor | Sequence[torch.Tensor] | None = None
                    ) -> torch.Tensor:
    """The anonymizer's loss: keep the task (CE) and push identities apart in the Re-ID net's
    embedding (minus the triplet loss); the reference's weight of the Re-ID term is 1. With
    several Re-ID nets' embeddings, the push is the mean of their (capped) triplet losses.

    The reference leaves the triplet term unbounded: past chance (triplet = margin, same and
    other people equally far) the anonymizer keeps spending the signal on making the Re-ID net
    wrong on purpose. `reid_cap` stops the push there (min(triplet, cap)).

    `push="confusion"` replaces minus the triplet term by plus the Re-ID nets' mean
    `confusion_loss` of `id_logits`, which stops at chance by itself (`reid_cap` unused)."""
    if push == "confusion":
        logits = [id_logits] if torch.is_tensor(id_logits) else list(id_logits)
        return F.cross_entropy(target_logits, target) + reid_weight * torch.stack(
            [confusion_loss(lg) for lg in logits]).mean()
    if push != "triplet":
        raise ValueError(f"unknown Re-ID push {push!r} (triplet or confusion)")
    embeddings = [id_embedding] if torch.is_tensor(id_embedding) else list(id_embedding)
    triplets = [batch_hard_triplet(e, identity, margin) for e in embeddings]
    if reid_cap is not None:
        triplets = [t.clamp(max=reid_cap) for t in triplets]
    return F.cross_entropy(target_logits, target) - reid_weight * torch.stack(triplets).mean()
