"""Privacy filters on events: each filter's defining property, the warp's period, OS entropy,
their place before the net in the anonymizer, and failing closed."""

import numpy as np
import pytest
import torch

from anonynoise import represent
from anonynoise.anonymizer import AnonymizationRefused, Anonymizer
from anonynoise.checkpoint import Representation, save_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events
from anonynoise.examples import clustered_stream
from anonynoise.filters import (FilterConfig, ModelFilters, PrivacyFilter, block_jitter,
                                first_event_per_slot, never_fired, refractory_events,
                                smooth_warp_map, warp_events)
from anonynoise.models import LightAnonNet
from anonynoise.rng import rng_state

WINDOW = 50_000


@pytest.fixture(scope="module")
def stream():
    return clustered_stream(64, 48, duration_s=0.05, rate=1e6, seed=5)


def test_slots_keep_the_first_event_of_each_pixel_polarity_and_slot():
    # window [0, 20) in 2 slots: [0, 10) and [10, 20)
    ev = make_events(t=[0, 3, 4, 5, 12, 15, 19, 25], x=[1, 1, 1, 2, 1, 1, 2, 1],
                     y=[1, 1, 1, 0, 1, 1, 0, 1], p=[1, 1, 0, 1, 1, 0, 1, 1], width=4, height=2)
    out = first_event_per_slot(ev, 0, 20, 2)
    assert out.t.tolist() == [0, 4, 5, 12, 15, 19]  # 3: a repeat; 25: after the window
    assert out.x.tolist() == [1, 1, 2, 1, 1, 2] and out.p.tolist() == [1, 0, 1, 1, 0, 1]


def test_slots_match_a_brute_force_reference(stream):
    out = first_event_per_slot(stream, 0, WINDOW, 5)
    edges = represent.bin_edges(0, WINDOW, 5)
    slot = np.searchsorted(edges, stream.t, side="right") - 1
    key = ((slot * 2 + stream.p) * 48 + stream.y.astype(np.int64)) * 64 + stream.x
    first = np.sort(np.unique(key, return_index=True)[1])
    assert np.array_equal(out.t, stream.t[first]) and np.array_equal(out.x, stream.x[first])
    assert 0 < len(out) < len(stream)
    counts = represent.events_to_counts(out, 0, WINDOW, 5)
    assert counts.max() == 1 and counts.sum() == len(out)


def test_refractory_keeps_one_event_per_pixel_and_polarity_per_period_across_calls():
    # period 10: pixel (1, 1) ON fires at 0, 5, 9, 10, 19, 25; OFF at 5; pixel (2, 0) ON at 9
    ev = make_events(t=[0, 5, 5, 9, 9, 10, 19, 25], x=[1, 1, 1, 1, 2, 1, 1, 1],
                     y=[1, 1, 1, 1, 0, 1, 1, 1], p=[1, 1, 0, 1, 1, 1, 1, 1], width=4, height=2)
    last = never_fired(4, 2)
    out = refractory_events(ev, 10, last)
    assert out.t.tolist() == [0, 5, 9, 10, 25] and out.p.tolist() == [1, 0, 1, 1, 1]
    assert out.x.tolist() == [1, 1, 2, 1, 1]
    # the state carries into the next call (the next window): 30 is 5 after 25
    later = make_events(t=[30, 36], x=[1, 1], y=[1, 1], p=[1, 1], width=4, height=2)
    assert refractory_events(later, 10, last).t.tolist() == [36]
    with pytest.raises(AnonyNoiseError, match="does not fit"):
        refractory_events(later, 10, never_fired(8, 2))


def test_refractory_matches_a_brute_force_reference_and_thins_a_stream(stream):
    out = refractory_events(stream, 2_000, never_fired(64, 48))
    last, keep = {}, []
    for i, (t, x, y, p) in enumerate(zip(stream.t.tolist(), stream.x.tolist(),
                                         stream.y.tolist(), stream.p.tolist())):
        if t - last.get((x, y, p), -10**12) >= 2_000:
            last[(x, y, p)] = t
            keep.append(i)
    assert np.array_equal(out.t, stream.t[keep]) and np.array_equal(out.y, stream.y[keep])
    assert 0 < len(out) < 0.9 * len(stream)


