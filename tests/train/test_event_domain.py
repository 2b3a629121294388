import numpy as np
import pytest
import torch

from anonynoise.represent import counts_to_events, events_to_counts
from train.event_domain import (event_mass, event_rate_ratio, event_round_trip,
                                noise_budget_penalty, straight_through_round_trip)


def test_round_trip_of_integer_counts_is_exact_and_negatives_vanish():
    x = torch.tensor([[[[0.0, 3.0], [-2.0, 7.0]]]])
    assert torch.equal(event_round_trip(x), torch.tensor([[[[0.0, 3.0], [0.0, 7.0]]]]))


def test_round_trip_equals_what_the_streams_events_bin_back_to():
    # the stream: counts_to_events then a consumer's events_to_counts over the same window
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, size=(5, 2, 16, 16)).astype(np.float32)
    events = counts_to_events(x, 0, 50_000, seed=1)
    rebinned = events_to_counts(events, 0, 50_000, 5)
    assert np.array_equal(rebinned, x)
    ours = event_round_trip(torch.from_numpy(x.reshape(1, 10, 16, 16)))
    assert np.array_equal(ours.numpy().reshape(5, 2, 16, 16), x)


def test_fractions_round_stochastically_to_their_expectation():
    x = torch.full((1, 1, 200, 200), 0.3)
    out = event_round_trip(x, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0.0, 1.0}
    assert abs(float(out.mean()) - 0.3) < 0.01


def test_parallel_generators_round_the_same_way_and_reproducibly():
    from anonynoise.models.noise import noise_generators

    def gens(seeds):
        out = noise_generators(len(seeds))
        for g, s in zip(out, seeds):
            g.manual_seed(s)
        return out

    x = torch.rand(16, 10, 48, 48).contiguous(memory_format=torch.channels_last) * 3 - 0.5
    a = event_round_trip(x, gens([5, 6]))
    assert torch.equal(a, event_round_trip(x, gens([5, 6])))
    v = x.clamp(min=0)
    assert torch.equal(a == v.floor(), a != v.floor() + 1)  # each cell its floor or ceiling
    assert bool((a[v == v.floor()] == v[v == v.floor()]).all())  # exact counts stay exact
    assert abs(float(a.mean()) - float(v.mean())) < 0.01
    y = straight_through_round_trip(x.requires_grad_(), gens([5, 6]))
    assert torch.equal(y.detach(), a)


def test_straight_through_gradient_is_the_identity():
    x = torch.tensor([0.4, 1.6, -3.0], requires_grad=True)
    y = straight_through_round_trip(x)
    assert set(y.detach().tolist()) <= {0.0, 1.0, 2.0}
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_noise_budget_penalises_only_the_excess_event_rate():
    clean = torch.zeros(2, 1, 2, 2)
    clean[:, 0, 0, 0] = 10.0  # 10 events per sample
    within = clean * 2.5
    over = clean.clone()
    over[0, 0, 1, 1] = 40.0  # sample 0: 50 events, 5x
    assert float(event_mass(over)[0]) == 50.0
    assert float(noise_budget_penalty(within, clean, 3.0)) == 0.0
    assert abs(float(noise_budget_penalty(over, clean, 3.0)) - (5.0 - 3.0) / 2) < 1e-6
    negative = clean - 100.0  # negative values are no events
    assert float(event_mass(negative).sum()) == 0.0
    assert abs(event_rate_ratio(over, clean) - 60 / 20) < 1e-6


def test_the_clamp_gradient_stops_below_zero_and_passes_at_zero():
    """'identity' passes the gradient everywhere (a value below zero keeps being pushed,
    though it sends no event); 'clamp' passes it where x >= 0 only: at 0 (an identity start
    on an empty pixel) it still learns, below it gets nothing. The forward is the same."""
    from train.event_domain import straight_through_round_trip

    x = torch.tensor([-2.0, -0.1, 0.0, 0.4, 3.0], requires_grad=True)
    forward = {}
    for gradient, expected in (("identity", [1, 1, 1, 1, 1]), ("clamp", [0, 0, 1, 1, 1])):
        x.grad = None
        g = torch.Generator().manual_seed(0)
        y = straight_through_round_trip(x, g, gradient)
        y.backward(torch.ones_like(y))
        assert x.grad.tolist() == expected
        forward[gradient] = y.detach()
    assert torch.equal(forward["identity"], forward["clamp"])
    assert forward["clamp"][:2].tolist() == [0.0, 0.0] and forward["clamp"][4] == 3.0
    with pytest.raises(ValueError, match="gradient must be one of"):
        straight_through_round_trip(x, None, "leaky")
