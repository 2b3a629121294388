"""The canonical event batch, its validation, and conversion from dv-processing, tonic and npy.

Inside the product every event batch is four contiguous arrays, t int64 µs, x int16, y int16,
p uint8 (0 = OFF, 1 = ON), plus the sensor size. Everything from outside (a camera, a file, a
tonic dataset) is converted and validated once, at the edge, so each numba kernel compiles for
one dtype only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np

from anonynoise.errors import AnonyNoiseError

T_DTYPE = np.dtype(np.int64)
XY_DTYPE = np.dtype(np.int16)
P_DTYPE = np.dtype(np.uint8)

# tonic's event dtype (tonic.io.events_struct); its transforms look fields up by name.
TONIC_DTYPE = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
# A packed record of our canonical fields, 13 bytes an event: the wire and .npy format.
PACKED_DTYPE = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])

DVS_GESTURE_SENSOR = (128, 128)
# No sensor can be wider or taller than this, whoever says so: x and y are int16 (32,767 at
# most), and the wire protocol's consumers bound their pictures by it (stream/protocol.py).
MAX_SENSOR_SIDE = 16384
# The largest sensor a file header or a peer may declare without the caller saying so: above
# every event sensor made (the largest are 1280x720 and 1280x960). A damaged header's size
# would otherwise drive allocation (% Width 32768 took 7.5 GB). A caller who passes the size
# explicitly may go up to MAX_SENSOR_SIDE.
MAX_SENSOR_SIZE = (4096, 4096)


@dataclass(frozen=True, eq=False)
class EventBatch:
    """Events of one sensor: parallel arrays t (µs), x, y, p and the sensor width and height.

    Always valid: the constructor checks dtypes, coordinates, polarities and time order (the
    numba kernels rely on it and do no bounds checks). `make_events` and the `from_*`
    converters cast other dtypes first; `trusted` skips the checks for code whose output is
    valid by construction. The fields are read-only views, so a batch cannot be made invalid
    through itself after the check (copy an array to change it).
    """

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        n = self.t.shape[0] if isinstance(self.t, np.ndarray) and self.t.ndim == 1 else -1
        for name, dtype in (("t", T_DTYPE), ("x", XY_DTYPE), ("y", XY_DTYPE), ("p", P_DTYPE)):
            a = getattr(self, name)
            if not isinstance(a, np.ndarray) or a.dtype != dtype or a.ndim != 1:
                raise AnonyNoiseError(f"invalid events: field {name} must be a 1-D {dtype} "
                                      "array (make_events converts other types)")
            if a.shape[0] != n:
                raise AnonyNoiseError("invalid events: t, x, y and p must have the same length")
            if not a.flags.c_contiguous:
                raise AnonyNoiseError(f"invalid events: field {name} must be contiguous")
        _check_sensor_size(self.width, self.height)
        for name in ("t", "x", "y", "p"):
            object.__setattr__(self, name, _read_only(getattr(self, name)))
        validate_events(self)

    @classmethod
    def trusted(cls, t: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                width: int, height: int) -> "EventBatch":
        """Skip validation, for kernels whose output is valid by construction and for slices
        of a valid batch. Anything else must go through the constructor."""
        self = object.__new__(cls)
        for name, value in zip(("t", "x", "y", "p", "width", "height"),
                               (_read_only(t), _read_only(x), _read_only(y), _read_only(p),
                                int(width), int(height))):
            object.__setattr__(self, name, value)
        return self

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def sensor_size(self) -> tuple[int, int]:
        """(width, height), the order dv-processing and tonic use."""
        return (self.width, self.height)

    @property
    def duration_us(self) -> int:
        """Time from the first to the last event, 0 for fewer than two events."""
        return int(self.t[-1] - self.t[0]) if len(self) > 1 else 0

    def slice_time(self, t_start: int, t_end: int) -> "EventBatch":
        """The events with t_start <= t < t_end, as views (no copy)."""
        i0, i1 = np.searchsorted(self.t, [t_start, t_end], side="left")
        return self[i0:i1]

    def __getitem__(self, index: slice) -> "EventBatch":
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("EventBatch supports contiguous slices only: batch[i:j]")
        return EventBatch.trusted(self.t[index], self.x[index], self.y[index], self.p[index],
                                  self.width, self.height)

    def __repr__(self) -> str:
        span = f", t=[{self.t[0]}, {self.t[-1]}]" if len(self) else ""
        return f"EventBatch({len(self)} events, {self.width}x{self.height}{span})"


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view (the kernels then also compile for read-only arrays only)."""
    if not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def _check_sensor_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise AnonyNoiseError(f"sensor {name} must be an integer, got {v!r}")
        if not 0 < v <= MAX_SENSOR_SIDE:
            raise AnonyNoiseError(f"sensor {name} must be in 1..{MAX_SENSOR_SIDE}, got {v}")


