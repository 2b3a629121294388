import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from anonynoise import represent
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch, make_events, to_structured
from anonynoise.examples import clustered_stream
from anonynoise.io import read_events

tonic = pytest.importorskip("tonic")


def tonic_frames(events, bins):
    frame = tonic.transforms.ToFrame(sensor_size=(events.width, events.height, 2),
                                     n_time_bins=bins)
    return frame(to_structured(events)).astype(np.float32)


def test_bin_edges_are_exact_integer_ceilings():
    assert represent.bin_edges(0, 10, 3).tolist() == [0, 4, 7, 10]
    assert represent.bin_edges(10**15, 10**15 + 20, 5).tolist() == [10**15 + 4 * k
                                                                      for k in range(6)]
    with pytest.raises(AnonyNoiseError, match="too short"):
        represent.bin_edges(0, 4, 5)


def test_counts_by_hand():
    ev = make_events([0, 1, 4, 5, 9, 10], [0, 1, 1, 1, 2, 3], [0, 0, 1, 1, 2, 2],
                     [1, 0, 1, 1, 0, 1], 4, 3)
    c = represent.events_to_counts(ev, 0, 10, 2)  # bins [0, 5), [5, 10); t=10 is outside
    assert c.shape == (2, 2, 3, 4) and c.dtype == np.float32
    expected = np.zeros((2, 2, 3, 4), np.float32)
    expected[0, 1, 0, 0] = 1  # t=0 ON (0, 0)
    expected[0, 0, 0, 1] = 1  # t=1 OFF (1, 0)
    expected[0, 1, 1, 1] = 1  # t=4 ON (1, 1)
    expected[1, 1, 1, 1] = 1  # t=5 ON (1, 1)
    expected[1, 0, 2, 2] = 1  # t=9 OFF (2, 2)
    assert np.array_equal(c, expected)
    # channel order after reshape: bin0-OFF, bin0-ON, bin1-OFF, bin1-ON
    assert c.reshape(4, 3, 4)[1, 0, 0] == 1 and c.reshape(4, 3, 4)[2, 2, 2] == 1


@pytest.mark.parametrize("size, bins", [((128, 128), 5), ((346, 260), 5), ((64, 48), 3)])
def test_counts_equal_tonic_toframe_on_synthetic_events(size, bins):
    ev = clustered_stream(*size, duration_s=0.2, rate=5e5, seed=3)
    t0, t1 = represent.whole_sample_window(ev, bins)
    ours = represent.events_to_counts(ev, t0, t1, bins)
    assert np.array_equal(ours, tonic_frames(ev, bins))
    assert ours.sum() < len(ev) or (int(ev.t[-1]) - int(ev.t[0])) % bins == 0


@pytest.mark.parametrize("name", ["face_dvxplorer.aedat4", "robotarm_davis346.aedat4",
                                  "spinner_gen3_evt2.raw"])
def test_counts_equal_tonic_toframe_on_real_recordings(real_file, name):
    ev = read_events(real_file(name))
    t0, t1 = represent.whole_sample_window(ev, 5)
    assert np.array_equal(represent.events_to_counts(ev, t0, t1, 5), tonic_frames(ev, 5))


def test_counts_reuse_a_buffer_and_refuse_a_wrong_one():
    ev = clustered_stream(32, 32, duration_s=0.05, rate=1e5, seed=0)
    out = np.full((5, 2, 32, 32), 7.0, np.float32)
    got = represent.events_to_counts(ev, 0, 50_000, 5, out=out)
    assert got is out and np.array_equal(out, represent.events_to_counts(ev, 0, 50_000, 5))
    with pytest.raises(AnonyNoiseError, match="out must be"):
        represent.events_to_counts(ev, 0, 50_000, 4, out=out)


def test_voxel_grid_equals_tonic():
    ev = clustered_stream(64, 48, duration_s=0.1, rate=3e5, seed=5)
    ours = represent.events_to_voxel(ev, int(ev.t[0]), int(ev.t[-1]), 5)
    signed = to_structured(ev, np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"),
                                         ("p", "<i1")]))
    theirs = tonic.transforms.ToVoxelGrid(sensor_size=(64, 48, 2), n_time_bins=5)(signed)
    assert ours.dtype == np.float32 and theirs.shape == (5, 1, 48, 64)
    assert np.allclose(ours, theirs[:, 0], atol=1e-4)


def test_voxel_by_hand():
    ev = make_events([0, 5], [1, 2], [0, 0], [1, 0], 3, 1)
    v = represent.events_to_voxel(ev, 0, 10, 2)  # t=5 -> 1.0: all in bin 1, negative
    assert np.allclose(v[:, 0], [[0, 1, 0], [0, 0, -1]])


# --- tensor -> events


@st.composite
def count_tensors(draw):
    bins = draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    values = draw(hnp.arrays(np.int64, (bins, 2, h, w), elements=st.integers(0, 6)))
    span = draw(st.integers(bins, 50_000))
    t0 = draw(st.integers(0, 10**15))
    return values.astype(np.float32), t0, t0 + span


