import numpy as np
import pytest

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import (
    PACKED_DTYPE,
    TONIC_DTYPE,
    EventBatch,
    concatenate,
    empty_events,
    from_dv,
    from_dvsgesture_array,
    from_structured,
    make_events,
    to_dvsgesture_array,
    to_packed,
    to_structured,
)


def test_make_events_casts_to_the_canonical_dtypes():
    ev = make_events([0, 1, 1, 7], np.array([0, 3, 2, 3], np.int64), [1, 1, 0, 2],
                     [True, False, True, True], 4, 3)
    assert (ev.t.dtype, ev.x.dtype, ev.y.dtype, ev.p.dtype) == (np.int64, np.int16, np.int16,
                                                                np.uint8)
    assert ev.sensor_size == (4, 3) and len(ev) == 4 and ev.duration_us == 7
    assert ev.p.tolist() == [1, 0, 1, 1]


@pytest.mark.parametrize("x, y, message", [
    ([0, 4], [0, 0], "event 1 at (x=4, y=0) lies outside the 4x3 sensor"),
    ([0, 0], [0, 3], "event 1 at (x=0, y=3) lies outside the 4x3 sensor"),
    ([-1, 0], [0, 0], "event 0 at (x=-1, y=0) lies outside"),
])
def test_events_outside_the_sensor_are_refused(x, y, message):
    with pytest.raises(AnonyNoiseError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_events([0, 1], x, y, [0, 1], 4, 3)


def test_decreasing_timestamps_are_refused_with_the_index():
    with pytest.raises(AnonyNoiseError, match=r"timestamps decrease at event 2 \(5 -> 4 µs\)"):
        make_events([1, 5, 4], [0, 0, 0], [0, 0, 0], [0, 0, 0], 4, 3)


def test_order_is_checked_across_batches():
    make_events([5, 6], [0, 0], [0, 0], [0, 0], 4, 3, t_prev=5)
    with pytest.raises(AnonyNoiseError, match="between batches"):
        make_events([4, 6], [0, 0], [0, 0], [0, 0], 4, 3, t_prev=5)


@pytest.mark.parametrize("field, values, message", [
    ("p", [0, 2], "polarity 2"),
    ("x", [0.5, 1.0], "non-integer"),
    ("t", [0, np.nan], "non-finite"),
    ("x", [0, 70000], "does not fit int16"),
    ("x", ["a", "b"], "expected numbers"),
])
def test_bad_field_values_raise_the_project_exception(field, values, message):
    fields = {"t": [0, 1], "x": [0, 1], "y": [0, 1], "p": [0, 1]}
    fields[field] = values
    with pytest.raises(AnonyNoiseError, match=message):
        make_events(fields["t"], fields["x"], fields["y"], fields["p"], 4, 3)


def test_minus_one_plus_one_polarity_convention_is_accepted():
    ev = make_events([0, 1], [0, 1], [0, 1], np.array([-1, 1], np.int8), 4, 3)
    assert ev.p.tolist() == [0, 1]


def test_length_mismatch_and_bad_sensor_size():
    with pytest.raises(AnonyNoiseError, match="different lengths"):
        make_events([0, 1], [0], [0, 1], [0, 1], 4, 3)
    with pytest.raises(AnonyNoiseError, match="sensor width"):
        make_events([0], [0], [0], [0], 0, 3)


def test_constructor_validates_and_trusted_does_not():
    t, x, y, p = (np.array([0], np.int64), np.array([9], np.int16), np.array([0], np.int16),
                  np.array([0], np.uint8))
    with pytest.raises(AnonyNoiseError, match="outside"):
        EventBatch(t, x, y, p, 4, 3)
    assert len(EventBatch.trusted(t, x, y, p, 4, 3)) == 1
    with pytest.raises(AnonyNoiseError, match="int16"):
        EventBatch(t, x.astype(np.int32), y, p, 4, 3)


def test_slice_time_is_half_open():
    ev = make_events([0, 10, 10, 20, 30], [0] * 5, [0] * 5, [0] * 5, 4, 3)
    assert ev.slice_time(10, 30).t.tolist() == [10, 10, 20]
    assert len(ev.slice_time(31, 40)) == 0


def test_structured_arrays_in_any_field_order_round_trip():
    ev = make_events([3, 4, 9], [1, 2, 3], [0, 1, 2], [1, 0, 1], 4, 3)
    for dtype in (TONIC_DTYPE, PACKED_DTYPE,
                  np.dtype([("p", "?"), ("t", "<i8"), ("y", "<u2"), ("x", "<u2")])):
        back = from_structured(to_structured(ev, dtype), (4, 3, 2))
        for f in "txyp":
            assert np.array_equal(getattr(back, f), getattr(ev, f))


def test_packed_records_with_a_time_shift():
    ev = make_events([3, 4, 9], [1, 2, 3], [0, 1, 2], [1, 0, 1], 4, 3)
    packed = to_packed(ev, -3)
    assert packed.dtype == PACKED_DTYPE
    assert packed["t"].tolist() == [0, 1, 6] and packed["x"].tolist() == [1, 2, 3]
    assert packed["y"].tolist() == [0, 1, 2] and packed["p"].tolist() == [1, 0, 1]
    assert to_packed(ev).tobytes() == to_structured(ev, PACKED_DTYPE).tobytes()
    assert len(to_packed(empty_events(4, 3))) == 0


def test_dv_style_field_names_are_understood():
    arr = np.zeros(2, dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"),
                             ("polarity", "i1")])
    arr["timestamp"] = [1, 2]
    arr["polarity"] = [1, 0]
    ev = from_structured(arr, (4, 3))
    assert ev.t.tolist() == [1, 2] and ev.p.tolist() == [1, 0]


