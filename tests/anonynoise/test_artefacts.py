"""Grid and polarity artefacts: the statistics on hand-made events, and the light net's
"pool" sampling, which treats every pixel of a 2x2 block alike by construction."""

import numpy as np
import pytest
import torch

from anonynoise.artefacts import artefacts, grid_statistics
from anonynoise.events import make_events
from anonynoise.models import LightAnonNet
from anonynoise.models.noise import by_polarity


def events_at(xs, ys, ps, width=8, height=8):
    n = len(xs)
    return make_events(np.arange(n), xs, ys, ps, width, height)


def test_statistics_of_hand_made_events():
    # 4 events: rows 0, 0, 1, 2 (3 even); columns 1, 3, 5, 0 (1 even); ON, ON, OFF, ON
    s = grid_statistics(events_at([1, 3, 5, 0], [0, 0, 1, 2], [1, 1, 0, 1]))
    assert (s.events, s.even_rows, s.even_cols, s.on_share) == (4, 0.75, 0.25, 0.75)
    assert s.row_wave == pytest.approx(0.5)      # |3 - 1| / 4
    assert s.col_wave == pytest.approx(0.5)      # |1 - 3| / 4
    # (-1)^(x+y): (1,0) -1, (3,0) -1, (5,1) +1, (0,2) +1 -> 0
    assert s.checker_wave == pytest.approx(0.0)
    assert grid_statistics(events_at([], [], [])).events == 0


def test_an_output_on_one_row_parity_and_on_events_is_an_artefact():
    rng = np.random.default_rng(0)
    n = 4000
    raw = events_at(rng.integers(0, 64, n), rng.integers(0, 64, n), rng.integers(0, 2, n),
                    64, 64)
    assert artefacts(raw, raw) == []
    gridded = events_at(raw.x, raw.y // 2 * 2, np.ones(n, np.uint8), 64, 64)
    found = artefacts(raw, gridded)
    assert any(f.startswith("even rows share 1.00") for f in found)
    assert any(f.startswith("ON share 1.00") for f in found)
    assert any(f.startswith("period-2 row pattern 1.00") for f in found)
    # a sensor's own column pattern smoothed towards a half is not an artefact
    patterned = events_at(raw.x // 2 * 2 + (rng.random(n) < 0.35), raw.y, raw.p, 64, 64)
    assert artefacts(patterned, raw) == []


@pytest.mark.parametrize("form", ["scale", "mean_scale"])
def test_pool_sampling_treats_every_pixel_of_a_block_alike(form):
    torch.manual_seed(0)
    x = torch.rand(2, 10, 34, 52) * (torch.rand(2, 10, 34, 52) < 0.2)
    noise = torch.randn_like(x)
    pool = LightAnonNet(10, form=form, width=8, sampling="pool")
    with torch.no_grad():
        for p in pool.parameters():  # not the identity start: every weight matters
            p.normal_(0, 0.3)
        maps = pool.predict(x, noise)
    assert maps.shape == (2, pool.out_channels, 34, 52)
    # the four pixels of every 2x2 block get the same scale (and mean)
    for dy in (0, 1):
        for dx in (0, 1):
            assert torch.equal(maps[..., dy::2, dx::2], maps[..., 0::2, 0::2])
    # the stride net, with random weights too, does not (its kernels differ per position)
    stride = LightAnonNet(10, form=form, width=8, sampling="stride")
    with torch.no_grad():
        for p in stride.parameters():
            p.normal_(0, 0.3)
        s = stride.predict(x, noise)
    assert not torch.equal(s[..., 1::2, 0::2], s[..., 0::2, 0::2])


def test_the_maps_split_between_polarities_as_the_window_s_events_do():
    x = torch.zeros(1, 4, 2, 2)  # 2 bins x 2 polarities
    x[0, 1] = 3.0  # bin 0 ON: 12 events
    x[0, 2] = 1.0  # bin 1 OFF: 4 events -> ON share 0.75
    maps = torch.tensor([[[[1.0]], [[2.0]]]]).expand(1, 2, 2, 2)  # one map per bin
    split = by_polarity(maps, x)
    assert split.shape == (1, 4, 2, 2)
    # channel order (bin, polarity): OFF gets 2 x 0.25, ON 2 x 0.75 of its bin's map
    assert torch.allclose(split[0, :, 0, 0], torch.tensor([0.5, 1.5, 1.0, 3.0]))
    empty = by_polarity(maps, torch.zeros(1, 4, 2, 2))  # no events: an even split
    assert torch.allclose(empty[0, :, 0, 0], torch.tensor([1.0, 1.0, 2.0, 2.0]))


def test_an_old_checkpoint_without_sampling_loads_as_stride(tmp_path):
    from anonynoise.checkpoint import Representation, load_checkpoint, save_checkpoint

    net = LightAnonNet(10, form="mean_scale", width=8, sampling="pool")
    path = save_checkpoint(tmp_path / "p.pt", net, Representation(window_us=50_000))
    ckpt = load_checkpoint(path)
    assert ckpt.arch["sampling"] == "pool" and ckpt.build("cpu").sampling == "pool"
    from anonynoise.loading import default_model

    shipped = load_checkpoint(default_model())
    assert "sampling" not in shipped.arch and shipped.build("cpu").sampling == "stride"


REAL_RECORDINGS = ["face_dvxplorer.aedat4", "robotarm_davis346.aedat4", "spinner_gen3_evt2.raw",
                   "road_gen41_evt3.raw", "sky_imx636.dat", "sky_imx636_evt3.raw"]


@pytest.mark.parametrize("name", REAL_RECORDINGS)
def test_the_shipped_filters_alone_leave_no_artefact_on_real_recordings(real_file, name):
    """Their first second, as experiments.artefact_probe measures it: row and column parity
    within 15 % of the input's, the ON share within 0.10, no period-2 wave the input has not."""
    from anonynoise.io import read_events
    from anonynoise.loading import load

    events = read_events(real_file(name))
    events = events.slice_time(int(events.t[0]), int(events.t[0]) + 1_000_000)
    anonymizer = load("none", filters="warp+refractory+jitter", seed=0)
    out = anonymizer(events)
    assert len(out) > 0.05 * len(events)
    assert artefacts(events, out) == []


def test_the_refractory_keeps_the_window_s_on_share():
    """A pixel that fires ON three times and OFF once (the refractory keeps one of each):
    over many pixels the ON share goes back to within 0.05 of three quarters, by dropping OFF
    events."""
    from anonynoise.filters import FilterConfig, PrivacyFilter, keep_on_share
    from anonynoise.rng import rng_state

    n_pixels = 4000
    x = np.repeat(np.arange(n_pixels) % 64, 4)
    y = np.repeat(np.arange(n_pixels) // 64, 4)
    p = np.tile([1, 1, 1, 0], n_pixels)
    t = np.arange(4 * n_pixels) * 10
    events = make_events(t, x, y, p, 64, 64)
    kept = PrivacyFilter(FilterConfig("refractory"), seed=0)(events, 0, int(t[-1]) + 1, 5)
    share = kept.p.mean()
    assert 0.68 < share < 0.72 and np.count_nonzero(kept.p) == n_pixels  # every ON kept
    assert np.all(np.diff(kept.t) >= 0)
    # the function alone: never an event added; shares already right are left alone
    assert keep_on_share(events, 0.75, rng_state(0)) is events
    fewer_on = keep_on_share(events, 0.5, rng_state(1))
    assert np.count_nonzero(fewer_on.p == 0) == n_pixels and 0.47 < fewer_on.p.mean() < 0.53
