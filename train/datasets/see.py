"""SEE (single-eye emotion recognition, DAVIS346 event frames), as the reference reads it.

    ROOT/event/<emotion>/<sequence folder>/<frame>.jpg

The splits come from the reference's metadata (train/reference_splits/see_metadata.json:
`train`, `val`, `query`, `gallery`, each a list of {filename, user_id, target_id}). Each
frame is an image where events are pure white (1.0) or pure black (0.0); the two masks are the
two "polarity" planes (white first, as the reference concatenates them). The frames of a
sequence, in file-name order (numbers compared as numbers; the reference lists them unsorted, which on most file systems
scrambles time), are cut into 5 consecutive groups and summed: (5 bins x 2, H, W).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from anonynoise.checkpoint import Representation
from anonynoise.errors import AnonyNoiseError
from train.augment import see_augmentation
from train.datasets.base import Benchmark, FrameSet, Sample, id_labels

METADATA = Path(__file__).resolve().parent.parent / "reference_splits" / "see_metadata.json"
ROLES = ("train", "val", "query", "gallery")
CROP = 180


def read_metadata(path: Path = METADATA) -> dict[str, list[dict]]:
    try:
        data = json.loads(Path(path).read_text())
        for role in ROLES:
            for entry in data[role]:
                entry["filename"], entry["user_id"], entry["target_id"]  # noqa: B018
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AnonyNoiseError(f"{path}: not SEE split metadata ({type(e).__name__}: {e})") \
            from None
    return data


def _natural(path: Path):
    """Sort key: 2.jpg before 10.jpg (zero-padded names sort the same either way)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def sequence_frames(folder: Path, bins: int = 5) -> np.ndarray:
    """(2 * bins, H, W) float32 counts of one sequence folder of event-frame images."""
    files = sorted((f for f in folder.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png")),
                   key=_natural)
    if len(files) < bins:
        raise AnonyNoiseError(f"{folder}: {len(files)} frames, need at least {bins}")
    planes = []
    for f in files[: len(files) // bins * bins]:
        try:
            with Image.open(f) as im:
                img = np.asarray(im.convert("L") if im.mode not in ("L", "1") else im)
        except (UnidentifiedImageError, OSError) as e:
            raise AnonyNoiseError(f"{f}: unreadable image ({e})") from None
        white = img == (True if img.dtype == bool else 255)
        black = img == (False if img.dtype == bool else 0)
        planes.append(np.stack([white, black]))
    if len({p.shape for p in planes}) != 1:
        raise AnonyNoiseError(f"{folder}: frames of different sizes")
    x = np.stack(planes).astype(np.float32)  # (F, 2, H, W)
    x = x.reshape(bins, -1, *x.shape[1:]).sum(axis=1)
    return x.reshape(2 * bins, *x.shape[-2:])


def load_see(root: str | os.PathLike, metadata: str | os.PathLike = METADATA,
             bins: int = 5) -> Benchmark:
    root = Path(root)
    if not (root / "event").is_dir():
        raise AnonyNoiseError(f"{root}: no event/ folder (expected SEE's layout: "
                              "ROOT/event/<emotion>/<sequence>/<frame>.jpg)")
    meta = read_metadata(Path(metadata))
    emotions = sorted({e["target_id"] for e in meta["train"]})
    target_of = {name: i for i, name in enumerate(emotions)}
    recording_of: dict[str, int] = {}
    missing = []
    roles = {}
    for role in ROLES:
        samples = []
        for e in meta[role]:
            folder = root / "event" / e["target_id"] / e["filename"]
            if not folder.is_dir():
                missing.append(str(folder))
                continue
            if e["target_id"] not in target_of:
                raise AnonyNoiseError(f"{folder}: emotion {e['target_id']!r} not in training")
            rec = recording_of.setdefault(e["filename"], len(recording_of))
            samples.append(Sample(folder, target_of[e["target_id"]], int(e["user_id"]), rec))
        roles[role] = samples
    if missing:
        raise AnonyNoiseError(f"{root}: {len(missing)} sequences of the split metadata are "
                              f"missing, e.g. {missing[0]}")
    ids = id_labels([s.user for s in roles["train"]])

    def load(sample: Sample) -> np.ndarray:
        return sequence_frames(sample.source, bins)

    val = FrameSet(roles["val"], load)
    return Benchmark("see", FrameSet(roles["train"], load, ids), val,
                     FrameSet(roles["query"], load), FrameSet(roles["gallery"], load),
                     len(emotions), Representation(bins=bins), see_augmentation(CROP, CROP // 12),
                     notes={"root": str(root), "emotions": emotions})