@settings(max_examples=150, deadline=None)
@given(count_tensors(), st.integers(0, 2**32))
def test_integer_tensors_round_trip_exactly(case, seed):
    counts, t0, t1 = case
    ev = represent.counts_to_events(counts, t0, t1, seed=seed)
    assert len(ev) == counts.sum()
    EventBatch(ev.t, ev.x, ev.y, ev.p, ev.width, ev.height)  # the output is valid events
    assert np.all(ev.t >= t0) and np.all(ev.t < t1)
    assert np.array_equal(represent.events_to_counts(ev, t0, t1, counts.shape[0]), counts)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, (2, 2, 5, 6), elements=st.floats(-3, 3, width=32)),
       st.integers(0, 2**32))
def test_any_finite_tensor_gives_valid_sorted_events_in_their_bins(values, seed):
    ev = represent.counts_to_events(values, 1000, 1100, seed=seed)
    EventBatch(ev.t, ev.x, ev.y, ev.p, ev.width, ev.height)
    counts = represent.events_to_counts(ev, 1000, 1100, 2)
    clamped = np.maximum(values, 0)
    # stochastic rounding: each cell gets floor(v) or floor(v) + 1 events
    assert np.all(counts >= np.floor(clamped)) and np.all(counts <= np.ceil(clamped))


def test_negative_values_give_no_events():
    assert len(represent.counts_to_events(np.full((2, 2, 3, 3), -5.0, np.float32), 0, 10)) == 0


def test_stochastic_rounding_is_unbiased():
    values = np.full((1, 2, 50, 50), 0.3, np.float32)  # 5000 cells, expected 1500 events
    n = [len(represent.counts_to_events(values, 0, 1000, seed=s)) for s in range(20)]
    assert abs(np.mean(n) - 1500) < 4 * np.sqrt(5000 * 0.3 * 0.7 / 20)


def test_timestamps_are_uniform_inside_the_bin():
    values = np.zeros((2, 2, 1, 1), np.float32)
    values[1, 1, 0, 0] = 20_000
    ev = represent.counts_to_events(values, 0, 1000, seed=1)
    assert ev.t.min() >= 500 and ev.t.max() <= 999 and np.all(ev.p == 1)
    hist = np.bincount(ev.t - 500, minlength=500)
    assert hist.min() > 10 and hist.max() < 80  # 40 per µs expected
    assert np.all(np.diff(ev.t) >= 0)


def test_long_sparse_bins_take_the_comparison_sort():
    values = np.zeros((2, 2, 4, 4), np.float32)
    values[0, 0, 1, 2] = 3
    values[1, 1, 3, 0] = 2
    ev = represent.counts_to_events(values, 0, 10**9, seed=2)  # 5e8 µs bins, 5 events
    assert len(ev) == 5 and np.all(np.diff(ev.t) >= 0)
    assert np.array_equal(represent.events_to_counts(ev, 0, 10**9, 2), values)


def test_two_unseeded_runs_differ_and_seeded_runs_repeat():
    values = np.full((5, 2, 16, 16), 0.5, np.float32)
    a = represent.counts_to_events(values, 0, 20_000)
    b = represent.counts_to_events(values, 0, 20_000)
    assert len(a) != len(b) or not np.array_equal(a.t, b.t) or not np.array_equal(a.x, b.x)
    c = represent.counts_to_events(values, 0, 20_000, seed=9)
    d = represent.counts_to_events(values, 0, 20_000, seed=9)
    assert all(np.array_equal(getattr(c, f), getattr(d, f)) for f in "txyp")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected_before_sampling(bad):
    values = np.ones((2, 2, 8, 8), np.float32)
    values[1, 0, 3, 5] = bad
    with pytest.raises(AnonyNoiseError, match="non-finite value .* at flat index 157"):
        represent.counts_to_events(values, 0, 100)


def test_a_tensor_asking_for_too_many_events_is_refused():
    values = np.full((1, 2, 4, 4), 1e6, np.float32)
    with pytest.raises(AnonyNoiseError, match="more than the limit"):
        represent.counts_to_events(values, 0, 100, max_events=1_000_000)


def test_flat_channel_layout_and_shape_errors():
    counts = np.zeros((10, 3, 4), np.float32)
    counts[3, 1, 2] = 2  # channel 3 = bin 1, ON
    ev = represent.counts_to_events(counts, 0, 100)
    assert ev.p.tolist() == [1, 1] and ev.x.tolist() == [2, 2] and ev.y.tolist() == [1, 1]
    assert np.all((ev.t >= 20) & (ev.t < 40))
    with pytest.raises(AnonyNoiseError, match="shape"):
        represent.counts_to_events(np.zeros((3, 4), np.float32), 0, 10)
    with pytest.raises(AnonyNoiseError, match="floating-point"):
        represent.counts_to_events(np.zeros((1, 2, 2, 2), np.int32), 0, 10)
