"""Transforms in tonic's idiom: callables on a structured event array, for
`tonic.transforms.Compose` (tonic need not be installed to use them).

    from tonic.transforms import Compose, ToFrame
    from anonynoise.transforms import Anonymize

    transform = Compose([Anonymize(sensor_size=(128, 128, 2)),
                         ToFrame(sensor_size=(128, 128, 2), n_time_bins=5)])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Anonymize:
    """Anonymize a sample's events, window by window, as the stream would (each sample is a
    new stream: the privacy filters draw a new warp). sensor_size: tonic's (W, H, P) or
    (W, H). model, filters, window_us: as anonynoise.load's. device: "cpu" by default, as
    tonic's transforms run in DataLoader workers on the CPU.

    Returns tonic's structured array (x, y, t, p), sorted by time, timestamps as the input's.
    The anonymizer loads on first use and is not pickled: each DataLoader worker loads its
    own."""

    sensor_size: tuple
    model: Any = None
    filters: Any = "model"
    device: str = "cpu"
    window_us: int | None = None
    _anonymizer: Any = field(default=None, init=False, repr=False, compare=False)

    @property
    def anonymizer(self):
        if self._anonymizer is None:
            from anonynoise.loading import load

            self._anonymizer = load(self.model, self.device, self.filters,
                                    window_us=self.window_us)
        return self._anonymizer

    def __call__(self, events):
        return self.anonymizer(events, sensor_size=self.sensor_size)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_anonymizer": None}