def test_structured_array_without_a_field_is_refused():
    arr = np.zeros(2, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2")])
    with pytest.raises(AnonyNoiseError, match="no field 'p'"):
        from_structured(arr, (4, 3))
    with pytest.raises(AnonyNoiseError, match="structured array"):
        from_structured(np.zeros((2, 4)), (4, 3))


def test_dv_event_store_conversion():
    dv = pytest.importorskip("dv_processing")
    store = dv.EventStore()
    for t, x, y, p in [(10, 1, 2, True), (12, 3, 0, False), (12, 0, 1, True)]:
        store.push_back(t, x, y, p)
    ev = from_dv(store, (4, 3))
    assert ev.t.tolist() == [10, 12, 12]
    assert ev.x.tolist() == [1, 3, 0] and ev.y.tolist() == [2, 0, 1]
    assert ev.p.tolist() == [1, 0, 1]
    assert len(from_dv(dv.EventStore(), (4, 3))) == 0


def test_dvsgesture_array_ms_with_us_fraction():
    # x, y, p, t[ms]; 1234.567 * 1000 is 1234566.9999999998 in float64: rounded, not truncated
    arr = np.array([[1, 2, 0, 1234.567], [127, 127, 1, 1234.568], [0, 5, 1, 2000.0]])
    ev = from_dvsgesture_array(arr)
    assert ev.sensor_size == (128, 128)
    assert ev.t.tolist() == [1234567, 1234568, 2000000]
    assert ev.x.tolist() == [1, 127, 0] and ev.p.tolist() == [0, 1, 1]
    assert np.allclose(to_dvsgesture_array(ev), arr)
    with pytest.raises(AnonyNoiseError, match="N x 4"):
        from_dvsgesture_array(np.zeros((3, 3)))


def test_concatenate_checks_order_and_sensor():
    a = make_events([0, 1], [0, 1], [0, 0], [0, 1], 4, 3)
    b = make_events([1, 2], [2, 3], [0, 0], [0, 1], 4, 3)
    assert concatenate([a, b]).t.tolist() == [0, 1, 1, 2]
    with pytest.raises(AnonyNoiseError, match="decrease"):
        concatenate([b, a])
    with pytest.raises(AnonyNoiseError, match="different sensors"):
        concatenate([a, empty_events(5, 3)])
