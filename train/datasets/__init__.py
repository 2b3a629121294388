"""The training datasets, each read into a Benchmark (train / val / query / gallery).

    dvsg    DVS-Gesture in tonic's layout          (train.datasets.dvsgesture)
    synth   our synthetic benchmark, same layout   (anonynoise synth dataset)
    see     SEE event frames + the reference's split metadata
    reid    Event-ReId v2 after train.reid_utils
"""

from __future__ import annotations

import os

from train.datasets.base import Benchmark, FrameSet, Sample, id_labels, subsample

DATASETS = ("dvsg", "see", "reid", "synth")


def open_dataset(name: str, path: str | os.PathLike, window_ms: float | None = None,
                 windows_per_recording: int = 4, size: int | None = None) -> Benchmark:
    """Read dataset `name` at `path` (checks the layout; frames are made on first use)."""
    from anonynoise.errors import AnonyNoiseError

    if name not in DATASETS:
        raise AnonyNoiseError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    if name in ("dvsg", "synth"):
        from train.datasets.dvsgesture import load_dvsgesture

        return load_dvsgesture(path, window_ms=window_ms,
                               windows_per_recording=windows_per_recording, name=name,
                               size=size)
    if size is not None:
        raise AnonyNoiseError(f"--size is for quick runs on dvsg or synth, not {name}")
    if window_ms is not None:
        raise AnonyNoiseError(f"--window_ms needs event streams (dvsg or synth); {name} "
                              "holds pre-cut samples")
    if name == "see":
        from train.datasets.see import load_see

        return load_see(path)
    if name == "reid":
        from train.datasets.eventreid import load_eventreid

        return load_eventreid(path)
    raise AnonyNoiseError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")


__all__ = ["Benchmark", "DATASETS", "FrameSet", "Sample", "id_labels", "open_dataset",
           "subsample"]
