"""The pure parts of the viewer: events -> RGB picture, the status text, the rates."""

import numpy as np
import pytest

from anonynoise.events import PACKED_DTYPE, TONIC_DTYPE, make_events
from stream.client import ReceivedWindow
from stream.protocol import WindowHeader
from viewer.overlay import WAITING, overlay_text
from viewer.receiver import ReceiverState, rates
from viewer.render import DEFAULT_PALETTE, Palette, polarity_codes, render_events, side_by_side

P = DEFAULT_PALETTE


def structured(xs, ys, ps, dtype=PACKED_DTYPE):
    ev = np.zeros(len(xs), dtype)
    ev["t"] = np.arange(len(xs))
    ev["x"], ev["y"], ev["p"] = xs, ys, ps
    return ev


def test_on_and_off_get_their_colours_and_the_rest_is_background():
    ev = structured([1, 2, 3], [0, 1, 2], [1, 0, 1])
    img = render_events(ev, 4, 3)
    assert img.shape == (3, 4, 3) and img.dtype == np.uint8
    assert tuple(img[0, 1]) == P.on and tuple(img[2, 3]) == P.on
    assert tuple(img[1, 2]) == P.off
    mask = np.ones((3, 4), bool)
    mask[[0, 2, 1], [1, 3, 2]] = False
    assert np.all(img[mask] == P.background)


def test_a_pixel_with_both_polarities_is_both_whatever_the_order_and_count():
    for ps in ([1, 0], [0, 1], [0, 0, 1, 0, 0], [1, 1, 1, 0]):
        ev = structured([5] * len(ps), [2] * len(ps), ps)
        img = render_events(ev, 8, 4)
        assert tuple(img[2, 5]) == P.both, ps
        assert (img.reshape(-1, 3) == P.background).all(1).sum() == 8 * 4 - 1
    # repeated events of one polarity stay that polarity
    assert tuple(render_events(structured([0] * 4, [0] * 4, [0] * 4), 2, 2)[0, 0]) == P.off


def test_an_empty_window_is_pure_background():
    for empty in (np.zeros(0, PACKED_DTYPE), make_events([], [], [], [], 64, 48)):
        img = render_events(empty, 64, 48)
        assert img.shape == (48, 64, 3)
        assert np.all(img == np.array(P.background, np.uint8))


def test_every_input_form_gives_the_same_picture():
    rng = np.random.default_rng(1)
    n = 2000
    x, y, p = rng.integers(0, 40, n), rng.integers(0, 30, n), rng.integers(0, 2, n)
    ref = render_events(structured(x, y, p), 40, 30)
    tonic = np.zeros(n, TONIC_DTYPE)
    tonic["x"], tonic["y"], tonic["p"] = x, y, p.astype(bool)
    batch = make_events(np.arange(n), x, y, p, 40, 30)
    assert np.array_equal(render_events(tonic, 40, 30), ref)
    assert np.array_equal(render_events(batch, 40, 30), ref)
    # and it matches a per-event reference
    codes = np.zeros((30, 40), int)
    for xi, yi, pi in zip(x, y, p):
        codes[yi, xi] |= 1 if pi else 2
    assert np.array_equal(polarity_codes(batch, 40, 30), codes)


def test_events_outside_the_sensor_are_ignored_not_wrapped():
    # the protocol promises none; a broken publisher must not crash the GUI or wrap around
    ev = structured([-1, 64, 3, 0], [0, 0, 48, -5], [1, 1, 0, 0])
    assert np.all(render_events(ev, 64, 48) == np.array(P.background, np.uint8))
    with pytest.raises(ValueError):
        render_events(ev, 0, 48)


def test_a_custom_palette_and_side_by_side():
    pal = Palette(background=(0, 0, 0), on=(1, 2, 3), off=(4, 5, 6), both=(7, 8, 9))
    img = render_events(structured([0, 1], [0, 0], [1, 0]), 2, 1, pal)
    assert img.tolist() == [[[1, 2, 3], [4, 5, 6]]]
    both = side_by_side(img, img, gap=3)
    assert both.shape == (1, 7, 3) and both[0, 2:5].tolist() == [[0, 0, 0]] * 3
    with pytest.raises(ValueError):
        side_by_side(img, np.zeros((2, 2, 3), np.uint8))


def test_large_windows_are_vectorised():
    import time

    rng = np.random.default_rng(0)
    n = 1_000_000
    ev = structured(rng.integers(0, 1280, n), rng.integers(0, 720, n), rng.integers(0, 2, n))
    render_events(ev, 1280, 720)
    start = time.perf_counter()
    render_events(ev, 1280, 720)
    assert time.perf_counter() - start < 1.0  # a Python loop per event takes seconds


def state(**kw):
    base = dict(window=None, received_at=None, version=0, windows=0, events=0, lost=0,
                sessions=0, windows_per_s=0.0, events_per_s=0.0, bad_messages=0,
                last_error=None, started_at=0.0)
    return ReceiverState(**{**base, **kw})


def received(seq=3, width=64, height=48, n=2):
    header = WindowHeader(session="ab" * 8, seq=seq, t_start=0, t_end=50_000, width=width,
                          height=height, events=n,
                          model={"kind": "light_anon", "name": "light50", "sha256": "1234" * 4},
                          dropped={"anonymization": 1, "queue": 0, "burst_events": 0})
    return ReceivedWindow(header, structured([0] * n, [0] * n, [1] * n), lost=0)


def test_overlay_text_says_what_it_shows():
    text = overlay_text(state(), 5.0, "tcp://127.0.0.1:5555")
    assert text.startswith(f"{WAITING} on tcp://127.0.0.1:5555")
    fresh = state(window=received(), received_at=10.0, version=1, windows=20, events=40,
                  lost=2, sessions=1, windows_per_s=20.0, events_per_s=40_000.0)
    text = overlay_text(fresh, 10.005, "ipc:///x")
    for part in ("20.0 windows/s", "40.0 k events/s", "age 5 ms since receipt",
                 "no send time", "window 50 ms", "2 lost here (seq gaps)",
                 "service: 1 anonymization", 'light_anon "light50" (sha 12341234)',
                 "sensor 64x48", "seq 3"):
        assert part in text, (part, text)
    assert WAITING not in text and text.count("\n") == 2
    stale = overlay_text(fresh, 13.5, "ipc:///x", stale_s=2.0)
    assert f"{WAITING}: nothing for 3.5 s" in stale and "sensor 64x48" in stale


def test_rates_over_the_last_second():
    arrivals = [(8.9, 100), (9.5, 10), (9.8, 20), (10.0, 30)]
    assert rates(arrivals, 10.0, started_at=0.0) == (3.0, 60.0)
    # in the first half second the rate is over the time since the start
    assert rates([(0.1, 5), (0.4, 5)], 0.5, started_at=0.0) == (4.0, 20.0)


def test_the_model_label_names_the_filters_when_no_net_runs():
    from viewer.overlay import model_label

    filters_only = {"kind": "filters_only", "name": "none", "sha256": None,
                    "filters": {"spec": "warp+refractory+jitter", "tiles": 8.0}}
    assert model_label(filters_only) == "filters warp+refractory+jitter"
    assert model_label({"kind": "filters_only", "filters": "junk"}) == "filters ?"
    assert model_label({"kind": "light_anon", "name": "net", "sha256": "1a2b3c4d5e"}) == \
        'light_anon "net" (sha 1a2b3c4d)'