def test_the_refractory_state_spans_windows_and_starts_anew_when_time_goes_back():
    f = PrivacyFilter(FilterConfig("refractory", refractory_ms=0.1))  # 100 µs
    one = make_events(t=[10], x=[3], y=[2], p=[1], width=8, height=4)
    assert len(f(one, 0, 50, 5)) == 1
    again = make_events(t=[60], x=[3], y=[2], p=[1], width=8, height=4)
    assert len(f(again, 50, 100, 5)) == 0  # 50 µs after the kept one, in the next window
    assert len(f(one, 0, 50, 5)) == 1  # a looped replay: forgotten, not refused for ever
    assert len(f(again, 50, 100, 5)) == 0
    # another sensor of as many pixels, its (3, 4) at the index of the other's (3, 2): 95 µs
    # after that one's kept event, yet kept: a state of its own
    other = make_events(t=[105], x=[3], y=[4], p=[1], width=4, height=8)
    assert len(f(other, 100, 150, 5)) == 1


def test_jitter_moves_each_event_within_its_block_only(stream):
    out = block_jitter(stream, 4, rng_state(1))
    assert len(out) == len(stream)
    assert np.array_equal(out.t, stream.t) and np.array_equal(out.p, stream.p)
    assert np.array_equal(out.x // 4, stream.x // 4) and np.array_equal(out.y // 4, stream.y // 4)
    assert (out.x != stream.x).mean() > 0.6  # 3 in 4 move in x


def test_jitter_reaches_every_pixel_of_a_tile_and_stays_on_a_cut_tile():
    n = 4000
    ev = make_events(np.arange(n), np.full(n, 9), np.full(n, 5), np.zeros(n), width=10, height=6)
    out = block_jitter(ev, 4, rng_state(2))  # the tile at x 8..9 (cut at 10), y 4..5 (cut at 6)
    cells, hits = np.unique(out.y.astype(int) * 10 + out.x, return_counts=True)
    assert cells.tolist() == [48, 49, 58, 59]
    assert hits.min() > n / 4 * 0.85  # uniform over the cut tile


def test_a_zero_warp_is_the_identity_and_a_warp_is_smooth_and_random(stream):
    ident = smooth_warp_map(64, 48, np.random.default_rng(0), scale=0.0, displacement=0.0)
    out = warp_events(stream, *ident, rng_state(3))
    assert np.array_equal(out.x, stream.x) and np.array_equal(out.y, stream.y)
    a = smooth_warp_map(64, 48, np.random.default_rng(1))
    b = smooth_warp_map(64, 48, np.random.default_rng(2))
    assert np.abs(a[0] - b[0]).mean() > 0.5  # two draws differ by pixels
    # smooth: neighbours move together (the local stretch stays within the scale's range)
    assert np.abs(np.diff(a[0], axis=1)).max() < 2.0 and np.abs(np.diff(a[1], axis=0)).max() < 2.0


def test_a_warp_drops_what_it_moves_off_the_sensor_and_rounds_without_bias():
    n = 20000
    ev = make_events(np.arange(n), np.full(n, 2), np.full(n, 3), np.ones(n), width=8, height=8)
    map_x = np.full((8, 8), 4.25, np.float32)
    map_y = np.full((8, 8), 7.5, np.float32)  # half of them round to 8: off the sensor
    out = warp_events(ev, map_x, map_y, rng_state(4))
    assert abs(len(out) / n - 0.5) < 0.02 and set(out.y.tolist()) == {7}
    assert abs(out.x.mean() - 4.25) < 0.02  # stochastic rounding keeps the mean position
    off = warp_events(ev, map_x + 8, map_y, rng_state(4))
    assert len(off) == 0
    with pytest.raises(AnonyNoiseError, match="does not fit"):
        warp_events(ev, map_x[:4], map_y[:4], rng_state(4))


def test_the_warp_is_held_for_its_period_and_drawn_anew_after(stream):
    f = PrivacyFilter(FilterConfig("warp", warp_period_s=0.1))
    f(stream, 0, WINDOW, 5)
    first = f._warp
    f(stream, WINDOW, 2 * WINDOW, 5)
    assert f._warp is first and f.warps == 1
    f(stream, 2 * WINDOW, 3 * WINDOW, 5)  # 0.1 s after the first window
    assert f.warps == 2 and not np.array_equal(f._warp[0], first[0])
    f(stream, 0, WINDOW, 5)  # time went back (a looped replay): a new warp, not an old one
    assert f.warps == 3


def test_unseeded_filters_draw_from_os_entropy_and_seeded_ones_repeat(stream):
    a = PrivacyFilter(FilterConfig())(stream, 0, WINDOW, 5)
    b = PrivacyFilter(FilterConfig())(stream, 0, WINDOW, 5)
    assert len(a) != len(b) or not np.array_equal(a.x, b.x)
    c = PrivacyFilter(FilterConfig(), seed=3)(stream, 0, WINDOW, 5)
    d = PrivacyFilter(FilterConfig(), seed=3)(stream, 0, WINDOW, 5)
    assert np.array_equal(c.x, d.x) and np.array_equal(c.t, d.t)


@pytest.mark.parametrize("config, fragment", [
    (FilterConfig("warp+blur"), "unknown privacy filter 'blur'"),
    (FilterConfig("slots+slots"), "at most once"),
    (FilterConfig("jitter", block=1), "jitter block must be 2 to 1024"),
    (FilterConfig("warp", warp_period_s=0), "warp period must be positive"),
    (FilterConfig("warp", warp_scale=3), "warp scale"),
    (FilterConfig("refractory", refractory_ms=0), "refractory period must be 0.001 to 60000"),
])
def test_bad_configurations_are_one_line_errors(config, fragment):
    with pytest.raises(AnonyNoiseError, match=fragment):
        config.check()


def test_describe_names_what_runs_and_no_random_state():
    assert FilterConfig("slots").describe() == {"spec": "slots"}
    d = FilterConfig("warp+jitter", block=6).describe()
    assert d["block"] == 6 and d["warp_period_s"] == 60.0 and "seed" not in d
    assert "refractory_ms" not in d
    assert FilterConfig("refractory", refractory_ms=300).describe() == \
        {"spec": "refractory", "refractory_ms": 300}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)  # untrained, but clearly noisy
    return save_checkpoint(tmp_path_factory.mktemp("m") / "light.pt", net,
                           Representation(window_us=WINDOW))


