"""A built-in example stream: moving Gaussian blobs plus uniform noise, as a clustered event
stream from a moving scene looks. Used by the demo, the benchmarks and the tests.

It is the stream `../shared/docs/peer-benchmarks.md` measured the peers on: 85 % of events from
16 blobs (sigma 2-6 % of the width) bouncing across the sensor, 15 % uniform noise, polarity
about 50/50, timestamps sorted, starting at 0.
"""

from __future__ import annotations

import numpy as np

from anonynoise.events import EventBatch, make_events


def _bounce(position: np.ndarray, size: int) -> np.ndarray:
    """Fold an unbounded coordinate back into [0, size) like a ball between two walls."""
    period = 2.0 * size
    folded = np.mod(position, period)
    return np.where(folded >= size, period - folded - 1e-9, folded)


def clustered_stream(width: int = 128, height: int = 128, duration_s: float = 1.0,
                     rate: float = 2e6, blobs: int = 16, noise_fraction: float = 0.15,
                     seed: int = 0) -> EventBatch:
    """`rate * duration_s` events of moving blobs and noise on a width x height sensor."""
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s)
    t = np.sort(rng.integers(0, max(int(duration_s * 1e6), 1), n, dtype=np.int64))
    start = rng.uniform(0, 1, (blobs, 2)) * (width, height)
    speed = rng.uniform(-1, 1, (blobs, 2)) * (width, height)  # up to one sensor side a second
    sigma = rng.uniform(0.02, 0.06, blobs) * width
    blob = rng.integers(0, blobs, n)
    seconds = t / 1e6
    x = _bounce(start[blob, 0] + speed[blob, 0] * seconds, width) + rng.normal(0, sigma[blob])
    y = _bounce(start[blob, 1] + speed[blob, 1] * seconds, height) + rng.normal(0, sigma[blob])
    noise = rng.random(n) < noise_fraction
    x[noise] = rng.uniform(0, width, noise.sum())
    y[noise] = rng.uniform(0, height, noise.sum())
    x = np.clip(x, 0, width - 1).astype(np.int16)
    y = np.clip(y, 0, height - 1).astype(np.int16)
    p = rng.integers(0, 2, n, dtype=np.uint8)
    return make_events(t, x, y, p, width, height)
