"""The privacy grid (issue 39): counts on cells of several pixels, events sampled back within
their cell, sizes that follow the sensor, and the dense buffer that clears what it touched."""

import numpy as np
import pytest

import anonynoise
from anonynoise import represent
from anonynoise.checkpoint import load_checkpoint
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events
from anonynoise.examples import clustered_stream
from anonynoise.filters import FilterConfig, ModelFilters, PrivacyFilter
from anonynoise.loading import default_model

WINDOW = 50_000


def full_counts_summed(events, bins, cell):
    """The grid counts by hand: full-resolution counts, padded to whole cells, summed."""
    full = represent.events_to_counts(events, 0, WINDOW, bins)
    gh, gw = -(-events.height // cell), -(-events.width // cell)
    padded = np.zeros((bins, 2, gh * cell, gw * cell), np.float32)
    padded[:, :, :events.height, :events.width] = full
    return padded.reshape(bins, 2, gh, cell, gw, cell).sum(axis=(3, 5))


@pytest.mark.parametrize("size,cell", [((128, 96), 5), ((97, 61), 7), ((64, 48), 1)])
def test_grid_counts_are_the_pixel_counts_summed_per_cell(size, cell):
    events = clustered_stream(*size, duration_s=WINDOW / 1e6, rate=1e6, seed=2)
    grid = represent.events_to_counts(events, 0, WINDOW, 5, cell=cell)
    assert grid.shape == (5, 2, *represent.grid_shape(*size, cell))
    assert np.array_equal(grid, full_counts_summed(events, 5, cell))
    assert grid.sum() == len(events)


def test_events_sampled_from_the_grid_stay_in_their_cell_and_on_the_sensor():
    # the last column and row of cells are cut by the sensor (97 = 13 * 7 + 6)
    events = clustered_stream(97, 61, duration_s=WINDOW / 1e6, rate=1e6, seed=3)
    grid = represent.events_to_counts(events, 0, WINDOW, 5, cell=7)
    out = represent.counts_to_events(grid, 0, WINDOW, seed=1, cell=7, sensor_size=(97, 61))
    assert out.sensor_size == (97, 61) and len(out) == len(events)  # integer counts: exact
    assert out.x.max() <= 96 and out.y.max() <= 60
    # back on the grid, the same counts: every event landed in its own cell and bin
    assert np.array_equal(represent.events_to_counts(out, 0, WINDOW, 5, cell=7), grid)
    # and inside a cell the pixels are drawn, not the cell's corner
    assert len(np.unique(out.x % 7)) == 7 and len(np.unique(out.y % 7)) == 7


def test_a_cell_of_one_pixel_is_the_full_resolution_path_draw_for_draw():
    events = clustered_stream(64, 48, duration_s=WINDOW / 1e6, rate=1e6, seed=4)
    counts = represent.events_to_counts(events, 0, WINDOW, 5) + np.float32(0.3)
    a = represent.counts_to_events(counts, 0, WINDOW, seed=9)
    b = represent.counts_to_events(counts, 0, WINDOW, seed=9, cell=1, sensor_size=(64, 48))
    for field in "txyp":
        assert np.array_equal(getattr(a, field), getattr(b, field))


@pytest.mark.parametrize("call,message", [
    (lambda g: represent.counts_to_events(g, 0, WINDOW, cell=5), "needs the sensor_size"),
    (lambda g: represent.counts_to_events(g, 0, WINDOW, cell=5, sensor_size=(640, 480)),
     "is not the grid of 5 px cells of a 640x480 sensor"),
    (lambda g: represent.counts_to_events(g, 0, WINDOW, cell=0, sensor_size=(128, 96)),
     "positive whole number"),
])
def test_a_wrong_grid_is_a_one_line_error(call, message):
    grid = np.ones((5, 2, 20, 26), np.float32)  # 128x96 in 5 px cells
    with pytest.raises(AnonyNoiseError, match=message):
        call(grid)


def test_the_count_buffer_gives_each_window_its_own_counts():
    """Dense windows (the whole buffer cleared) and sparse ones (only the cells the last
    window touched) in turn: every result equals a fresh count of its window."""
    buffer = represent.CountBuffer(160, 120, 5)
    rng = np.random.default_rng(0)
    for k in range(12):
        rate = [3e6, 2e4, 0.0, 5e5][k % 4]
        events = clustered_stream(160, 120, duration_s=WINDOW / 1e6, rate=rate,
                                  seed=int(rng.integers(1 << 30))) if rate else \
            make_events([], [], [], [], 160, 120)
        got = buffer(events, 0, WINDOW)
        assert np.array_equal(got, represent.events_to_counts(events, 0, WINDOW, 5)), k
    with pytest.raises(AnonyNoiseError, match="does not fit a 160x120 count buffer"):
        buffer(make_events([0], [0], [0], [1], 64, 48), 0, WINDOW)


def test_the_jitter_tile_follows_the_sensor_unless_given_in_pixels():
    relative = FilterConfig("warp+jitter")
    assert [relative.block_for(h) for h in (48, 128, 260, 480, 720)] == [6, 16, 32, 60, 90]
    assert FilterConfig("jitter", block=6).block_for(720) == 6
    assert relative.describe() == {"spec": "warp+jitter", "tiles": 8.0, "warp_scale": 0.25,
                                   "warp_displacement": 0.15, "warp_grid": 3,
                                   "warp_period_s": 60.0}
    assert FilterConfig("jitter", block=6).describe() == {"spec": "jitter", "block": 6}


def test_the_shipped_models_filters_keep_their_share_of_the_height():
    """It was trained behind 6 px tiles on a 48x48 sensor: an eighth of the height anywhere;
    --jitter-block still gives pixels."""
    training = load_checkpoint(default_model()).training
    model = ModelFilters().resolve(training)
    assert model.block is None and model.tiles == 8.0
    assert model.block_for(48) == 6 and model.block_for(720) == 90
    assert ModelFilters(block=12).resolve(training).block_for(720) == 12


def test_jitter_moves_events_within_the_tiles_of_this_sensor():
    events = clustered_stream(640, 480, duration_s=WINDOW / 1e6, rate=1e6, seed=5)
    moved = PrivacyFilter(FilterConfig("jitter"), seed=1)(events, 0, WINDOW, 5)
    assert np.array_equal(moved.x // 60, events.x // 60)  # 480 / 8 = 60 px tiles
    assert np.array_equal(moved.y // 60, events.y // 60)
    assert (moved.x != events.x).mean() > 0.9


@pytest.mark.parametrize("size,cell,grid", [((48, 48), 1, (48, 48)), ((128, 128), 3, (43, 43)),
                                            ((346, 260), 5, (70, 52)),
                                            ((1280, 720), 15, (86, 48))])
def test_the_shipped_net_sees_its_training_tile_on_every_sensor(size, cell, grid):
    anonymizer = anonynoise.load("net", seed=0)
    assert anonymizer.grid_cell(*size) == cell
    assert anonymizer.grid(*size)["grid"] == list(grid)


def test_a_large_window_reaches_the_net_on_the_grid_as_counts_per_pixel(monkeypatch):
    anonymizer = anonynoise.load("net", seed=0)
    events = clustered_stream(1280, 720, duration_s=WINDOW / 1e6, rate=1e6, seed=6)
    filtered = anonymizer._filter  # the same filters, the same draws: a seeded twin
    seen = []
    net_input = anonymizer.anonymize_tensor

    def spy(counts):
        seen.append(counts.copy())
        return net_input(counts)

    monkeypatch.setattr(anonymizer, "anonymize_tensor", spy)
    out = anonymizer.anonymize(events, 0, WINDOW)
    assert seen[0].shape == (5, 2, 48, 86)
    twin = PrivacyFilter(anonymizer.filters, seed=0)(events, 0, WINDOW, 5)
    expected = represent.events_to_counts(twin, 0, WINDOW, 5, cell=15) / np.float32(225)
    assert filtered is not None and np.allclose(seen[0], expected)
    assert out.events.sensor_size == (1280, 720) and len(out.events) > 0
    assert len(out.events) <= 2.9 * len(twin) * 1.2  # the cap, with the rounding's spread


def test_the_filters_alone_sample_within_their_tiles():
    anonymizer = anonynoise.load("none", filters="warp+jitter", seed=0)
    assert anonymizer.grid_cell(1280, 720) == 90 and anonymizer.grid_cell(48, 48) == 6
    assert anonymizer.grid(1280, 720) == {"cell": 90, "grid": [15, 8], "jitter_block": 90}
    events = clustered_stream(1280, 720, duration_s=WINDOW / 1e6, rate=1e6, seed=7)
    out = anonymizer.anonymize(events, 0, WINDOW)
    warped = PrivacyFilter(FilterConfig("warp"), seed=0)(events, 0, WINDOW, 5)
    assert len(out.events) == len(warped)  # no event added or lost, only moved
    assert out.tensor.shape == (5, 2, 8, 15)
