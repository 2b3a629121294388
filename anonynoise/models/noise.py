"""Anonymizer nets: learned per-pixel noise from cat(x, n).

Both nets share one contract: draw n ~ N(0, noise_std^2) of the input's shape, predict a scale
s (and, in the "mean_scale" form, a mean mu) from cat(x, n), return x + s * n (+ mu) with the
same n; in the "suppress" form a deletion map d instead of the mean, and
x * clamp(1 - d, 0, 1) + s * n: the input's events scaled down (deleted, after the round trip)
where the net says. The paper net does this at full resolution (the reference's
SimpleAnonNet, with its module names, so its state dicts load as they are); the light net
predicts s at reduced resolution inside and is the one the product ships for CPUs.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

# x + s*n (the released code) | x + mu + s*n (the paper's figure) | x*keep + s*n, keep in
# [0, 1] (a learned suppression mask: events deleted where the net finds identity, issue 38)
FORMS = ("scale", "mean_scale", "suppress")
# the forms whose maps come in two kinds (scale and mean, or deletion and scale)
TWO_MAP_FORMS = ("mean_scale", "suppress")
# Below this many values, handing half the draw to another thread costs more than it saves.
PARALLEL_NOISE_MIN = 1 << 17
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def noise_generators(count: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """Generators for one window's noise: one per CPU thread that draws a part of it (torch's
    CPU normal_ runs on one core, about 3.5 ns a value: a third of the light net's time on a
    VGA window), one on a GPU (whose normal_ is parallel already). Seed each before use."""
    device = torch.device(device)
    return [torch.Generator(device=device) for _ in range(count if device.type == "cpu" else 1)]


def _noise_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="anonynoise-noise")
        return _pool


def _draw_part(draw, part: torch.Tensor, generator: torch.Generator, inference: bool) -> None:
    with torch.inference_mode(inference):
        draw(part, generator)


def fill_parallel(out: torch.Tensor, draw,
                  generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """draw(part, generator) fills each part of dense `out` (contiguous or channels-last: the
    values are i.i.d., so the layout does not matter) in place. With several
    generators, a large tensor is cut into as many contiguous parts, each drawn by its own
    generator in its own thread (torch's CPU samplers run on one core and release the GIL),
    so the result depends on the generators' seeds, not on the timing."""
    generators = list(generator) if isinstance(generator, (list, tuple)) else [generator]
    if out.is_contiguous():
        flat = out.view(-1)
    elif out.dim() == 4 and out.is_contiguous(memory_format=torch.channels_last):
        flat = out.permute(0, 2, 3, 1).reshape(-1)  # a view: NHWC memory is contiguous
    else:
        raise ValueError("fill_parallel needs a contiguous or channels-last tensor")
    if len(generators) == 1 or flat.numel() < PARALLEL_NOISE_MIN or flat.device.type != "cpu":
        draw(flat, generators[0])
        return out
    parts = flat.tensor_split(len(generators))
    inference = torch.is_inference_mode_enabled()  # thread-local: the workers get it too
    pending = [_noise_pool().submit(_draw_part, draw, part, g, inference)
               for part, g in zip(parts[1:], generators[1:])]
    draw(parts[0], generators[0])
    for future in pending:
        future.result()
    return out


def empty_dense_like(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor of x's shape, dtype and device that fill_parallel can fill: in x's
    channels-last layout when x has it (what follows then reads both alike), else
    contiguous."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last if channels_last
                            else torch.contiguous_format)


def fill_normal(out: torch.Tensor, std: float,
                generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Fill dense `out` with N(0, std^2), in parallel with several generators."""
    return fill_parallel(out, lambda part, g: part.normal_(0.0, std, generator=g), generator)


def fill_uniform(out: torch.Tensor,
                 generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Fill dense `out` with U[0, 1), in parallel with several generators."""
    return fill_parallel(out, lambda part, g: part.uniform_(generator=g), generator)


@dataclass
class AnonOutput:
    """What one forward pass drew and predicted; `anonymized` = x + mean + scale * noise."""

    anonymized: torch.Tensor
    scale: torch.Tensor
    mean: torch.Tensor | None
    noise: torch.Tensor
    keep: torch.Tensor | None = None  # the "suppress" form's share of each input value kept


class NoiseAnonNet(nn.Module):
    """Base of the anonymizer nets: noise drawing and the output formula."""

    kind = ""
    # What a checkpoint may declare for each constructor argument (checked before a net is
    # built): ("int", low, high), ("float", above, at most) or ("choice", values). Generous:
    # the project trains 10 channels (5 bins x 2 polarities; a representation has at most 64
    # bins) and noise_std 1.
    ARCH_LIMITS: dict = {"channels": ("int", 1, 256), "noise_std": ("float", 0.0, 1000.0),
                         "form": ("choice", FORMS)}

    def __init__(self, channels: int, noise_std: float, form: str):
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if channels < 1 or noise_std <= 0:
            raise ValueError("channels must be >= 1 and noise_std > 0")
        self.channels = int(channels)
        self.noise_std = float(noise_std)
        self.form = form

    @property
    def out_channels(self) -> int:
        return self.channels * (2 if self.form in TWO_MAP_FORMS else 1)

    def arch(self) -> dict:
        """Constructor arguments, in plain Python types (for checkpoints)."""
        return {"channels": self.channels, "noise_std": self.noise_std, "form": self.form}

    def predict(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """out_channels maps (scale, then mean in the mean_scale form; deletion, then scale
        in the suppress form) at the input's size, computed from cat(x, noise)."""
        raise NotImplementedError

    def output_layer(self) -> nn.Module:
        """The layer that gives the scale (and mean) maps."""
        raise NotImplementedError

    def start_as_identity(self) -> "NoiseAnonNet":
        """Zero the output layer: scale and mean 0, so the net returns its input exactly until
        training moves it. A default-initialised net is far from that on the stream's sparse
        windows: a fresh LightAnonNet doubled a 48x48 synthetic clip's events and the clean
        gesture net then agreed with its clean predictions on 34 to 44% of the clips, so an
        adversarial training began with the task already destroyed."""
        layer = self.output_layer()
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
        return self

    def draw_noise(self, x: torch.Tensor,
                   generator: torch.Generator | Sequence[torch.Generator] | None = None):
        """N(0, noise_std^2) of x's shape, device and memory format (one pass, no rescale);
        several generators draw parts of a large tensor in parallel (fill_normal)."""
        return fill_normal(empty_dense_like(x), self.noise_std, generator)

    def noise_and_maps(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                       generator: torch.Generator | Sequence[torch.Generator] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The noise (drawn unless given) and the maps predicted from cat(x, noise); the
        output is formed from them (forward_parts, or anonynoise.fused on the CPU)."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input (N, {self.channels}, H, W), got {tuple(x.shape)}")
        if noise is None:
            noise = self.draw_noise(x, generator)
        return noise, self.predict(x, noise)

    def forward_parts(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                      generator: torch.Generator | Sequence[torch.Generator] | None = None
                      ) -> AnonOutput:
        noise, out = self.noise_and_maps(x, noise, generator)
        # split, not two slices: a slice's backward zero-fills a tensor of out's size for
        # each part; split's writes the parts' gradients once (a sixth of a pipeline step)
        if self.form == "suppress":
            # 1 - d, so that the identity start (d = 0) keeps every event; clamp's gradient
            # passes at its bounds, so a zeroed output layer still learns
            deletion, scale = out.split(self.channels, 1)
            keep = (1.0 - deletion).clamp(0.0, 1.0)
            return AnonOutput(torch.addcmul(x * keep, scale, noise), scale, None, noise, keep)
        scale, mean = out.split(self.channels, 1) if self.form == "mean_scale" else (out, None)
        anonymized = torch.addcmul(x, scale, noise)  # x + scale * noise in one pass
        if mean is not None:
            anonymized = anonymized + mean
        return AnonOutput(anonymized, scale, mean, noise)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | Sequence[torch.Generator] | None = None
                ) -> torch.Tensor:
        return self.forward_parts(x, noise, generator).anonymized


def _conv3(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1)


class PaperAnonNet(NoiseAnonNet):
    """The paper's anonymizer: six 3x3 convolutions at full resolution,
    2C -> 64 -> 128 -> 256 -> 128 -> 64 -> C (about 755k parameters for C = 10)."""

    kind = "paper_anon"

    def __init__(self, channels: int = 10, noise_std: float = 1.0, form: str = "scale"):
        super().__init__(channels, noise_std, form)
        # Module names as the reference's SimpleAnonNet, so its .pth files load unchanged.
        self.convs1 = nn.Sequential(_conv3(2 * channels, 64), nn.ReLU(), _conv3(64, 128), nn.ReLU())
        self.convs2 = nn.Sequential(_conv3(128, 256), nn.ReLU(), _conv3(256, 128), nn.ReLU())
        self.convs3 = nn.Sequential(_conv3(128, 64), nn.ReLU(), _conv3(64, self.out_channels))

    def predict(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.convs3(self.convs2(self.convs1(torch.cat((x, noise), dim=1))))

    def output_layer(self) -> nn.Module:
        return self.convs3[-1]


class _ConvReLU(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2), nn.ReLU(inplace=True))


SAMPLINGS = ("stride", "pool")


class LightAnonNet(NoiseAnonNet):
    """The product's anonymizer for CPUs: a small U-Net on cat(x, n).

    The encoder reads cat(x, n) at half resolution and goes down to 1/8, the decoder comes
    back to 1/2 with skips, and the head gives a scale (and mean) for every full-resolution
    pixel, so the noise, drawn per pixel, is per pixel at the output. Any input size: the input
    is padded to a multiple of 8 inside and the output cropped. About 620 M multiply-adds for
    a 480x640 window (the paper net: 225 G).

    sampling, how full resolution is read and written:
      "stride"  a 2x2 stride-2 convolution in, a 2x2 stride-2 transposed convolution out
                (the first shipped model): each pixel of a 2x2 block has weights of its own,
                and the trained net piles its events on one row and column parity, a grid
                in every picture (anonynoise.artefacts), and on ON events.
      "pool"    2x2 average pooling then a 3x3 convolution in, a 1x1 convolution at half
                resolution then nearest upsampling out: every pixel of a block is treated
                alike. The maps are one per time bin, shared by both polarities and split
                between them by the window's own ON / OFF balance, so the noise keeps the
                scene's polarity share.
    """

    kind = "light_anon"
    MULTIPLE = 8
    # the project trains widths 8 and 16; 1024 is about 150 M parameters in `mid` alone
    ARCH_LIMITS = {**NoiseAnonNet.ARCH_LIMITS, "width": ("int", 1, 1024),
                   "sampling": ("choice", SAMPLINGS)}

    def __init__(self, channels: int = 10, noise_std: float = 1.0, form: str = "scale",
                 width: int = 16, sampling: str = "stride"):
        super().__init__(channels, noise_std, form)
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if sampling == "pool" and channels % 2:
            raise ValueError("sampling 'pool' shares its maps between two polarities: the "
                             f"channels (bins x 2) must be even, got {channels}")
        self.width = int(width)
        self.sampling = sampling
        w = self.width
        if sampling == "stride":
            self.enc1 = nn.Conv2d(2 * channels, w, kernel_size=2, stride=2)  # 1/2
        else:
            self.enc1 = nn.Conv2d(2 * channels, w, kernel_size=3, padding=1)  # on the pooled
        self.enc2 = _ConvReLU(w, 2 * w, stride=2)                         # 1/4
        self.enc3 = _ConvReLU(2 * w, 4 * w, stride=2)                     # 1/8
        self.mid = _ConvReLU(4 * w, 4 * w)                                # 1/8
        self.dec2 = _ConvReLU(4 * w + 2 * w, 2 * w, kernel=1)             # 1/4, after upsampling
        self.dec1 = _ConvReLU(2 * w + w, w, kernel=1)                     # 1/2
        if sampling == "stride":
            self.head = nn.ConvTranspose2d(w, self.out_channels, kernel_size=2, stride=2)
        else:  # one map per bin (and kind), at 1/2: upsampled and split by polarity
            self.head = nn.Conv2d(w, self.out_channels // 2, kernel_size=1)

    def arch(self) -> dict:
        return {**super().arch(), "width": self.width, "sampling": self.sampling}

    def output_layer(self) -> nn.Module:
        return self.head

    def predict(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.MULTIPLE, (-w) % self.MULTIPLE
        if pad_h or pad_w:
            x, noise = F.pad(x, (0, pad_w, 0, pad_h)), F.pad(noise, (0, pad_w, 0, pad_h))
        c = self.channels
        weight = self.enc1.weight
        if self.sampling == "stride":
            # enc1 on cat(x, n) without building the full-resolution concatenation: the
            # convolution of a concatenation is the sum of the convolutions of its parts.
            e1 = F.relu(F.conv2d(x, weight[:, :c], self.enc1.bias, stride=2)
                        + F.conv2d(noise, weight[:, c:], stride=2))
        else:
            e1 = F.relu(F.conv2d(F.avg_pool2d(x, 2), weight[:, :c], self.enc1.bias, padding=1)
                        + F.conv2d(F.avg_pool2d(noise, 2), weight[:, c:], padding=1))
        e2 = self.enc2(e1)
        e3 = self.mid(self.enc3(e2))
        d2 = self.dec2(torch.cat((F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2), 1))
        d1 = self.dec1(torch.cat((F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1), 1))
        out = self.head(d1)
        if self.sampling == "pool":
            if self.form == "suppress":
                # the deletion map is a share, the same for both polarities; the scale's
                # noise splits between them as the scene's events do
                deletion, scale = out.split(self.channels // 2, 1)
                out = torch.cat((deletion.repeat_interleave(2, 1), by_polarity(scale, x)), 1)
            else:
                out = by_polarity(out, x)
            out = F.interpolate(out, scale_factor=2.0, mode="nearest")
        # crop only when padded: even a full-size slice zero-fills a copy in the backward
        return out[..., :h, :w] if pad_h or pad_w else out


def by_polarity(maps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-bin maps (N, K * bins, h, w) -> per-channel maps (N, K * bins * 2, h, w) in the
    channel order (bin, polarity), each bin's map times 2 x its polarity's share of the
    window's events (1 and 1 for an empty window): the noise a map adds splits between ON
    and OFF as the scene's events do. The share carries no gradient (it is the input's)."""
    n, kb, h, w = maps.shape
    counts = x.detach().clamp(min=0).reshape(n, -1, 2, *x.shape[-2:]).sum((1, 3, 4))  # (N, 2)
    total = counts.sum(1, keepdim=True)
    factor = torch.where(total > 0, 2 * counts / total.clamp(min=1e-12),
                         torch.ones_like(counts))  # (N, 2)
    split = maps.reshape(n, kb, 1, h, w) * factor.reshape(n, 1, 2, 1, 1).to(maps.dtype)
    return split.reshape(n, kb * 2, h, w)
