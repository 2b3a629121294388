"""Random numbers inside numba kernels: xoshiro256** on a uint64[4] state array.

A state is seeded from OS entropy unless a seed is given (tests, and the synthetic data,
which must be reproducible). The kernels take the state array and advance it in place, so one
state is never shared between threads.
"""

from __future__ import annotations

import os

import numba
import numpy as np

_U64 = np.uint64


def rng_state(seed: int | None = None) -> np.ndarray:
    """A fresh xoshiro256** state: OS entropy by default, or derived from `seed`."""
    if seed is None:
        state = np.frombuffer(os.urandom(32), dtype=np.uint64).copy()
    else:
        state = np.random.SeedSequence(int(seed)).generate_state(4, dtype=np.uint64)
    if not state.any():  # the one state xoshiro cannot leave
        state[0] = 1
    return state


@numba.njit(cache=True, nogil=True, inline="always")
def _rotl(v, k):
    return (v << _U64(k)) | (v >> _U64(64 - k))


@numba.njit(cache=True, nogil=True, inline="always")
def uniform(s):
    """A double in [0, 1), advancing the state s."""
    result = _rotl(s[1] * _U64(5), 7) * _U64(9)
    tmp = s[1] << _U64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= tmp
    s[3] = _rotl(s[3], 45)
    return (result >> _U64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True, inline="always")
def exponential(s, rate):
    """An exponential draw with the given rate (events per unit time)."""
    return -np.log(1.0 - uniform(s)) / rate


@numba.njit(cache=True, nogil=True, inline="always")
def normal(s):
    """A standard normal draw (Box-Muller, one value per call)."""
    u1 = 1.0 - uniform(s)  # (0, 1]: log stays finite
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * uniform(s))