def test_the_net_sees_the_filtered_events(checkpoint, stream, monkeypatch):
    anon = Anonymizer(checkpoint, "cpu", filters=FilterConfig("slots"))
    seen = []
    to_counts = represent.events_to_counts

    def spy(events, t0, t1, bins, **grid):
        seen.append(events)
        return to_counts(events, t0, t1, bins, **grid)

    monkeypatch.setattr(represent, "events_to_counts", spy)
    out = anon.anonymize(stream, 0, WINDOW)
    assert len(out.events) > 0 and len(seen) == 1
    assert np.array_equal(seen[0].t, first_event_per_slot(stream, 0, WINDOW, 5).t)


def test_no_filters_leaves_the_anonymizer_as_it_was(checkpoint):
    assert Anonymizer(checkpoint, "cpu", filters=FilterConfig("none")).filters is None


def test_a_net_trained_behind_filters_is_refused_without_them(tmp_path):
    """Its privacy was measured behind those filters (train.train_anonymizer behind its filters): run
    without them, or behind others, it is refused unless allow_weak."""
    from anonynoise.checkpoint import CheckpointError

    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)
    path = save_checkpoint(tmp_path / "behind.pt", net, Representation(window_us=WINDOW),
                           {"filters": {"spec": "warp+jitter", "block": 4}})
    for filters in (None, FilterConfig("jitter")):
        with pytest.raises(CheckpointError, match="trained behind the privacy filters "
                                                  "'warp[+]jitter'.*its own filters.*"
                                                  "'warp[+]jitter', or with allow_weak"):
            Anonymizer(path, "cpu", filters=filters)
    assert Anonymizer(path, "cpu", filters=FilterConfig("warp+jitter")).filters.spec == \
        "warp+jitter"
    assert Anonymizer(path, "cpu", filters=None, allow_weak=True).filters is None
    # the library's default, as the commands': the filters it was trained behind
    assert Anonymizer(path, "cpu").filters.describe() == {"spec": "warp+jitter", "block": 4,
                                                          "warp_scale": 0.25,
                                                          "warp_displacement": 0.15,
                                                          "warp_grid": 3, "warp_period_s": 60.0}


