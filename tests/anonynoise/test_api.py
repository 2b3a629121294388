"""The public Python API: anonynoise.load, Anonymizer.__call__ / .stream, the tonic transform
and the dv-processing interop, on the shipped model."""

import pickle

import numpy as np
import pytest

import anonynoise
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import TONIC_DTYPE, EventBatch, concatenate, to_structured
from anonynoise.examples import clustered_stream

W, H = 128, 96
SEED = 11


@pytest.fixture(scope="module")
def events():
    # 0.4 s of 16 moving blobs: 8 windows of the shipped model's 50 ms
    return clustered_stream(W, H, duration_s=0.4, rate=400_000, seed=3)


@pytest.fixture(scope="module")
def shipped():
    return anonynoise.load(device="cpu")


def seeded():
    return anonynoise.load(device="cpu", seed=SEED)


def sorted_in_time(t) -> bool:
    return bool(np.all(np.diff(t) >= 0))


def test_load_gives_the_filters_alone_and_the_shipped_net_one_word_away(shipped):
    """The default is the privacy filters alone, those the shipped net was trained behind
    (issue 38: the net adds no measured privacy to them); load("net") is the net."""
    from anonynoise.checkpoint import load_checkpoint
    from anonynoise.filters import SHIPPED_FILTERS
    from anonynoise.loading import default_model

    assert shipped.net is None and shipped.filters == SHIPPED_FILTERS
    assert shipped.window_us == 50_000 and shipped.identity["kind"] == "filters_only"
    net = anonynoise.load("net", device="cpu")
    recorded = load_checkpoint(default_model()).training["filters"]
    assert net.net is not None and net.filters.spec == recorded["spec"]
    assert net.filters == SHIPPED_FILTERS
    assert net.window_us == net.representation.window_us == 50_000
    assert net.identity["sha256"] and net.identity["weakened"] == []
    assert anonynoise.load("net", device="cpu", filters="none", allow_weak=True).filters is None


def test_the_filters_alone_are_an_anonymizer_without_a_net():
    alone = anonynoise.load("none", filters="warp+jitter", window_us=20_000)
    assert alone.net is None and alone.window_us == 20_000
    assert alone.identity["kind"] == "filters_only"
    assert anonynoise.load("none").filters.spec == "warp+refractory+jitter"  # "model": shipped
    # a filter that keeps every event at its pixel would leave the events as they came
    for filters in ("none", "slots"):
        with pytest.raises(AnonyNoiseError, match="need filters with warp or jitter") as e:
            anonynoise.load("none", filters=filters)
        assert e.value.parameter == "filters"


def test_a_recording_in_gives_the_same_kind_out_sorted_with_absolute_time(shipped, events):
    out = shipped(events)
    assert isinstance(out, EventBatch) and out.sensor_size == (W, H) and len(out) > 0
    assert sorted_in_time(out.t)
    # absolute timestamps: inside the windows [first event, first event + 8 x 50 ms)
    assert events.t[0] <= out.t[0] and out.t[-1] < events.t[0] + 8 * 50_000
    array = to_structured(events)
    out_array = shipped(array, sensor_size=(W, H, 2))  # tonic's sensor size works too
    assert out_array.dtype == TONIC_DTYPE and sorted_in_time(out_array["t"])
    assert out_array["x"].max() < W and out_array["y"].max() < H
    relative = shipped(array, sensor_size=(W, H), absolute_time=False)
    assert 0 <= relative["t"].min() and relative["t"].max() < 8 * 50_000


def test_dv_and_faery_field_names_are_taken(shipped, events):
    for names in (("timestamp", "x", "y", "polarity"), ("t", "x", "y", "on")):
        array = np.zeros(len(events), [(names[0], "<i8"), ("x", "<i2"), ("y", "<i2"),
                                       (names[3], "u1")])
        array[names[0]], array["x"], array["y"], array[names[3]] = (events.t, events.x,
                                                                   events.y, events.p)
        out = shipped(array, sensor_size=(W, H))
        assert out.dtype == TONIC_DTYPE and len(out) > 0


def test_how_the_stream_is_cut_into_batches_does_not_change_the_output(events):
    whole = seeded()(events)
    for size in (1_000, 37_777):
        batches = [events[i:i + size] for i in range(0, len(events), size)]
        windows = list(seeded().stream(batches))
        assert len(windows) == 8  # one per 50 ms window, refused ones aside (none here)
        got = concatenate(windows)
        assert np.array_equal(got.t, whole.t) and np.array_equal(got.x, whole.x)
        assert np.array_equal(got.p, whole.p)