def check_sensor_limit(width: int, height: int) -> None:
    """Refuse a declared sensor size (from a file header, a peer, the events' extent) larger
    than MAX_SENSOR_SIZE: such a size is a damaged or hostile header, not a sensor."""
    _check_sensor_size(width, height)
    if width > MAX_SENSOR_SIZE[0] or height > MAX_SENSOR_SIZE[1]:
        raise AnonyNoiseError(f"sensor size {width}x{height} is larger than any event sensor "
                              f"(at most {MAX_SENSOR_SIZE[0]}x{MAX_SENSOR_SIZE[1]} unless the "
                              "caller gives the size)")


# |t| at most 2**62 µs (146,000 years): window arithmetic (t + window, t - origin) on int64
# never overflows. Beyond it a timestamp is a damaged file, not a time.
T_LIMIT_US = 1 << 62


@numba.njit(cache=True, nogil=True)
def _first_invalid(t, x, y, p, width, height, t_prev):
    """Index and kind of the first invalid event, or (-1, 0). Kinds: 1 xy, 2 p, 3 t order,
    4 t out of range."""
    for i in range(t.shape[0]):
        if x[i] < 0 or x[i] >= width or y[i] < 0 or y[i] >= height:
            return i, 1
        if p[i] > 1:
            return i, 2
        if t[i] < t_prev:
            return i, 3
        if t[i] > T_LIMIT_US or t[i] < -T_LIMIT_US:
            return i, 4
        t_prev = t[i]
    return -1, 0


def validate_events(events: EventBatch) -> None:
    """Raise AnonyNoiseError at the first event outside the sensor, with a polarity other than
    0 or 1, or earlier than its predecessor."""
    lo = np.iinfo(np.int64).min
    i, kind = _first_invalid(events.t, events.x, events.y, events.p,
                             events.width, events.height, lo)
    if i < 0:
        return
    w, h = events.width, events.height
    if kind == 1:
        raise AnonyNoiseError(f"invalid events: event {i} at (x={events.x[i]}, y={events.y[i]}) "
                              f"lies outside the {w}x{h} sensor")
    if kind == 2:
        raise AnonyNoiseError(f"invalid events: event {i} has polarity {events.p[i]}; "
                              "polarities must be 0 (OFF) or 1 (ON)")
    if kind == 4:
        raise AnonyNoiseError(f"invalid events: event {i} has timestamp {events.t[i]} µs, "
                              f"beyond ±2**62 µs (a damaged time word, not a time)")
    before = events.t[i - 1] if i > 0 else lo
    raise AnonyNoiseError(f"invalid events: timestamps decrease at event {i} "
                          f"({before} -> {events.t[i]} µs); events must be sorted by time")


