import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anonynoise.events import concatenate, make_events
from anonynoise.windower import Windower


def stream(n=5000, span=1_000_000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, span, n)) + 123
    return make_events(t, rng.integers(0, 64, n), rng.integers(0, 48, n), rng.integers(0, 2, n),
                       64, 48)


def run(ev, window_us, cuts, **kw):
    w = Windower(window_us, 64, 48, **kw)
    out = []
    bounds = [0, *sorted(cuts), len(ev)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        out += w.push(ev[a:b])
    return out + w.flush(), w


def test_windows_tile_time_and_hold_exactly_their_events():
    ev = stream()
    windows, _ = run(ev, 50_000, [10, 2000, 2001, 4000])
    assert windows[0].t_start == ev.t[0]
    for a, b in zip(windows[:-1], windows[1:]):
        assert a.t_end == b.t_start and a.t_end - a.t_start == 50_000
    for w in windows:
        assert np.all((w.events.t >= w.t_start) & (w.events.t < w.t_end))
    joined = concatenate([w.events for w in windows])
    assert np.array_equal(joined.t, ev.t) and np.array_equal(joined.x, ev.x)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=12), st.integers(1_000, 200_000))
def test_how_batches_are_cut_does_not_change_the_windows(cuts, window_us):
    ev = stream(3000, 600_000, seed=1)
    one, _ = run(ev, window_us, [])
    many, _ = run(ev, window_us, cuts)
    assert [(w.t_start, len(w.events)) for w in one] == [(w.t_start, len(w.events)) for w in many]


def test_a_quiet_source_still_gets_empty_windows_from_the_watermark():
    w = Windower(10_000, 64, 48, t0=0)
    assert w.advance_to(9_999) == []
    windows = w.advance_to(35_000)
    assert [(x.t_start, x.t_end, len(x.events)) for x in windows] == \
        [(0, 10_000, 0), (10_000, 20_000, 0), (20_000, 30_000, 0)]
    late = w.push(make_events([31_000, 45_000], [1, 2], [1, 2], [0, 1], 64, 48))
    assert [(x.t_start, len(x.events)) for x in late] == [(30_000, 1)]


def test_a_burst_is_thinned_evenly_and_counted():
    ev = stream(10_000, 100_000)
    windows, w = run(ev, 1_000_000, [], max_events=1000)
    assert len(windows) == 1 and len(windows[0].events) == 1000
    assert windows[0].cut == 9000 and w.cut_events == 9000
    t = windows[0].events.t
    assert t[0] == ev.t[0] and t[-1] == ev.t[-1] and np.all(np.diff(t) >= 0)


def test_events_before_the_pending_window_are_dropped_not_reordered():
    w = Windower(10_000, 64, 48)
    w.push(make_events([100, 25_000], [1, 1], [1, 1], [0, 0], 64, 48))
    assert w.push(make_events([50, 60], [1, 1], [1, 1], [0, 0], 64, 48)) == []
    rest = w.flush()
    assert [len(x.events) for x in rest] == [1]


def test_bad_window():
    with pytest.raises(ValueError):
        Windower(0, 64, 48)