def test_a_refused_window_is_dropped_and_counted_never_returned_raw(events, monkeypatch):
    from anonynoise.anonymizer import AnonymizationRefused

    anonymizer = seeded()
    clean = seeded()(events)
    original, calls = anonymizer.anonymize_tensor, []

    def fail_the_third(counts):
        calls.append(1)
        if len(calls) == 3:
            anonymizer.refused += 1
            raise AnonymizationRefused("injected")
        return original(counts)

    monkeypatch.setattr(anonymizer, "anonymize_tensor", fail_the_third)
    out = anonymizer(events)
    third = (events.t[0] + 100_000, events.t[0] + 150_000)
    assert anonymizer.refused == 1
    assert not np.any((out.t >= third[0]) & (out.t < third[1]))
    before, after = out.t < third[0], out.t >= third[1]
    assert np.array_equal(out.t[before], clean.t[clean.t < third[0]])  # the windows before
    assert before.sum() + after.sum() == len(out) and after.sum() > 0  # and those after


def test_bad_input_is_one_clear_error(shipped, events):
    array = to_structured(events)
    with pytest.raises(AnonyNoiseError, match="sensor size is unknown") as e:
        shipped(array)
    assert e.value.parameter == "sensor_size"
    with pytest.raises(AnonyNoiseError, match="invalid events"):
        shipped(array[::-1], sensor_size=(W, H))  # not sorted by time
    with pytest.raises(AnonyNoiseError, match="invalid events"):
        shipped(array, sensor_size=(W // 2, H))  # x beyond the sensor
    with pytest.raises(AnonyNoiseError, match="expected events as"):
        shipped([1, 2, 3], sensor_size=(W, H))
    later, earlier = array[len(array) // 2:], array[:len(array) // 2]
    with pytest.raises(AnonyNoiseError, match="invalid events"):
        list(shipped.stream([later, earlier], sensor_size=(W, H)))  # back in time
    with pytest.raises(AnonyNoiseError, match="before the previous batch"):
        list(shipped.stream([events[100:], events[:100]]))
    empty = shipped(array[:0], sensor_size=(W, H))
    assert empty.dtype == TONIC_DTYPE and len(empty) == 0


def test_tonic_compose_anonymize_then_to_frame(events):
    tonic = pytest.importorskip("tonic")
    from anonynoise.transforms import Anonymize

    sensor = (W, H, 2)
    anonymize = Anonymize(sensor_size=sensor)
    transform = tonic.transforms.Compose([anonymize,
                                          tonic.transforms.ToFrame(sensor, n_time_bins=5)])
    array = to_structured(events)
    frames = transform(array)
    raw = tonic.transforms.ToFrame(sensor, n_time_bins=5)(array)
    assert frames.shape == raw.shape == (5, 2, H, W)
    # every anonymized event lands in a frame; the noise changes the picture
    assert 0 < frames.sum() <= 2.9 * len(array) and not np.array_equal(frames, raw)
    assert anonymize.anonymizer.refused == 0
    # a DataLoader worker gets the transform without the loaded net, and loads its own
    copy = pickle.loads(pickle.dumps(anonymize))
    assert copy._anonymizer is None and copy.sensor_size == sensor


def test_a_dv_event_store_round_trip(events):
    dv = pytest.importorskip("dv_processing")
    import anonynoise.dv
    from anonynoise.events import from_dv
    from anonynoise.io import to_event_store

    store = to_event_store(events)
    out = anonynoise.dv.anonymize_store(seeded(), store, (W, H))
    assert isinstance(out, dv.EventStore) and out.size() > 0
    expected = seeded()(events)
    back = from_dv(out, (W, H))
    assert np.array_equal(back.t, expected.t) and np.array_equal(back.x, expected.x)
    assert np.array_equal(back.y, expected.y) and np.array_equal(back.p, expected.p)
    # the filter idiom, fed in camera-sized pieces, gives the same events
    f = anonynoise.dv.AnonymizeFilter(seeded(), (W, H))
    pieces = []
    for i in range(0, len(events), 9_000):
        f.accept(to_event_store(events[i:i + 9_000]))
        pieces.append(from_dv(f.generateEvents(), (W, H)))
    f.flush()
    pieces.append(from_dv(f.generateEvents(), (W, H)))
    streamed = concatenate(pieces)
    assert np.array_equal(streamed.t, expected.t) and np.array_equal(streamed.x, expected.x)
    assert f.getNumIncomingEvents() == len(events) and f.getNumOutgoingEvents() == len(expected)
    assert f.generateEvents().size() == 0  # nothing twice


def test_a_real_recording_through_the_api(real_file):
    face = anonynoise.read_events(real_file("face_dvxplorer.aedat4"))
    anonymizer = anonynoise.load(device="cpu")
    out = anonymizer(face)
    assert len(face) == 111_954 and out.sensor_size == (320, 240)
    assert sorted_in_time(out.t) and anonymizer.refused == 0 and anonymizer.windows == 12
