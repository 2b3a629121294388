"""An event simulator: events from log-intensity changes between rendered frames (numba).

As ESIM and v2e do, frames are rendered at a moderate rate and the log intensity of each pixel
is interpolated linearly between them: an event fires where it crosses the pixel's reference
level plus or minus its contrast threshold, at the interpolated time. Per-pixel thresholds
differ (mismatch), a refractory period suppresses events too close together, and each pixel
also fires noise events: background activity at a lighting-dependent rate (a few hot pixels
fire far more often) and shot noise that grows in dark pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from anonynoise.events import EventBatch
from anonynoise.rng import exponential, normal, rng_state, uniform
from anonynoise.synth.render import draw, frame_extent

LOG_EPS = 0.02  # log(I + eps): dark pixels do not produce infinite contrast


@dataclass(frozen=True)
class SensorModel:
    """The event camera's parameters."""

    threshold: float = 0.12  # log-intensity contrast threshold
    threshold_mismatch: float = 0.03  # standard deviation between pixels
    refractory_us: float = 500.0
    background_rate: float = 0.3  # noise events per pixel and second
    hot_pixel_fraction: float = 0.002
    hot_pixel_rate: float = 20.0
    shot_rate: float = 0.5  # extra noise events per second in a pixel of intensity 0.1
    on_fraction: float = 0.6  # of noise events


@numba.njit(cache=True, nogil=True)
def _grow(a, need):
    bigger = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    bigger[: a.shape[0]] = a
    return bigger


@numba.njit(cache=True, nogil=True, fastmath=True)
def _simulate(shapes, times, background, illumination, image, log_prev, log_ref, t_last,
              thr_on, thr_off, noise_cdf, noise_next, on_fraction, refractory, region,
              state, t_prev, capacity):
    """Render each frame, emit the events of the interval before it, sorted by time.

    All state arrays are updated in place; returns (t, x, y, p, count, t_last_frame).
    """
    height, width = image.shape
    out_t = np.empty(capacity, np.int64)
    out_x = np.empty(capacity, np.int16)
    out_y = np.empty(capacity, np.int16)
    out_p = np.empty(capacity, np.uint8)
    n = 0
    tmp_t = np.empty(1024, np.float64)
    tmp_x = np.empty(1024, np.int16)
    tmp_y = np.empty(1024, np.int16)
    tmp_p = np.empty(1024, np.uint8)
    for f in range(times.shape[0]):
        t_now = times[f]
        dt = t_now - t_prev
        x0, y0, x1, y1 = frame_extent(shapes[f], width, height)
        # the region that changes: where the figure was and where it is now
        rx0, ry0 = min(x0, region[0]), min(y0, region[1])
        rx1, ry1 = max(x1, region[2]), max(y1, region[3])
        region[0], region[1], region[2], region[3] = x0, y0, x1, y1
        if rx1 > rx0:
            draw(image, background, shapes[f], rx0, ry0, rx1, ry1)
        k = 0
        for y in range(ry0, ry1):
            for x in range(rx0, rx1):
                new = np.log(np.float32(illumination * image[y, x] + LOG_EPS))
                old = log_prev[y, x]
                log_prev[y, x] = new
                if new == old:
                    continue
                ref = log_ref[y, x]
                while True:  # crossings upwards, then downwards (the change is linear)
                    if new - ref >= thr_on[y, x]:
                        ref += thr_on[y, x]
                        pol = 1
                    elif ref - new >= thr_off[y, x]:
                        ref -= thr_off[y, x]
                        pol = 0
                    else:
                        break
                    frac = min(max((ref - old) / (new - old), 0.0), 1.0)
                    te = t_prev + frac * dt
                    if te - t_last[y, x] < refractory:
                        continue
                    t_last[y, x] = te
                    if k == tmp_t.shape[0]:
                        tmp_t, tmp_x = _grow(tmp_t, k + 1), _grow(tmp_x, k + 1)
                        tmp_y, tmp_p = _grow(tmp_y, k + 1), _grow(tmp_p, k + 1)
                    tmp_t[k], tmp_x[k], tmp_y[k], tmp_p[k] = te, x, y, pol
                    k += 1
                log_ref[y, x] = ref
        # Noise: independent Poisson processes per pixel, drawn as one process of the total
        # rate whose events land on pixels in proportion to their rates.
        total_rate = noise_cdf[-1]
        while noise_next[0] < t_now:
            if k == tmp_t.shape[0]:
                tmp_t, tmp_x = _grow(tmp_t, k + 1), _grow(tmp_x, k + 1)
                tmp_y, tmp_p = _grow(tmp_y, k + 1), _grow(tmp_p, k + 1)
            pixel = np.searchsorted(noise_cdf, uniform(state) * total_rate, side="right")
            pixel = min(pixel, width * height - 1)
            tmp_t[k], tmp_x[k], tmp_y[k] = max(noise_next[0], t_prev), pixel % width, pixel // width
            tmp_p[k] = 1 if uniform(state) < on_fraction else 0
            k += 1
            noise_next[0] += exponential(state, total_rate) * 1e6
        if n + k > out_t.shape[0]:
            out_t, out_x = _grow(out_t, n + k), _grow(out_x, n + k)
            out_y, out_p = _grow(out_y, n + k), _grow(out_p, n + k)
        order = np.argsort(tmp_t[:k], kind="mergesort")
        for i in range(k):
            j = order[i]
            out_t[n] = np.int64(np.floor(tmp_t[j]))
            out_x[n], out_y[n], out_p[n] = tmp_x[j], tmp_y[j], tmp_p[j]
            n += 1
        t_prev = t_now
    return out_t, out_x, out_y, out_p, n, t_prev


