"""Draw the figure's shapes into a grey-level image (numba).

Shapes are drawn back to front with anti-aliased edges (a one-pixel ramp on the signed
distance), so sub-pixel motion changes intensities smoothly, as a real edge sweeping over a
pixel does. Clothing textures are painted in the coordinates of their body part and move
with it.
"""

from __future__ import annotations

import numba
import numpy as np

from anonynoise.synth.figure import CAPSULE, ELLIPSE, SKIP

MIN_GREY = 0.02


@numba.njit(cache=True, nogil=True, fastmath=True)
def _extent(s):
    """(x0, y0, x1, y1) bounding box of a shape row, with a margin for the edge ramp."""
    kind = s[0]
    if kind == CAPSULE:
        r = s[5] + 1.0
        return (min(s[1], s[3]) - r, min(s[2], s[4]) - r, max(s[1], s[3]) + r,
                max(s[2], s[4]) + r)
    if kind == ELLIPSE:
        r = max(s[3], s[4]) * (1.0 + s[6]) + 1.0
        return s[1] - r, s[2] - r, s[1] + r, s[2] + r
    r = np.sqrt(s[3] * s[3] + s[4] * s[4]) + 1.0  # BOX
    return s[1] - r, s[2] - r, s[1] + r, s[2] + r


@numba.njit(cache=True, nogil=True, fastmath=True)
def _signed_distance(s, px, py, cos_a, sin_a):
    """Signed distance in pixels from (px, py) to the shape's edge (negative inside)."""
    kind = s[0]
    if kind == CAPSULE:
        dx, dy = s[3] - s[1], s[4] - s[2]
        length2 = dx * dx + dy * dy
        h = 0.0
        if length2 > 0:
            h = min(max(((px - s[1]) * dx + (py - s[2]) * dy) / length2, 0.0), 1.0)
        ex, ey = px - s[1] - h * dx, py - s[2] - h * dy
        return np.sqrt(ex * ex + ey * ey) - s[5]
    # local frame of an ellipse or a box
    lx = (px - s[1]) * cos_a + (py - s[2]) * sin_a
    ly = -(px - s[1]) * sin_a + (py - s[2]) * cos_a
    if kind == ELLIPSE:
        a, b = s[3], s[4]
        if s[6] > 0:  # curly outline: the radius oscillates around the ellipse
            bump = 1.0 + s[6] * np.sin(s[7] * np.arctan2(ly, lx))
            a, b = a * bump, b * bump
        k = np.sqrt((lx / a) ** 2 + (ly / b) ** 2)
        grad = np.sqrt((lx / (a * a)) ** 2 + (ly / (b * b)) ** 2)
        if grad < 1e-9:
            return -min(a, b)
        return (k - 1.0) * k / grad
    r = s[6]  # BOX with rounded corners
    qx, qy = abs(lx) - (s[3] - r), abs(ly) - (s[4] - r)
    outside = np.sqrt(max(qx, 0.0) ** 2 + max(qy, 0.0) ** 2)
    return outside + min(max(qx, qy), 0.0) - r


@numba.njit(cache=True, nogil=True, fastmath=True, inline="always")
def _triangle(a):
    """A period-1 triangle wave in [-1, 1]."""
    return 1.0 - 4.0 * abs(a - np.floor(a + 0.5))


@numba.njit(cache=True, nogil=True, fastmath=True)
def _texture(s, px, py, cos_t, sin_t):
    """The texture's relative brightness change at (px, py), in [-contrast, contrast];
    (cos_t, sin_t) turn image offsets into texture coordinates (part axis + pattern angle)."""
    kind = int(s[9])
    dx, dy = px - s[14], py - s[15]
    a = (dx * cos_t + dy * sin_t) / s[11]
    b = (dy * cos_t - dx * sin_t) / s[11]
    contrast = s[12]
    if kind == 1:  # stripes (a triangle wave: a sine's shape at a fraction of its cost)
        return contrast * _triangle(a)
    if kind == 2:  # dots
        fa = a - np.floor(a) - 0.5
        fb = b - np.floor(b) - 0.5
        d = np.sqrt(fa * fa + fb * fb)
        return contrast * (2.0 * min(max((0.3 - d) * 6.0, 0.0), 1.0) - 1.0)
    return contrast * min(max(3.0 * _triangle(a) * _triangle(b), -1.0), 1.0)  # checker


@numba.njit(cache=True, nogil=True, fastmath=True)
def frame_extent(shapes, width, height):
    """Integer bounding box (x0, y0, x1, y1), end exclusive, of all shapes of a frame."""
    x0, y0, x1, y1 = 1e9, 1e9, -1e9, -1e9
    for i in range(shapes.shape[0]):
        if shapes[i, 0] == SKIP:
            continue
        a, b, c, d = _extent(shapes[i])
        x0, y0, x1, y1 = min(x0, a), min(y0, b), max(x1, c), max(y1, d)
    if x1 < x0:
        return 0, 0, 0, 0
    return (max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0),
            min(int(np.ceil(x1)) + 1, width), min(int(np.ceil(y1)) + 1, height))


@numba.njit(cache=True, nogil=True, fastmath=True)
def draw(image, background, shapes, x0, y0, x1, y1):
    """Reset [y0:y1, x0:x1] of image to the background, then draw the shapes there."""
    height, width = image.shape
    for y in range(y0, y1):
        for x in range(x0, x1):
            image[y, x] = background[y, x]
    for i in range(shapes.shape[0]):
        s = shapes[i]
        if s[0] == SKIP:
            continue
        a, b, c, d = _extent(s)
        sx0, sy0 = max(int(np.floor(a)), x0), max(int(np.floor(b)), y0)
        sx1, sy1 = min(int(np.ceil(c)) + 1, x1), min(int(np.ceil(d)) + 1, y1)
        angle = s[5] if s[0] != CAPSULE else 0.0
        cos_a, sin_a = np.cos(angle), np.sin(angle)
        textured = s[9] > 0
        cos_t, sin_t = np.cos(s[13] + s[10]), np.sin(s[13] + s[10])
        for y in range(sy0, sy1):
            for x in range(sx0, sx1):
                px, py = x + 0.5, y + 0.5
                cover = min(max(0.5 - _signed_distance(s, px, py, cos_a, sin_a), 0.0), 1.0)
                if cover > 0.0:
                    grey = s[8]
                    if textured:
                        grey = max(grey * (1.0 + _texture(s, px, py, cos_t, sin_t)), MIN_GREY)
                    image[y, x] += cover * (grey - image[y, x])


def render_frame(shapes: np.ndarray, background: np.ndarray) -> np.ndarray:
    """One frame as a float32 image (for pictures and tests)."""
    image = background.copy()
    height, width = image.shape
    x0, y0, x1, y1 = frame_extent(shapes, width, height)
    draw(image, background, shapes, x0, y0, x1, y1)
    return image
