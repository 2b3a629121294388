"""Dense tensors from events and events from dense tensors (numba kernels).

Forward: a window [t_start, t_end) of events becomes a count tensor (bins, 2, H, W) float32
whose channel order, after reshape(bins * 2, H, W), is bin0-OFF, bin0-ON, bin1-OFF, ..., as the
reference (tonic's ToFrame) has it; or a bilinear voxel grid (bins, H, W).

Inverse: after anonymization the tensor is sampled back into events. Negative values become
zero, counts are rounded stochastically, each event gets a timestamp drawn uniformly inside its
time bin and the polarity of its channel, and the output is sorted by time. Random draws come
from a xoshiro256** generator seeded from OS entropy for every call, so the noise cannot be
predicted; a seed exists for tests only.

Bin k of a window covers [t_start + ceil(k D / bins), t_start + ceil((k + 1) D / bins)) with
D = t_end - t_start, in both directions, so integer counts round-trip exactly.

The privacy grid: with `cell` > 1 both directions work on cells of cell x cell pixels (the
tensor is (bins, 2, ceil(H / cell), ceil(W / cell))) and each sampled event lands on a uniform
random pixel of its cell, so a window's cost follows its events and the grid, not the sensor's
pixel count. The privacy filters' jitter already moves every event within its tile, so a grid
no finer than the tile loses nothing the filters kept (anonynoise.anonymizer picks the cell).
With cell 1 both directions are the full-resolution ones, draw for draw.

CountBuffer keeps one dense full-resolution tensor across windows and clears only the cells the
previous window touched, where they are few: a sparse window of a large sensor (10k events of
a 1280x720 one) then costs its events, not a 46 MB clear.
"""

from __future__ import annotations

import numba
import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import EventBatch
from anonynoise.rng import rng_state, uniform

DEFAULT_MAX_EVENTS = 100_000_000  # an anonymized window asking for more is refused
# Clearing one scattered cell costs about as much as clearing this many contiguous ones
# (a memset runs at cache speed; a scattered write misses): CountBuffer clears the whole
# buffer instead once the last window touched more than 1/SCATTER_COST of it. Measured here:
# 20k scattered cells cost what a 3 M cell memset does.
SCATTER_COST = 128


