"""Events -> an RGB picture: pure numpy, no Qt (the viewer's "accumulator").

Every pixel gets one of four fixed colours, so the picture never depends on the rate:

    background  no event at the pixel in this window         dark grey
    ON          only ON events (p = 1) at the pixel          sky blue
    OFF         only OFF events (p = 0) at the pixel         orange
    both        ON and OFF events at the pixel               near white

The "both" rule is order-free on purpose: numpy gives no order guarantee for repeated indices
in a fancy assignment, and "latest event wins" would flicker between two colours on a pixel
that the anonymizer's noise hits with both polarities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream.protocol import MAX_SENSOR_PIXELS, MAX_SENSOR_SIDE

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Palette:
    """The four colours of a rendered window (RGB, 0-255). Blue / orange reads for the
    common colour-vision deficiencies; no colour is a plain grey except the background."""

    background: RGB = (32, 32, 32)
    on: RGB = (0, 170, 255)
    off: RGB = (255, 120, 0)
    both: RGB = (240, 240, 240)

    def table(self) -> np.ndarray:
        """(4, 3) uint8, indexed by code = 1 * has_on + 2 * has_off."""
        return np.array([self.background, self.on, self.off, self.both], np.uint8)


DEFAULT_PALETTE = Palette()


def event_fields(events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, p of a structured array (ours or tonic's) or of an EventBatch."""
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names:
        return events["x"], events["y"], events["p"]
    return events.x, events.y, events.p


def check_picture_size(width, height) -> None:
    """ValueError unless width x height is a sensor the protocol allows (stream.protocol's
    MAX_SENSOR_SIDE and MAX_SENSOR_PIXELS): checked before any picture is allocated."""
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
            raise ValueError(f"sensor {name} must be an integer, got {v!r}")
        if not 0 < v <= MAX_SENSOR_SIDE:
            raise ValueError(f"sensor size must be 1 to {MAX_SENSOR_SIDE} pixels a side, got "
                             f"{width}x{height}")
    if int(width) * int(height) > MAX_SENSOR_PIXELS:
        raise ValueError(f"sensor {width}x{height} has more than {MAX_SENSOR_PIXELS} pixels")


def polarity_codes(events, width: int, height: int) -> np.ndarray:
    """(height, width) uint8: 0 no event, 1 ON only, 2 OFF only, 3 both."""
    check_picture_size(width, height)
    width, height = int(width), int(height)
    codes = np.zeros(height * width, np.uint8)
    if len(events) == 0:
        return codes.reshape(height, width)
    x, y, p = event_fields(events)
    x = x.astype(np.intp, copy=False)
    y = y.astype(np.intp, copy=False)
    # The decoder refuses windows with events off the sensor, but the local preview and other
    # callers pass arrays of their own: drop what falls outside instead of wrapping around.
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    if not inside.all():
        x, y, p = x[inside], y[inside], p[inside]
    index = y * width + x
    on = p != 0
    codes[index[on]] = 1
    off = index[~on]
    codes[off] |= 2  # repeated indices all write the same value, so order does not matter
    return codes.reshape(height, width)


def render_events(events, width: int, height: int,
                  palette: Palette = DEFAULT_PALETTE) -> np.ndarray:
    """(height, width, 3) uint8 RGB of one window: ON, OFF, both or background per pixel.

    events: a structured array with fields x, y, p (the stream's or tonic's dtype) or an
    EventBatch; row 0 is y = 0 (the top of the sensor).
    """
    return palette.table()[polarity_codes(events, width, height)]


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4,
                 fill: RGB = (0, 0, 0)) -> np.ndarray:
    """Two RGB pictures of one height next to each other, `gap` columns of `fill` between."""
    if left.shape[0] != right.shape[0]:
        raise ValueError(f"heights differ: {left.shape[0]} and {right.shape[0]}")
    spacer = np.empty((left.shape[0], gap, 3), np.uint8)
    spacer[...] = fill
    return np.concatenate([left, spacer, right], axis=1)
