"""The CPU's one-pass output equals the torch ops it replaces (forward, cap, layout)."""

import numpy as np
import pytest
import torch

from anonynoise.anonymizer import cap_event_rate
from anonynoise.fused import anonymized_output
from anonynoise.models import LightAnonNet, PaperAnonNet


@pytest.mark.parametrize("form", ["scale", "mean_scale"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("ratio", [None, 3.0, 0.5])
def test_same_as_forward_then_cap(form, channels_last, ratio):
    torch.manual_seed(0)
    net = LightAnonNet(10, form=form, width=4).eval()
    # 30x21 is no multiple of 8: the light net pads inside and crops its maps (strided views)
    x = torch.poisson(torch.full((1, 10, 21, 30), 0.3))
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        noise, maps = net.noise_and_maps(x)
        expected = cap_event_rate(net(x, noise), x, ratio)[0].contiguous().numpy()
        got, non_finite = anonymized_output(x, maps, noise, form, ratio)
    assert non_finite == 0
    assert got.shape == (10, 21, 30) and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    if ratio == 0.5:  # the cap is active: the output's positive mass is the cap exactly
        assert np.maximum(got, 0).sum() == pytest.approx(0.5 * float(x.sum()), rel=1e-4)


def test_paper_net_maps_at_full_resolution():
    torch.manual_seed(1)
    net = PaperAnonNet(4).eval()
    x = torch.poisson(torch.full((1, 4, 9, 11), 1.0))
    with torch.inference_mode():
        noise, maps = net.noise_and_maps(x)
        got, _ = anonymized_output(x, maps, noise, net.form, None)
        np.testing.assert_allclose(got, net(x, noise)[0].numpy(), rtol=1e-5, atol=1e-5)


def test_non_finite_values_are_counted():
    x = torch.ones(1, 2, 3, 4)
    noise = torch.ones_like(x)
    maps = torch.ones(1, 2, 3, 4)
    maps[0, 1, 2, 3] = float("nan")
    maps[0, 0, 0, 0] = float("inf")
    _, non_finite = anonymized_output(x, maps, noise, "scale", 2.9)
    assert non_finite == 2