def bin_edges(t_start: int, t_end: int, bins: int) -> np.ndarray:
    """The bins + 1 integer edges of a window [t_start, t_end), each bin at least 1 µs long."""
    t_start, t_end, bins = int(t_start), int(t_end), int(bins)
    if bins < 1:
        raise AnonyNoiseError(f"bins must be at least 1, got {bins}")
    span = t_end - t_start
    if span < bins:
        raise AnonyNoiseError(f"window [{t_start}, {t_end}) µs is too short for {bins} bins "
                              "(each bin needs at least 1 µs)")
    # Exact integer ceil(k * span / bins), without float rounding for long absolute times.
    return np.array([t_start + (k * span + bins - 1) // bins for k in range(bins + 1)],
                    dtype=np.int64)


def whole_sample_window(events: EventBatch, bins: int) -> tuple[int, int]:
    """The window tonic's ToFrame(n_time_bins=bins) uses for a whole sample.

    tonic's bins are (t[-1] - t[0]) // bins long from the first event; events after the last
    full bin (the remainder) are dropped.
    """
    if len(events) == 0:
        raise AnonyNoiseError("an empty sample has no time window")
    t0 = int(events.t[0])
    width = (int(events.t[-1]) - t0) // int(bins)
    if width < 1:
        raise AnonyNoiseError(f"sample spans {events.duration_us} µs, too short for {bins} bins")
    return t0, t0 + width * int(bins)


def whole_sample_counts(events: EventBatch, bins: int) -> np.ndarray:
    """tonic's ToFrame(n_time_bins=bins) of a whole sample, (bins, 2, H, W) float32; like
    tonic, a sample that spans fewer time units than bins gives all zeros."""
    if len(events) and int(events.t[-1]) - int(events.t[0]) < int(bins):
        return np.zeros((int(bins), 2, events.height, events.width), np.float32)
    t0, t1 = whole_sample_window(events, bins)
    return events_to_counts(events, t0, t1, bins)


# ---------------------------------------------------------------------------------------------
# events -> tensor


@numba.njit(cache=True, nogil=True)
def _accumulate_counts(t, x, y, p, edges, out):
    """out (bins, 2, H, W) float32 is cleared, then counts events per bin, polarity and pixel.

    No bounds checks: an EventBatch is valid by construction, and the check would cost 40 %.
    """
    bins, _, height, width = out.shape
    plane = height * width
    flat = out.reshape(-1)
    starts = np.searchsorted(t, edges)  # events are sorted: each bin is one contiguous run
    one = np.float32(1.0)
    for b in range(bins):
        base = b * 2 * plane
        # Clearing one bin just before counting into it finds its lines still in cache
        # (about 10 % faster than one clear of the whole tensor first).
        flat[base:base + 2 * plane] = 0.0
        # Slicing first gives LLVM a zero-based loop it schedules much better (about 1.6x).
        xs = x[starts[b]:starts[b + 1]]
        ys = y[starts[b]:starts[b + 1]]
        ps = p[starts[b]:starts[b + 1]]
        for i in range(xs.shape[0]):
            flat[base + ps[i] * plane + ys[i] * width + xs[i]] += one
    return out


@numba.njit(cache=True, nogil=True)
def _accumulate_grid_counts(t, x, y, p, edges, cell, out):
    """out (bins, 2, GH, GW) float32 is cleared, then counts events per bin, polarity and
    cell of cell x cell pixels (the privacy grid)."""
    bins, _, height, width = out.shape
    plane = height * width
    flat = out.reshape(-1)
    flat[:] = 0.0
    starts = np.searchsorted(t, edges)
    one = np.float32(1.0)
    for b in range(bins):
        base = b * 2 * plane
        for i in range(starts[b], starts[b + 1]):
            flat[base + p[i] * plane + (y[i] // cell) * width + x[i] // cell] += one
    return out


@numba.njit(cache=True, nogil=True)
def _recount(t, x, y, p, edges, flat, touched, n_touched, bins, height, width):
    """Clear what the last window counted (its n_touched cells listed in touched, or the
    whole of flat where that is cheaper), then count the events per bin, polarity and pixel
    into flat, listing the cells they touch in touched (grown as needed); returns
    (touched, count)."""
    if n_touched * SCATTER_COST < flat.shape[0]:
        for i in range(n_touched):
            flat[touched[i]] = 0.0
    else:
        flat[:] = 0.0
    plane = height * width
    starts = np.searchsorted(t, edges)
    n = starts[bins] - starts[0]
    if touched.shape[0] < n:
        touched = np.empty(max(n, 2 * touched.shape[0]), np.int64)
    one = np.float32(1.0)
    m = 0
    for b in range(bins):
        base = b * 2 * plane
        xs = x[starts[b]:starts[b + 1]]
        ys = y[starts[b]:starts[b + 1]]
        ps = p[starts[b]:starts[b + 1]]
        for i in range(xs.shape[0]):
            j = base + ps[i] * plane + ys[i] * width + xs[i]
            touched[m + i] = j  # a cell listed twice is cleared twice: cheaper than a test
            flat[j] += one
        m += xs.shape[0]
    return touched, m


@numba.njit(cache=True, nogil=True, fastmath=True)
def _accumulate_voxel(t, x, y, p, t_start, t_end, out):
    """out (bins, H, W) float32 is cleared, then gets each event's +-1 split between the two
    nearest bins (bilinear in time); time is scaled to [0, bins) over the window, as tonic."""
    bins, height, width = out.shape
    plane = height * width
    flat = out.reshape(-1)
    flat[:] = 0.0
    i0 = np.searchsorted(t, t_start)
    i1 = np.searchsorted(t, t_end)
    ts, xs, ys, ps = t[i0:i1], x[i0:i1], y[i0:i1], p[i0:i1]
    scale = bins / (t_end - t_start)
    for i in range(ts.shape[0]):
        tn = (ts[i] - t_start) * scale
        b0 = int(tn)
        frac = tn - b0
        v = 1.0 if ps[i] else -1.0
        cell = ys[i] * width + xs[i]
        if b0 < bins:
            flat[b0 * plane + cell] += np.float32(v * (1.0 - frac))
        if b0 + 1 < bins:
            flat[(b0 + 1) * plane + cell] += np.float32(v * frac)
    return out


def _output(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise AnonyNoiseError(f"out must be a contiguous float32 array of shape {shape}, "
                              f"got {out.dtype} {out.shape}")
    return out


def grid_shape(width: int, height: int, cell: int = 1) -> tuple[int, int]:
    """(GH, GW): the privacy grid of cell x cell pixels over a width x height sensor (cells at
    the right and bottom edges are cut by the sensor)."""
    cell = _check_cell(cell)
    return -(-int(height) // cell), -(-int(width) // cell)


def _check_cell(cell) -> int:
    if not isinstance(cell, (int, np.integer)) or isinstance(cell, bool) or cell < 1:
        raise AnonyNoiseError(f"a grid cell must be a positive whole number of pixels, got "
                              f"{cell!r}")
    return int(cell)


def events_to_counts(events: EventBatch, t_start: int, t_end: int, bins: int,
                     out: np.ndarray | None = None, *, cell: int = 1) -> np.ndarray:
    """Count tensor (bins, 2, H, W) float32 of the events in [t_start, t_end); with cell > 1,
    (bins, 2, GH, GW) on the privacy grid (grid_shape).

    Equals tonic's ToFrame(sensor_size, n_time_bins=bins) when the window is
    `whole_sample_window(events, bins)`. Pass `out` to reuse a buffer (it is overwritten).
    """
    edges = bin_edges(t_start, t_end, bins)
    if _check_cell(cell) > 1:
        out = _output(out, (int(bins), 2, *grid_shape(events.width, events.height, cell)))
        return _accumulate_grid_counts(events.t, events.x, events.y, events.p, edges,
                                       np.int64(cell), out)
    out = _output(out, (int(bins), 2, events.height, events.width))
    return _accumulate_counts(events.t, events.x, events.y, events.p, edges, out)


class CountBuffer:
    """Full-resolution count tensors (bins, 2, H, W) float32 for successive windows of one
    sensor, in one buffer: each call clears only the cells the previous window touched, so a
    window costs its events, not the sensor's pixels (as dv's accumulators keep their frame).

    The array returned is the buffer itself: it holds until the next call, which overwrites
    it; copy it to keep it, and do not write to it (the next call clears only what it
    counted)."""

    def __init__(self, width: int, height: int, bins: int):
        self.width, self.height, self.bins = int(width), int(height), int(bins)
        self._buffer = np.zeros((self.bins, 2, self.height, self.width), np.float32)
        self._touched = np.empty(1024, np.int64)
        self._n_touched = 0

    def __call__(self, events: EventBatch, t_start: int, t_end: int) -> np.ndarray:
        """The counts of the events in [t_start, t_end), as events_to_counts gives them."""
        if (events.width, events.height) != (self.width, self.height):
            raise AnonyNoiseError(f"a {events.width}x{events.height} window does not fit a "
                                  f"{self.width}x{self.height} count buffer")
        edges = bin_edges(t_start, t_end, self.bins)
        self._touched, self._n_touched = _recount(
            events.t, events.x, events.y, events.p, edges, self._buffer.reshape(-1),
            self._touched, self._n_touched, self.bins, self.height, self.width)
        return self._buffer


def events_to_voxel(events: EventBatch, t_start: int, t_end: int, bins: int,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear voxel grid (bins, H, W) float32, polarity +-1, of the events in [t_start, t_end).

    Equals tonic's ToVoxelGrid(sensor_size, n_time_bins=bins) (which returns (bins, 1, H, W)
    float64) for a window from the first to the last event of a sample.
    """
    bin_edges(t_start, t_end, bins)  # validates the window
    out = _output(out, (int(bins), events.height, events.width))
    return _accumulate_voxel(events.t, events.x, events.y, events.p,
                             int(t_start), int(t_end), out)


# ---------------------------------------------------------------------------------------------
# tensor -> events

# Reassociation only: it lets LLVM vectorise the sum. Never "nnan"/"ninf" (or plain
# fastmath=True): with them LLVM may assume there is no NaN and fold the check away.
_REASSOC_ONLY = {"reassoc", "nsz", "contract"}


@numba.njit(cache=True, nogil=True, fastmath=_REASSOC_ONLY)
def _scan_values(flat):
    """(index of the first non-finite value or -1, sum of the positive values).

    `v - v != 0` is true exactly for NaN and +-inf; branch-free, so it runs at memory speed.
    """
    zero = np.float32(0.0)
    total = 0.0
    bad = 0
    for i in range(flat.shape[0]):
        v = flat[i]
        bad += (v - v) != zero
        total += v if v > zero else zero
    if bad:
        for i in range(flat.shape[0]):
            if not np.isfinite(flat[i]):
                return i, 0.0
    return -1, total


@numba.njit(cache=True, nogil=True)
def _grow(a, need):
    bigger = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    bigger[: a.shape[0]] = a
    return bigger


@numba.njit(cache=True, nogil=True, inline="always")
def _cell_pixel(c, plane, width, inv_plane, inv_width):
    """(polarity, y, x) of cell c = polarity * plane + y * width + x. c // plane and
    c // width through exact float reciprocals: (c + 0.5) / d is never within 0.5 / d of an
    integer, far above the rounding error, and it avoids two divisions."""
    pol = np.int64((c + 0.5) * inv_plane)
    rem = c - pol * plane
    row = np.int64((rem + 0.5) * inv_width)
    return pol, row, rem - row * width


@numba.njit(cache=True, nogil=True, inline="always")
def _in_cell(g, grid, side, state):
    """A uniform random pixel of grid cell g along one axis of `side` pixels (the last cell
    cut by the sensor); grid 1 draws nothing (g is the pixel)."""
    if grid == 1:
        return g
    start = g * grid
    return start + np.int64(uniform(state) * min(grid, side - start))


@numba.njit(cache=True, nogil=True, inline="always")
def _event_pixel(c, plane, width, inv_plane, inv_width, grid, sensor_width, sensor_height,
                 state):
    """(polarity, y, x) of an event drawn from tensor cell c: its grid cell's pixel at grid
    1, else a uniform pixel of that cell (y drawn first)."""
    pol, gy, gx = _cell_pixel(c, plane, width, inv_plane, inv_width)
    row = _in_cell(gy, grid, sensor_height, state)
    return pol, row, _in_cell(gx, grid, sensor_width, state)


@numba.njit(cache=True, nogil=True)
def _sample_events(values, edges, state, capacity, grid, sensor_width, sensor_height):
    """Events from values (bins, 2, H, W): negatives are zero, counts rounded stochastically,
    timestamps uniform inside the bin, sorted by time (a counting sort per bin). With grid > 1
    values is on the privacy grid of grid x grid pixel cells and each event lands on a uniform
    pixel of its cell.

    One bin at a time: its events are drawn in cell order into scratch arrays the size of a
    bin (they stay in cache), then sorted by time straight into the output (about 20 %
    faster than drawing the whole window first)."""
    bins, _, height, width = values.shape
    plane = height * width
    cells = 2 * plane
    flat = values.reshape(-1)
    positive = np.empty(cells, np.int32)
    off = np.empty(capacity // bins + 1024, np.int64)  # time offset inside the bin
    cell = np.empty(capacity // bins + 1024, np.int32)  # polarity * plane + y * width + x
    t = np.empty(capacity, np.int64)
    x = np.empty(capacity, np.int16)
    y = np.empty(capacity, np.int16)
    p = np.empty(capacity, np.uint8)
    inv_plane = 1.0 / plane
    inv_width = 1.0 / width
    hist = np.zeros(0, np.int64)
    done = 0  # events of the bins before this one
    for b in range(bins):
        start = edges[b]
        span = edges[b + 1] - start
        vb = flat[b * cells:(b + 1) * cells]
        m = 0
        for c in range(cells):  # branch-free compaction: most cells of a count tensor are 0
            positive[m] = c
            m += vb[c] > 0.0
        n = 0
        for j in range(m):
            c = positive[j]
            v = vb[c]
            k = np.int64(v)
            frac = v - k
            if frac > 0.0:
                k += uniform(state) < frac
            if n + k + 1 > off.shape[0]:
                off = _grow(off, n + k + 1)
                cell = _grow(cell, n + k + 1)
            # The first event is written always and kept if k >= 1: no mispredicted branch.
            o = np.int64(uniform(state) * span)
            off[n] = min(o, span - 1)
            cell[n] = c
            n += k >= 1
            for _ in range(k - 1):
                o = np.int64(uniform(state) * span)
                off[n] = min(o, span - 1)
                cell[n] = c
                n += 1
        if n == 0:
            continue
        if done + n > t.shape[0]:
            t, x = _grow(t, done + n), _grow(x, done + n)
            y, p = _grow(y, done + n), _grow(p, done + n)
        if span <= 4 * n + 65536:
            # Counting sort on the offset, O(events + span), stable; each event is written
            # straight to its sorted place (no index to gather through).
            if hist.shape[0] < span + 1:
                hist = np.zeros(span + 1, np.int64)
            else:
                hist[: span + 1] = 0
            for i in range(n):
                hist[off[i] + 1] += 1
            for j in range(span):
                hist[j + 1] += hist[j]
            for i in range(n):
                o = off[i]
                r = done + hist[o]
                hist[o] += 1
                p[r], y[r], x[r] = _event_pixel(cell[i], plane, width, inv_plane, inv_width,
                                                grid, sensor_width, sensor_height, state)
                t[r] = start + o
        else:  # a long, sparse bin (whole-sample windows): a comparison sort is cheaper
            order = np.argsort(off[:n], kind="mergesort")
            for j in range(n):
                i = order[j]
                r = done + j
                p[r], y[r], x[r] = _event_pixel(cell[i], plane, width, inv_plane, inv_width,
                                                grid, sensor_width, sensor_height, state)
                t[r] = start + off[i]
        done += n
    return t[:done], x[:done], y[:done], p[:done]


def counts_to_events(tensor: np.ndarray, t_start: int, t_end: int, *,
                     seed: int | None = None, max_events: int = DEFAULT_MAX_EVENTS,
                     cell: int = 1, sensor_size: tuple[int, int] | None = None) -> EventBatch:
    """Sample events from a (bins, 2, H, W) or (bins * 2, H, W) tensor over [t_start, t_end).

    With cell > 1 the tensor is on the privacy grid of a sensor_size (W, H) sensor (its shape
    grid_shape's) and each event lands on a uniform random pixel of its cell.

    Raises AnonyNoiseError for non-finite values or a tensor that asks for more than
    max_events events (a failed anonymization must never turn into a flood of output).
    `seed` makes the draws reproducible and is meant for tests only.
    """
    values = np.asarray(tensor)
    if values.ndim == 3 and values.shape[0] % 2 == 0:
        values = values.reshape(values.shape[0] // 2, 2, *values.shape[1:])
    if values.ndim != 4 or values.shape[1] != 2:
        raise AnonyNoiseError(f"expected a tensor of shape (bins, 2, H, W) or (bins*2, H, W), "
                              f"got {np.shape(tensor)}")
    if values.dtype.kind != "f":
        raise AnonyNoiseError(f"expected a floating-point tensor, got {values.dtype}")
    values = np.ascontiguousarray(values, dtype=np.float32)
    bins, _, height, width = values.shape
    cell = _check_cell(cell)
    if sensor_size is None:
        if cell > 1:
            raise AnonyNoiseError("sampling from the privacy grid needs the sensor_size")
        sensor_size = (width, height)
    sensor_width, sensor_height = int(sensor_size[0]), int(sensor_size[1])
    if grid_shape(sensor_width, sensor_height, cell) != (height, width):
        raise AnonyNoiseError(f"a {width}x{height} tensor is not the grid of {cell} px cells "
                              f"of a {sensor_width}x{sensor_height} sensor")
    edges = bin_edges(t_start, t_end, bins)
    flat = values.reshape(-1)
    bad, total = _scan_values(flat)
    if bad >= 0:
        raise AnonyNoiseError(f"tensor has a non-finite value ({flat[bad]}) at flat index {bad}; "
                              "refusing to sample events from it")
    if total > max_events:
        raise AnonyNoiseError(f"tensor asks for about {total:.0f} events, more than the limit "
                              f"of {max_events}")
    # The expected count plus a margin; the scratch arrays grow if a draw exceeds it.
    capacity = int(total * 1.05) + 1024
    t, x, y, p = _sample_events(values, edges, rng_state(seed), capacity, np.int64(cell),
                                np.int64(sensor_width), np.int64(sensor_height))
    return EventBatch.trusted(t, x, y, p, sensor_width, sensor_height)


def warm_up() -> None:
    """Compile (or load from the cache) every kernel now, not in the live path."""
    from anonynoise.events import make_events

    ev = make_events([0, 1, 2, 5], [0, 1, 2, 3], [0, 1, 2, 3], [0, 1, 0, 1], 4, 4)
    counts = events_to_counts(ev, 0, 10, 2)
    events_to_voxel(ev, 0, 10, 2)
    counts_to_events(counts, 0, 10, seed=0)
    counts_to_events(counts, 0, 10_000_000, seed=0)  # the long-bin (argsort) branch too
    grid = events_to_counts(ev, 0, 10, 2, cell=3)
    counts_to_events(grid, 0, 10, seed=0, cell=3, sensor_size=(4, 4))
    CountBuffer(4, 4, 2)(ev, 0, 10)
