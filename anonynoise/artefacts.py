"""Spatial and polarity artefacts: patterns an anonymizer puts in its output that the scene
does not have.

A net that reads or writes its maps with stride-2 kernels gives each pixel of a 2x2 block its
own weights, and its output then piles events on one row or column parity: a grid in every
time-summed picture, a periodic pattern a consumer's model sees. These statistics compare an
output with its input:

    even_rows, even_cols   the share of events on even rows / columns (about half in a scene)
    on_share               the share of ON events
    row_wave, col_wave,    |sum (-1)^y M| / sum M and alike for a time-summed count map M: the
    checker_wave           strength of the highest spatial frequencies (period 2 px), 0 for a
                           smooth picture, 1 for every event on one parity
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from anonynoise.events import EventBatch

# How far an output may move from its input before it counts as an artefact
MAX_PARITY_CHANGE = 0.15  # even-row / even-column share, relative to the input's
MAX_ON_SHARE_CHANGE = 0.10  # absolute
MAX_WAVE_GAIN = 0.05  # a period-2 wave above the input's by more than this


@dataclass(frozen=True)
class GridStatistics:
    events: int
    even_rows: float
    even_cols: float
    on_share: float
    row_wave: float
    col_wave: float
    checker_wave: float

    def to_dict(self) -> dict:
        return asdict(self)


def grid_statistics(events: EventBatch) -> GridStatistics:
    """The parity, polarity and period-2 statistics of a batch (all 0 when it is empty)."""
    n = len(events)
    if n == 0:
        return GridStatistics(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    even_y = (events.y % 2 == 0)
    even_x = (events.x % 2 == 0)
    # sum over events of (-1)^y etc. is the sum over the time-summed map
    row_sign = np.where(even_y, 1, -1)
    col_sign = np.where(even_x, 1, -1)
    return GridStatistics(
        events=n, even_rows=float(even_y.mean()), even_cols=float(even_x.mean()),
        on_share=float((events.p == 1).mean()),
        row_wave=abs(float(row_sign.sum())) / n, col_wave=abs(float(col_sign.sum())) / n,
        checker_wave=abs(float((row_sign * col_sign).sum())) / n)


def artefacts(raw: EventBatch, out: EventBatch) -> list[str]:
    """What the output has that its input does not, in words (empty: no artefact)."""
    a, b = grid_statistics(raw), grid_statistics(out)
    found = []
    for name in ("even_rows", "even_cols"):
        before, after = getattr(a, name), getattr(b, name)
        # a share moved towards a half is a pattern of the sensor's smoothed away (a DAVIS346
        # puts 35 % of its events on even columns), not one added
        away = abs(after - 0.5) > abs(before - 0.5)
        if before and away and abs(after - before) > MAX_PARITY_CHANGE * before:
            found.append(f"{name.replace('_', ' ')} share {after:.2f} (input {before:.2f})")
    if abs(b.on_share - a.on_share) > MAX_ON_SHARE_CHANGE:
        found.append(f"ON share {b.on_share:.2f} (input {a.on_share:.2f})")
    for name in ("row_wave", "col_wave", "checker_wave"):
        before, after = getattr(a, name), getattr(b, name)
        if after > before + MAX_WAVE_GAIN:
            found.append(f"period-2 {name.split('_')[0]} pattern {after:.2f} "
                         f"(input {before:.2f})")
    return found
