"""Training through the events the stream really sends: the round trip and the noise budget.

The stream turns the anonymized tensor back into events (negatives are no events, counts are
rounded stochastically, timestamps spread inside their bin) and a consumer bins them again.
Re-binning events that were spread inside their own bin gives back the same cells, so the
tensor -> events -> tensor round trip equals stochastic rounding of max(x, 0), which torch
does on any device. The gradient passes straight through (the rounding has none).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anonynoise.models.noise import empty_dense_like, fill_uniform


def event_round_trip(x: torch.Tensor,
                     generator: torch.Generator | Sequence[torch.Generator] | None = None
                     ) -> torch.Tensor:
    """What a consumer of the stream bins from the events sampled out of x (no gradient).
    Several generators draw the uniforms in parallel (anonynoise.models.noise.fill_uniform):
    on the CPU, torch draws them on one core, a fifth of a training step's time."""
    with torch.no_grad():
        v = x.detach().clamp(min=0)
        floor = v.floor()
        frac = v.sub_(floor)  # in place: v is ours
        u = fill_uniform(empty_dense_like(v), generator)  # v's layout: one pass below
        # u < frac, not floor(v + u): the sum's float rounding could lift an exact count
        return floor.add_(u.lt_(frac))


# How the round trip's backward treats a value below zero (no event): "identity" passes the
# gradient as if negative events existed (the first pipelines); "clamp" gives it none, as
# max(x, 0) does, and keeps the straight-through for the rounding alone. With "identity" a
# value pushed below zero keeps being pushed, with nothing in the forward pass to stop it.
ROUND_TRIP_GRADIENTS = ("identity", "clamp")


class _StraightThrough(torch.autograd.Function):
    """The round trip forward; backward the identity (the rounding has no gradient), or,
    with `clamp`, the identity where x >= 0 and zero below (max's own gradient; at 0 it
    passes, so a net started as the identity on empty pixels still learns to add there)."""

    @staticmethod
    def forward(ctx, x, generator, clamp):
        if clamp:
            ctx.save_for_backward(x.detach() >= 0)
        ctx.clamp = clamp
        return event_round_trip(x, generator)

    @staticmethod
    def backward(ctx, grad):
        if ctx.clamp:
            (alive,) = ctx.saved_tensors
            grad = grad * alive
        return grad, None, None


def straight_through_round_trip(x: torch.Tensor,
                                generator: torch.Generator | Sequence[torch.Generator] | None
                                = None, gradient: str = "identity") -> torch.Tensor:
    """event_round_trip in the forward pass; the backward by `gradient`
    (ROUND_TRIP_GRADIENTS)."""
    if gradient not in ROUND_TRIP_GRADIENTS:
        raise ValueError(f"gradient must be one of {ROUND_TRIP_GRADIENTS}, got {gradient!r}")
    return _StraightThrough.apply(x, generator, gradient == "clamp")


def event_mass(x: torch.Tensor) -> torch.Tensor:
    """Per sample, the number of events a tensor turns into (the sum of its positive part)."""
    return x.clamp(min=0).flatten(1).sum(1)


def noise_budget_penalty(anonymized: torch.Tensor, clean: torch.Tensor,
                         budget: float) -> torch.Tensor:
    """How far each sample's event count exceeds `budget` times the clean input's, averaged:
    0 within the budget. Unbounded noise multiplies the event rate until no stream can carry
    it; this keeps the anonymizer's output a usable stream."""
    ratio = event_mass(anonymized) / event_mass(clean).clamp(min=1.0)
    return torch.relu(ratio - budget).mean()


def event_rate_ratio(anonymized: torch.Tensor, clean: torch.Tensor) -> float:
    """Events out per event in, over a batch."""
    return float(event_mass(anonymized).sum() / event_mass(clean).sum().clamp(min=1.0))
