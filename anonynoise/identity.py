"""How much of an anonymized window its raw input does not account for, cell by cell.

The last line of the fail-closed rule: whatever the flags, a window whose output repeats its
input (an identity-like net behind no filter that moves events, with allow_weak) must not be
published, and neither may a subset of the input (a net or filter that only deletes events
leaves the rest where they were). The measure: the share of the output's events that the input
does not account for, counted per (pixel, polarity, time bin) cell, sum max(out_c - in_c, 0) /
sum out_c. An identity net gives 0 (the sampler returns integer counts exactly: 78,830 events
in, the same 78,830 out), so does a deleting one; a net that adds noise, or filters that move
events, give far more.
"""

from __future__ import annotations

import numba
import numpy as np

from anonynoise.events import EventBatch
from anonynoise.represent import bin_edges


@numba.njit(cache=True, nogil=True)
def _cell_difference(t_in, x_in, y_in, p_in, t_out, x_out, y_out, p_out, edges, width,
                     cells):
    """sum over cells of max(out - in, 0), bin by bin: the output events the input does not
    account for. `cells` (2 * H * W int32) is zero on entry and left zero (only the cells a
    bin touched are reset)."""
    i = j = 0
    total = 0
    for b in range(edges.shape[0] - 1):
        end = edges[b + 1]
        i0, j0 = i, j
        while i < t_in.shape[0] and t_in[i] < end:
            cells[(np.int64(y_in[i]) * width + x_in[i]) * 2 + p_in[i]] += 1
            i += 1
        while j < t_out.shape[0] and t_out[j] < end:
            cells[(np.int64(y_out[j]) * width + x_out[j]) * 2 + p_out[j]] -= 1
            j += 1
        for k in range(j0, j):  # a cell's surplus is counted once: its first output event
            c = (np.int64(y_out[k]) * width + x_out[k]) * 2 + p_out[k]
            if cells[c] < 0:
                total -= cells[c]
            cells[c] = 0
        for k in range(i0, i):
            cells[(np.int64(y_in[k]) * width + x_in[k]) * 2 + p_in[k]] = 0
    return total


class NovelShare:
    """Measures windows of one sensor; keeps one cell buffer (2 x H x W int32)."""

    def __init__(self, width: int, height: int):
        self.width, self.height = int(width), int(height)
        self._cells = np.zeros(2 * self.width * self.height, np.int32)

    def __call__(self, raw: EventBatch, out: EventBatch, t_start: int, t_end: int,
                 bins: int) -> float:
        """sum max(out_c - in_c, 0) / sum out_c over (pixel, polarity, bin) cells; 1 for an
        empty output (nothing of the input leaves)."""
        if not len(out):
            return 1.0
        edges = bin_edges(t_start, t_end, bins)
        diff = _cell_difference(raw.t, raw.x, raw.y, raw.p, out.t, out.x, out.y, out.p, edges,
                                self.width, self._cells)
        return diff / len(out)


def warm_up() -> None:
    """Compile the kernel now (or load it from the cache), not in a live window."""
    from anonynoise.events import make_events

    e = make_events([0, 1], [0, 1], [0, 0], [0, 1], 2, 1)
    NovelShare(2, 1)(e, e, 0, 10, 2)
