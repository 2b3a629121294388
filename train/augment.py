"""The reference's augmentations, written with torch (no torchvision), on batches.

Each function takes an (N, C, H, W) batch and a torch.Generator and draws its parameters per
sample, the same for every channel of a sample (the reference augments the whole (bins,
polarity, H, W) tensor at once, so every bin and polarity move together). Geometry uses the
nearest pixel and zeros outside, so counts stay counts.

    RandomCrop(size, padding)   -> random_crop
    RandomRotation(degrees)     -> random_rotation
    RandomHorizontalFlip(0.5)   -> random_hflip
    Resize(size, NEAREST|BILINEAR) -> resize
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def random_crop(x: torch.Tensor, generator: torch.Generator, size: int | Sequence[int],
                padding: int = 0) -> torch.Tensor:
    """Zero-pad by `padding` on every side, then cut a (h, w) window at a random place."""
    h, w = _pair(size)
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    n, _, ph, pw = x.shape
    if h > ph or w > pw:
        raise ValueError(f"crop {h}x{w} larger than the padded input {ph}x{pw}")
    top = torch.randint(0, ph - h + 1, (n,), generator=generator).tolist()
    left = torch.randint(0, pw - w + 1, (n,), generator=generator).tolist()
    return torch.stack([x[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(top, left))])


def random_rotation(x: torch.Tensor, generator: torch.Generator,
                    degrees: float = 15.0) -> torch.Tensor:
    """Rotate each sample about its centre by a uniform angle in [-degrees, degrees]."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    return _affine(x, angle, torch.zeros(n, 2))


def random_hflip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each sample left-right with probability p."""
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device,
                                                                      non_blocking=True)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def resize(x: torch.Tensor, size: int | Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize to (h, w): 'nearest' keeps counts as counts; 'bilinear' antialiases when
    shrinking, as torchvision's tensor Resize does."""
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode must be 'nearest' or 'bilinear', got {mode!r}")
    size = _pair(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


def shift_and_rotate(x: torch.Tensor, generator: torch.Generator, padding: int,
                     degrees: float = 15.0) -> torch.Tensor:
    """RandomCrop(same size, padding) then RandomRotation(degrees) in one resampling: a
    shift of up to `padding` pixels and a rotation (the DVS-Gesture recipe, and faster)."""
    n, _, h, w = x.shape
    shift = torch.randint(-padding, padding + 1, (n, 2), generator=generator).float()
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(degrees)
    return _affine(x, angle, shift)


def _affine(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid works in normalised [-1, 1] coordinates; a square sample keeps its shape
    # only if the rotation accounts for the aspect ratio.
    aspect = w / h
    theta = torch.stack([torch.stack([cos, -sin / aspect, shift[:, 0] * 2 / w], 1),
                         torch.stack([sin * aspect, cos, shift[:, 1] * 2 / h], 1)], 1)
    # non_blocking: a plain copy to a GPU waits for all its queued work, every step
    grid = F.affine_grid(theta.to(x.dtype).to(x.device, non_blocking=True), list(x.shape),
                         align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Augmentation:
    """A fixed sequence of transforms applied to training batches (thin, like tonic's)."""

    steps: tuple[Transform, ...] = ()
    name: str = "none"

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


def dvsgesture_augmentation(size: int) -> Augmentation:
    """RandomCrop(size, padding=size // 12) then RandomRotation(15): the reference's."""
    pad = max(size // 12, 1)
    return Augmentation((lambda x, g: shift_and_rotate(x, g, pad, 15.0),),
                        f"crop(pad {pad}) + rotation 15")


def see_augmentation(size: int = 180, padding: int = 15) -> Augmentation:
    """RandomCrop(180, padding=15), RandomHorizontalFlip, RandomRotation(15)."""
    return Augmentation((lambda x, g: random_crop(x, g, size, padding), random_hflip,
                         random_rotation), f"crop {size} pad {padding} + hflip + rotation 15")