def test_model_filters_are_those_the_checkpoint_records(checkpoint, tmp_path):
    """--filters model (the default): a net trained behind filters runs behind the same ones,
    with their recorded parameters unless overridden; a net that records none runs without."""
    torch.manual_seed(0)
    net = LightAnonNet(10, width=8)
    torch.nn.init.constant_(net.head.bias, 1.0)
    path = save_checkpoint(tmp_path / "behind.pt", net, Representation(window_us=WINDOW),
                           {"filters": {"spec": "warp+jitter", "block": 8, "warp_scale": 0.1,
                                        "warp_period_s": 60.0}})
    got = Anonymizer(path, "cpu", filters=ModelFilters()).filters
    assert (got.spec, got.block, got.warp_scale, got.warp_period_s) == \
        ("warp+jitter", 8, 0.1, 60.0)
    got = Anonymizer(path, "cpu", filters=ModelFilters(block=2, warp_period_s=5.0,
                                                       refractory_ms=80.0)).filters
    assert (got.spec, got.block, got.warp_scale, got.warp_period_s, got.refractory_ms) == \
        ("warp+jitter", 2, 0.1, 5.0, 80.0)
    assert Anonymizer(checkpoint, "cpu", filters=ModelFilters(block=2)).filters is None
    assert ModelFilters().resolve({"filters": {"spec": "none"}}) is None
    assert ModelFilters().resolve(None) is None
    with pytest.raises(AnonyNoiseError, match="unknown privacy filter 'blur'"):
        ModelFilters().resolve({"filters": {"spec": "warp+blur"}})
    from anonynoise.checkpoint import CheckpointError

    odd = save_checkpoint(tmp_path / "odd.pt", net, Representation(window_us=WINDOW),
                          {"filters": {"spec": "jitter", "block": "four"}})
    with pytest.raises(CheckpointError, match="recorded privacy filters are unusable"):
        Anonymizer(odd, "cpu", filters=ModelFilters())


def test_a_failing_filter_refuses_the_window_and_counts_it(checkpoint, stream, monkeypatch):
    anon = Anonymizer(checkpoint, "cpu", filters=FilterConfig("jitter"))

    def broken(*a):
        raise MemoryError("no room")

    monkeypatch.setattr(anon, "_filter", broken)
    with pytest.raises(AnonymizationRefused, match="privacy filters failed: MemoryError"):
        anon.anonymize(stream, 0, WINDOW)
    assert anon.refused == 1 and anon.windows == 0


def test_filters_alone_need_a_filter_that_moves_events():
    for config in (None, FilterConfig("none"), FilterConfig("slots")):
        with pytest.raises(AnonyNoiseError, match="need filters with warp or jitter") as e:
            Anonymizer(None, filters=config)
        assert e.value.parameter == "filters"


def test_filters_alone_keep_each_blocks_counts_and_draw_new_timestamps(stream):
    anon = Anonymizer(None, filters=FilterConfig("jitter", block=4), window_us=WINDOW)
    out = anon.anonymize(stream, 0, WINDOW).events
    assert len(out) == len(stream) and anon.windows == 1 and anon.refused == 0

    def block_counts(events):
        c = represent.events_to_counts(events, 0, WINDOW, 5)
        return c.reshape(5, 2, 12, 4, 16, 4).sum((3, 5))

    assert np.array_equal(block_counts(out), block_counts(stream))
    # no input event leaves as it came: timestamps are drawn anew within their bin
    sparse = clustered_stream(64, 48, duration_s=0.05, rate=2e4, seed=6)  # 1 µs in 50 used
    again = anon.anonymize(sparse, 0, WINDOW).events
    assert len(again) == len(sparse) and np.isin(again.t, sparse.t).mean() < 0.1


def test_filters_alone_from_the_command_line(real_file, tmp_path):
    import subprocess
    import sys

    src = str(real_file("face_dvxplorer.aedat4"))
    done = subprocess.run([sys.executable, "-m", "anonynoise", "anonymize", src,
                           str(tmp_path / "a.npy"), "--model", "none", "--filters",
                           "warp+jitter"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "from 111,954 in 12 windows (0 dropped" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "anonynoise", "anonymize", src,
                          str(tmp_path / "b.npy"), "--model", "none", "--filters", "slots"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "error: --filters: the privacy filters alone (no model) need " \
        "filters with warp or jitter" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "b.npy").exists()
