"""What a consumer of the stream can build: clips re-binned from anonymized windows.

The stream anonymizes each window on its own, with fresh noise, and sends events. A consumer
that wants to recognise a gesture (or a person) re-bins the events of a few seconds into a
clip. Bin edges of a clip that fall on window bounds make the composition exact: a clip bin
is the sum, per polarity, of the round-tripped windows inside it, so the study can anonymize
per window and judge per clip without going through event lists.

    recording_windows   a recording cut into windows as the stream cuts it (uint8 counts)
    compose_clips       windows -> clips of `clip_bins` bins (the consumer's re-binning)
    anonymized_clips    windows -> anonymizer per window -> round trip -> clips (no gradient)
    stream_windows      an anonymizer's output -> what the stream sends (cap, round trip)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from anonynoise.anonymizer import DEFAULT_MAX_EVENT_RATIO, cap_event_rate
from anonynoise.events import EventBatch
from anonynoise.models.noise import noise_generators
from anonynoise.represent import events_to_counts
from train.event_domain import event_round_trip, straight_through_round_trip


def recording_windows(events: EventBatch, window_us: int, n_windows: int,
                      bins: int = 5, t0: int | None = None) -> np.ndarray:
    """(n_windows, 2 * bins, H, W) uint8: the windows [t0 + k W, t0 + (k + 1) W) from t0
    (default: the first event), each in `bins` bins x 2 polarities (channel = bin * 2 +
    polarity, as the runtime). Counts above 255 saturate (none at the sizes this is used
    for)."""
    if t0 is None:
        t0 = int(events.t[0]) if len(events) else 0
    counts = events_to_counts(events, t0, t0 + n_windows * window_us, n_windows * bins)
    counts = np.minimum(counts, 255).astype(np.uint8)
    return counts.reshape(n_windows, 2 * bins, events.height, events.width)


def compose_clips(windows: torch.Tensor, clip_bins: int = 5) -> torch.Tensor:
    """(N, n_windows, 2 * bins, H, W) -> (N, 2 * clip_bins, H, W): each clip bin sums, per
    polarity, the windows of its share (n_windows must divide into clip_bins)."""
    n, w, c, h, wd = windows.shape
    if w % clip_bins:
        raise ValueError(f"{w} windows do not divide into {clip_bins} clip bins")
    per_pol = windows.reshape(n, w, c // 2, 2, h, wd).sum(2)           # (N, w, 2, H, W)
    return per_pol.reshape(n, clip_bins, w // clip_bins, 2, h, wd).sum(2).reshape(
        n, 2 * clip_bins, h, wd)


def study_generators(device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One generator per torch thread (parallel draws on the CPU: torch draws on one core),
    seeded from torch's global generator: fresh draws on every call that a study's
    torch.manual_seed still makes reproducible."""
    generators = noise_generators(torch.get_num_threads(), device)
    for g in generators:
        g.manual_seed(int(torch.randint(1 << 62, ())))
    return generators


def flat_windows(windows: torch.Tensor) -> torch.Tensor:
    """(N, n_windows, C, H, W) -> (N * n_windows, C, H, W), the anonymizer's batch of
    windows; channels-last on the CPU, as the runtime: the light net is faster so (48x48
    windows: 99 instead of 134 ms a clip for a pipeline step)."""
    flat = windows.reshape(-1, *windows.shape[2:])
    if flat.device.type == "cpu":
        flat = flat.contiguous(memory_format=torch.channels_last)
    return flat


def anonymize_windows(anon: torch.nn.Module, windows: torch.Tensor,
                      straight_through: bool = False,
                      max_event_ratio: float | None = DEFAULT_MAX_EVENT_RATIO,
                      generator: torch.Generator | Sequence[torch.Generator] | None = None
                      ) -> torch.Tensor:
    """(N, n_windows, C, H, W) float -> the same, each window anonymized with its own noise,
    capped in events as the runtime caps it, and sent through the events round trip
    (straight-through gradient if asked)."""
    flat = flat_windows(windows)
    return stream_windows(anon(flat, generator=generator), flat, straight_through,
                          max_event_ratio, generator).reshape(windows.shape)


def stream_windows(anonymized: torch.Tensor, windows: torch.Tensor,
                   straight_through: bool = False,
                   max_event_ratio: float | None = DEFAULT_MAX_EVENT_RATIO,
                   generator: torch.Generator | Sequence[torch.Generator] | None = None,
                   gradient: str = "identity") -> torch.Tensor:
    """What the stream sends of the anonymizer's output for these (flat) windows: capped in
    events as the runtime caps it, then the events round trip (straight-through: its
    backward by `gradient`, train.event_domain.ROUND_TRIP_GRADIENTS)."""
    out = cap_event_rate(anonymized, windows, max_event_ratio)
    return straight_through_round_trip(out, generator, gradient) if straight_through \
        else event_round_trip(out, generator)


@torch.no_grad()
def anonymized_clips(anon: torch.nn.Module, windows: np.ndarray, clip_bins: int = 5,
                     batch: int = 8, device: str | torch.device = "cpu") -> np.ndarray:
    """(N, n_windows, C, H, W) uint8 -> (N, 2 * clip_bins, H, W) float32 clips of the
    anonymized, round-tripped windows (a fresh noise draw every call)."""
    anon.eval()
    generators = study_generators(device)
    out = []
    for k in range(0, len(windows), batch):
        x = torch.from_numpy(windows[k:k + batch]).to(device).float()
        out.append(compose_clips(anonymize_windows(anon, x, generator=generators),
                                 clip_bins).cpu())
    return torch.cat(out).numpy()


def clean_clips(windows: np.ndarray, clip_bins: int = 5, batch: int = 64) -> np.ndarray:
    """(N, n_windows, C, H, W) uint8 -> (N, 2 * clip_bins, H, W) float32 clean clips."""
    # np.array: the windows may be a read-only memory map, which torch warns about
    return torch.cat([compose_clips(torch.from_numpy(np.array(windows[k:k + batch])).float(),
                                    clip_bins) for k in range(0, len(windows), batch)]).numpy()
