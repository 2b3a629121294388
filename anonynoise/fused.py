"""The anonymizer's output on the CPU in one numba pass.

After the net has predicted its maps, torch would make five passes over the window: x + scale *
noise, + mean, the event-rate cap's two masses, the finiteness check, and the copy from the
net's channels-last layout to the (bins, 2, H, W) array the event sampler reads (about 1 ms
of a 128x128 window's 8). This kernel reads each input once and writes the output once; it
computes exactly the same quantities (NoiseAnonNet.forward, then cap_event_rate), and a GPU
runtime keeps the torch ops.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

# One signature, any strides (channels-last or not, cropped or not): compiled once.
_HWC = numba.float32[:, :, :]


@numba.njit(numba.types.Tuple((numba.float64, numba.float64, numba.int64))(
    _HWC, _HWC, _HWC, _HWC, numba.boolean),
    cache=True, nogil=True)
def _anonymized(x, maps, noise, out, with_mean):
    """out = x + scale * noise (+ mean) with scale = maps[..., :C], mean = maps[..., C:],
    all (H, W, C) views; returns (positive mass of out, positive mass of x, number of
    non-finite values of out)."""
    height, width, channels = x.shape
    zero = np.float32(0.0)
    out_mass = 0.0
    in_mass = 0.0
    bad = 0
    for i in range(height):
        for j in range(width):
            # a pixel's few channels summed in float32 first: short dependency chains
            out_sum = zero
            in_sum = zero
            pixel_bad = 0
            for c in range(channels):
                v = x[i, j, c]
                y = v + maps[i, j, c] * noise[i, j, c]
                if with_mean:
                    y += maps[i, j, channels + c]
                out[i, j, c] = y
                pixel_bad += (y - y) != zero  # NaN and +-inf only
                out_sum += max(y, zero)
                in_sum += max(v, zero)
            out_mass += out_sum
            in_mass += in_sum
            bad += pixel_bad
    return out_mass, in_mass, bad


def _hwc(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) tensor -> its (H, W, C) numpy view (no copy)."""
    return t[0].permute(1, 2, 0).numpy()


FUSED_FORMS = ("scale", "mean_scale")  # the rest (the suppress study) go through torch


def anonymized_output(x: torch.Tensor, maps: torch.Tensor, noise: torch.Tensor, form: str,
                      max_event_ratio: float | None) -> tuple[np.ndarray, int]:
    """x + scale * noise (+ mean) for one CPU window, capped like cap_event_rate, as a
    contiguous (C, H, W) float32 array, and its number of non-finite values (the caller
    refuses a window that has any).

    x and noise are (1, C, H, W), maps (1, C or 2C, H, W) as the net's predict gives them
    ("scale" or "mean_scale" form), float32 on the CPU, any strides."""
    channels, height, width = x.shape[1:]
    out = np.empty((channels, height, width), np.float32)
    out_hwc = out.transpose(1, 2, 0)
    out_mass, in_mass, bad = _anonymized(_hwc(x), _hwc(maps), _hwc(noise), out_hwc,
                                         form == "mean_scale")
    if bad:
        return out, int(bad)
    if max_event_ratio is not None and out_mass > max_event_ratio * in_mass:
        out *= np.float32(max_event_ratio * in_mass / max(out_mass, 1e-12))
    return out, 0