@numba.njit(cache=True, nogil=True)
def _thresholds(height, width, mean, spread, state):
    out = np.empty((height, width), np.float64)
    for y in range(height):
        for x in range(width):
            out[y, x] = max(mean + spread * normal(state), 0.05)
    return out


class EventSimulator:
    """A simulated sensor looking at one scene: feed it frames (as shapes), get events.

    State (reference levels, last event times, noise clocks) carries over between calls, so
    a long recording can be simulated chunk by chunk.
    """

    def __init__(self, background: np.ndarray, illumination: float, background_rate: float,
                 model: SensorModel = SensorModel(), seed: int | None = None, t0_us: float = 0.0):
        self.height, self.width = background.shape
        self.background = np.ascontiguousarray(background, dtype=np.float32)
        self.illumination = float(illumination)
        self.model = model
        self.state = rng_state(seed)
        h, w = self.height, self.width
        self.image = self.background.copy()
        self.log_prev = np.log(self.illumination * self.background + np.float32(LOG_EPS))
        self.log_ref = self.log_prev.copy()
        self.t_last = np.full((h, w), -1e18)
        self.thr_on = _thresholds(h, w, model.threshold, model.threshold_mismatch, self.state)
        self.thr_off = _thresholds(h, w, model.threshold, model.threshold_mismatch, self.state)
        rng = np.random.default_rng(self.state.copy())
        rate = background_rate * rng.uniform(0.5, 1.5, (h, w))
        hot = rng.random((h, w)) < model.hot_pixel_fraction
        rate[hot] = model.hot_pixel_rate
        # shot noise: more in dark pixels (intensity as the sensor sees it)
        lit = self.illumination * self.background
        rate += model.shot_rate * 0.1 / np.maximum(lit, 0.02)
        self.noise_cdf = np.cumsum(rate.ravel())  # events per second, cumulative over pixels
        self.noise_next = np.array([t0_us + rng.exponential(1.0 / self.noise_cdf[-1]) * 1e6])
        self.region = np.zeros(4, np.int64)
        self.t_prev = float(t0_us)

    def run(self, shapes: np.ndarray, times_us: np.ndarray) -> EventBatch:
        """Events between the previous frame and each frame of `shapes` (F, N, K) at
        `times_us` (F,), sorted by time."""
        times = np.ascontiguousarray(times_us, dtype=np.float64)
        capacity = max(1024, int(len(times) * self.width * self.height * 0.05))
        t, x, y, p, n, self.t_prev = _simulate(
            np.ascontiguousarray(shapes, dtype=np.float64), times, self.background,
            self.illumination, self.image, self.log_prev, self.log_ref, self.t_last,
            self.thr_on, self.thr_off, self.noise_cdf, self.noise_next,
            self.model.on_fraction, self.model.refractory_us, self.region, self.state,
            self.t_prev, capacity)
        return EventBatch.trusted(t[:n].copy(), x[:n].copy(), y[:n].copy(), p[:n].copy(),
                                  self.width, self.height)