def _as_int(name: str, a, dtype: np.dtype) -> np.ndarray:
    """Cast to an integer dtype, refusing values that would wrap or lose a fraction."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise AnonyNoiseError(f"invalid events: field {name} must be one-dimensional, "
                              f"got shape {a.shape}")
    if a.dtype == dtype:
        return np.ascontiguousarray(a)
    if a.dtype.kind == "b":
        return a.astype(dtype)
    if a.dtype.kind not in "iuf":
        raise AnonyNoiseError(f"invalid events: field {name} has dtype {a.dtype}, "
                              "expected numbers")
    if a.size:
        if a.dtype.kind == "f":
            if not np.all(np.isfinite(a)):
                raise AnonyNoiseError(f"invalid events: field {name} has non-finite values")
            if np.any(a != np.trunc(a)):
                raise AnonyNoiseError(f"invalid events: field {name} has non-integer values")
        info = np.iinfo(dtype)
        lo, hi = a.min(), a.max()
        if lo < info.min or hi > info.max:
            bad = lo if lo < info.min else hi
            raise AnonyNoiseError(f"invalid events: field {name} value {bad} does not fit "
                                  f"{dtype}")
    return a.astype(dtype)


def make_events(t, x, y, p, width: int, height: int, *, t_prev: int | None = None) -> EventBatch:
    """Build a validated EventBatch from any array-likes (p may be bool or 0/1)."""
    if not all(np.ndim(a) == 1 for a in (t, x, y, p)):
        raise AnonyNoiseError("invalid events: t, x, y and p must be one-dimensional")
    lengths = {len(t), len(x), len(y), len(p)}
    if len(lengths) != 1:
        raise AnonyNoiseError(f"invalid events: t, x, y and p have different lengths "
                              f"{sorted(lengths)}")
    _check_sensor_size(width, height)
    p = np.asarray(p)
    if p.dtype.kind in "if" and p.size and p.min() == -1 and p.max() <= 1:
        p = p > 0  # the -1/+1 polarity convention (OFF = -1)
    events = EventBatch(_as_int("t", t, T_DTYPE), _as_int("x", x, XY_DTYPE),
                        _as_int("y", y, XY_DTYPE), _as_int("p", p, P_DTYPE),
                        int(width), int(height))
    if t_prev is not None and len(events) and events.t[0] < t_prev:
        raise AnonyNoiseError(f"invalid events: timestamps decrease between batches "
                              f"({t_prev} -> {events.t[0]} µs); events must be sorted by time")
    return events


def empty_events(width: int, height: int) -> EventBatch:
    """A batch with no events."""
    _check_sensor_size(width, height)
    return EventBatch.trusted(np.empty(0, T_DTYPE), np.empty(0, XY_DTYPE),
                              np.empty(0, XY_DTYPE), np.empty(0, P_DTYPE), width, height)


def concatenate(batches: Sequence[EventBatch]) -> EventBatch:
    """Join batches of one sensor, in order (validated across the joins)."""
    if not batches:
        raise AnonyNoiseError("concatenate needs at least one batch")
    sizes = {b.sensor_size for b in batches}
    if len(sizes) != 1:
        raise AnonyNoiseError(f"cannot join batches of different sensors {sorted(sizes)}")
    w, h = batches[0].sensor_size
    return EventBatch(*(np.concatenate([getattr(b, f) for b in batches]) for f in "txyp"), w, h)


def _sensor_wh(sensor_size: Sequence[int]) -> tuple[int, int]:
    """Accept (W, H) or tonic's (W, H, P)."""
    if sensor_size is None or len(sensor_size) not in (2, 3):
        raise AnonyNoiseError(f"sensor size must be (width, height) or (width, height, "
                              f"polarities), got {sensor_size!r}")
    if len(sensor_size) == 3 and sensor_size[2] not in (1, 2):
        raise AnonyNoiseError(f"sensor size: polarities must be 1 or 2, got {sensor_size[2]}")
    return int(sensor_size[0]), int(sensor_size[1])


# Field names by role; dv-processing's EventStore.numpy() uses timestamp/polarity.
_FIELD_NAMES = {"t": ("t", "timestamp", "ts"), "x": ("x",), "y": ("y",),
                "p": ("p", "polarity", "pol", "on")}


