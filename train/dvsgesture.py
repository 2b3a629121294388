"""DVS-Gesture in tonic's on-disk layout (the real dataset or our synthetic benchmark).

    ROOT/ibmGestureTrain/userNN_<lighting>/<class>.npy   N x 4 float: x, y, p, t in ms
    ROOT/ibmGestureTest/...

Identity is the user number, the task label the file name, as in the reference.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import DVS_GESTURE_SENSOR, from_dvsgesture_array
from anonynoise.represent import events_to_counts, whole_sample_window
from anonynoise.synth.dataset import MANIFEST

SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
_SESSION = re.compile(r"^user(\d+)_(.+)$")


@dataclass(frozen=True)
class Recording:
    path: Path
    split: str
    user: int
    lighting: str
    target: int


def scan(root: str | os.PathLike, split: str) -> list[Recording]:
    """The recordings of a split, sorted by user, lighting and class."""
    folder = Path(root) / SPLITS[split]
    if not folder.is_dir():
        raise AnonyNoiseError(f"{folder}: no such folder (expected tonic's DVS-Gesture layout: "
                              f"ROOT/{SPLITS['train']}/userNN_<lighting>/<class>.npy)")
    out = []
    for session in sorted(folder.iterdir()):
        match = _SESSION.match(session.name)
        if not session.is_dir() or not match:
            continue
        for f in sorted(session.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)):
            if f.stem.isdigit():
                out.append(Recording(f, split, int(match.group(1)), match.group(2), int(f.stem)))
    if not out:
        raise AnonyNoiseError(f"{folder}: no recordings found")
    return out


def sensor_size(root: str | os.PathLike) -> tuple[int, int]:
    """128x128 (DVS-Gesture), or the size our synthetic benchmark's manifest gives."""
    manifest = Path(root) / MANIFEST
    if manifest.is_file():
        try:
            size = int(json.loads(manifest.read_text())["config"]["size"])
        except (ValueError, KeyError, TypeError) as e:
            raise AnonyNoiseError(f"{manifest}: unreadable ({e})") from None
        return size, size
    return DVS_GESTURE_SENSOR


def whole_sample_frames(recording: Recording, bins: int = 5,
                        sensor: tuple[int, int] = DVS_GESTURE_SENSOR) -> np.ndarray:
    """The reference's representation: the whole sample in `bins` time bins, as tonic's
    ToFrame(n_time_bins) makes it, flattened to (2 * bins, H, W) float32."""
    try:
        events = from_dvsgesture_array(np.load(recording.path, allow_pickle=False), sensor)
    except (ValueError, OSError) as e:
        raise AnonyNoiseError(f"{recording.path}: not a DVS-Gesture recording ({e})") from None
    except AnonyNoiseError as e:
        raise AnonyNoiseError(f"{recording.path}: {e}") from None
    t0, t1 = whole_sample_window(events, bins)
    counts = events_to_counts(events, t0, t1, bins)
    return counts.reshape(2 * bins, events.height, events.width)


def load_split(root: str | os.PathLike, split: str, bins: int = 5):
    """(frames (N, 2*bins, H, W) float32, recordings) of a split."""
    recordings = scan(root, split)
    sensor = sensor_size(root)
    frames = np.stack([whole_sample_frames(r, bins, sensor) for r in recordings])
    return frames, recordings