def from_structured(array: np.ndarray, sensor_size: Sequence[int],
                    *, t_prev: int | None = None) -> EventBatch:
    """Convert a structured event array (tonic's, dv's .numpy(), expelliarmus', ours).

    Fields are looked up by name in any order; t must be in microseconds.
    """
    names = getattr(getattr(array, "dtype", None), "names", None)
    if not names:
        raise AnonyNoiseError("invalid events: expected a structured array with fields "
                              "x, y, t, p")
    fields = {}
    for role, candidates in _FIELD_NAMES.items():
        found = next((n for n in candidates if n in names), None)
        if found is None:
            raise AnonyNoiseError(f"invalid events: structured array has no field {role!r} "
                                  f"(fields: {', '.join(names)})")
        fields[role] = array[found]
    w, h = _sensor_wh(sensor_size)
    return make_events(fields["t"], fields["x"], fields["y"], fields["p"], w, h, t_prev=t_prev)


def to_structured(events: EventBatch, dtype: np.dtype = TONIC_DTYPE) -> np.ndarray:
    """A structured copy with fields x, y, t, p (tonic's dtype by default)."""
    out = np.empty(len(events), dtype=dtype)
    for f in "txy":
        out[f] = getattr(events, f)
    out["p"] = events.p.astype(out.dtype["p"]) if out.dtype["p"] != P_DTYPE else events.p
    return out


@numba.njit(cache=True, nogil=True)
def _pack(t, x, y, p, t_shift, out):
    for i in range(t.shape[0]):
        record = out[i]
        record.t = t[i] + t_shift
        record.x = x[i]
        record.y = y[i]
        record.p = p[i]
    return out


def to_packed(events: EventBatch, t_shift: int = 0) -> np.ndarray:
    """The batch as PACKED_DTYPE records (the wire format), timestamps moved by t_shift µs:
    one pass (numpy's four field copies and a shifted copy of t took three times as long)."""
    out = np.empty(len(events), PACKED_DTYPE)
    return _pack(events.t, events.x, events.y, events.p, np.int64(t_shift), out)


def from_dv(store, sensor_size: Sequence[int], *, t_prev: int | None = None) -> EventBatch:
    """Convert a dv-processing EventStore (one batch; no whole-file concatenation)."""
    w, h = _sensor_wh(sensor_size)
    if store is None or store.size() == 0:
        return empty_events(w, h)
    xy = store.coordinates()  # (N, 2), Fortran order: each column is contiguous
    return make_events(store.timestamps(), xy[:, 0], xy[:, 1], store.polarities(), w, h,
                       t_prev=t_prev)


def from_dvsgesture_array(array: np.ndarray,
                          sensor_size: Sequence[int] = DVS_GESTURE_SENSOR) -> EventBatch:
    """Convert tonic's DVS-Gesture array: N x 4 float, columns x, y, p, t in ms (µs fraction).

    The files hold no sensor size: DVS-Gesture's is 128x128; our synthetic benchmark records
    its own in its manifest.

    The times are rounded to the nearest µs; tonic itself truncates after `* 1000`, which turns
    a value stored as 1234.567 ms into 1234566 µs whenever the float product falls just below.
    """
    a = np.asarray(array)
    if a.ndim != 2 or a.shape[1] != 4 or a.dtype.kind not in "iuf":
        raise AnonyNoiseError(f"invalid DVS-Gesture events: expected an N x 4 numeric array "
                              f"(x, y, p, t in ms), got shape {a.shape} of {a.dtype}")
    t_ms = a[:, 3].astype(np.float64)
    if not np.all(np.isfinite(t_ms)):
        raise AnonyNoiseError("invalid DVS-Gesture events: non-finite timestamps")
    t_us = np.rint(t_ms * 1000.0)
    w, h = _sensor_wh(sensor_size)
    return make_events(t_us, a[:, 0], a[:, 1], a[:, 2], w, h)


def to_dvsgesture_array(events: EventBatch) -> np.ndarray:
    """The inverse of from_dvsgesture_array: float64 N x 4, columns x, y, p, t in ms."""
    out = np.empty((len(events), 4), dtype=np.float64)
    out[:, 0], out[:, 1], out[:, 2] = events.x, events.y, events.p
    out[:, 3] = events.t / 1000.0
    return out
