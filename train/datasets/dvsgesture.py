"""DVS-Gesture in tonic's on-disk layout (the real dataset or our synthetic benchmark).

    ROOT/ibmGestureTrain/userNN_<lighting>/<class>.npy   N x 4 float: x, y, p, t in ms
    ROOT/ibmGestureTest/...

Identity is the user number, the task label the file name, as in the reference. Train = the
train folder; val, query and gallery come from the test folder: the query recordings are the
reference's list (train/reference_splits/dvsg_query_subset_ids.txt) when the tree is the real
DVS-Gesture, and otherwise (our synthetic benchmark) each test person's first session.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from anonynoise.checkpoint import Representation
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import DVS_GESTURE_SENSOR, EventBatch, from_dvsgesture_array, make_events
from anonynoise.represent import events_to_counts, whole_sample_counts
from anonynoise.synth.dataset import MANIFEST
from train.augment import dvsgesture_augmentation
from train.datasets.base import Benchmark, FrameSet, Sample, id_labels

SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
N_CLASSES = 11
QUERY_LIST = Path(__file__).resolve().parent.parent / "reference_splits" / \
    "dvsg_query_subset_ids.txt"
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
        raise AnonyNoiseError(f"{folder}: no recordings found (expected "
                              "userNN_<lighting>/<class>.npy)")
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


def read_recording(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise AnonyNoiseError(f"{path}: not a DVS-Gesture recording ({e})") from None


def _events(path: Path, sensor: tuple[int, int], array: np.ndarray | None = None) -> EventBatch:
    try:
        return from_dvsgesture_array(read_recording(path) if array is None else array, sensor)
    except AnonyNoiseError as e:
        raise AnonyNoiseError(f"{path}: {e}") from None


def whole_sample_frames(recording: Recording, bins: int = 5,
                        sensor: tuple[int, int] = DVS_GESTURE_SENSOR,
                        reference_ms: bool = True,
                        events_filter: Callable[[EventBatch], EventBatch] | None = None
                        ) -> np.ndarray:
    """The reference's representation: the whole sample in `bins` time bins, as tonic's
    ToFrame(n_time_bins) makes it, flattened to (2 * bins, H, W) float32.

    With `reference_ms` the timestamps are first truncated to whole ms, as the reference does
    when it casts tonic's float ms column to int64 (bin edges then fall on whole ms).
    `events_filter` (tonic's transform argument) changes the events before they are binned:
    it gets them in µs, as a stream has them, and the truncation follows it."""
    array = read_recording(recording.path)
    events = _events(recording.path, sensor, array)
    if events_filter is not None:
        events = events_filter(events)
        if reference_ms:  # whole ms, as int64(float ms) makes them: t >= 0, so floor
            events = make_events(events.t // 1000, events.x, events.y, events.p,
                                 events.width, events.height)
    elif reference_ms:
        events = make_events(np.asarray(array[:, 3]).astype(np.int64), events.x, events.y,
                             events.p, events.width, events.height)
    return whole_sample_counts(events, bins).reshape(2 * bins, events.height, events.width)


def window_frames(recording: Recording, window_us: int, position: float | None, bins: int = 5,
                  sensor: tuple[int, int] = DVS_GESTURE_SENSOR) -> np.ndarray:
    """One window of `window_us` as the stream cuts it, `bins` bins, (2 * bins, H, W).

    `position` in [0, 1] places the window between the recording's first event and its last
    possible start; None draws it at random (torch's generator, so seeding and DataLoader
    workers behave)."""
    events = _events(recording.path, sensor)
    first = int(events.t[0]) if len(events) else 0
    last = int(events.t[-1]) if len(events) else 0
    span = max(last - first - window_us, 0)
    if position is None:
        start = first + int(torch.randint(0, span + 1, (1,)).item())
    else:
        start = first + int(round(span * position))
    counts = events_to_counts(events, start, start + window_us, bins)
    return counts.reshape(2 * bins, events.height, events.width)


def query_recordings(test: list[Recording], query_list: Path = QUERY_LIST) -> set[int]:
    """Indices of the query recordings: the reference's list where every file in it exists
    in this tree, else each test person's first session (our synthetic benchmark)."""
    index = {(r.path.parent.name, r.path.name): i for i, r in enumerate(test)}
    listed = []
    if query_list.is_file():
        for line in query_list.read_text().split("\n"):
            parts = line.split()
            if len(parts) == 3:
                p = Path(parts[2])
                listed.append((p.parent.name, p.name))
    if listed and all(key in index for key in listed):
        return {index[key] for key in listed}
    first_session: dict[int, str] = {}
    for r in test:
        first_session.setdefault(r.user, r.lighting)
    return {i for i, r in enumerate(test) if r.lighting == first_session[r.user]}


def shrink(frames: np.ndarray, size: int | None) -> np.ndarray:
    """(C, H, W) counts at size x size: summed over blocks when the size divides (counts stay
    counts of the same events), else the nearest pixel."""
    c, h, w = frames.shape
    if size is None or (h, w) == (size, size):
        return frames
    if h % size == 0 and w % size == 0:
        return frames.reshape(c, size, h // size, size, w // size).sum(axis=(2, 4))
    ys = (np.arange(size) * h) // size
    xs = (np.arange(size) * w) // size
    return frames[:, ys][:, :, xs]


def load_dvsgesture(root: str | os.PathLike, bins: int = 5, window_ms: float | None = None,
                    windows_per_recording: int = 4, name: str = "dvsg",
                    size: int | None = None) -> Benchmark:
    """DVS-Gesture (or the synthetic benchmark) as a Benchmark.

    Whole samples by default (the reference). With `window_ms`, samples are windows as the
    stream cuts them: training draws `windows_per_recording` random windows of every recording
    per epoch, evaluation uses that many evenly spaced ones."""
    root = Path(root)
    if not root.is_dir():
        hint = (" (make one with `anonynoise synth dataset OUT`; its root is OUT/DVSGesture)"
                if name == "synth" else "")
        raise AnonyNoiseError(f"{root}: no such folder (the DVS-Gesture root holds "
                              f"{SPLITS['train']}/ and {SPLITS['test']}/){hint}")
    if name == "synth" and not (root / MANIFEST).is_file() and \
            (root / "DVSGesture" / MANIFEST).is_file():
        root = root / "DVSGesture"  # the folder `anonynoise synth dataset OUT` was given
    if name == "synth" and not (root / MANIFEST).is_file():
        raise AnonyNoiseError(f"{root}: not a synthetic benchmark (no {MANIFEST}); for the real "
                              "DVS-Gesture use --dataset dvsg")
    if size is not None and size < 8:
        raise AnonyNoiseError(f"--size {size}: too small (at least 8)")
    train, test = scan(root, "train"), scan(root, "test")
    sensor = sensor_size(root)
    ids = id_labels([r.user for r in train])
    overlap = {r.user for r in test} & set(ids)
    if overlap:
        raise AnonyNoiseError(f"{root}: users {sorted(overlap)} are in both splits; Re-ID needs "
                              "disjoint train and test people")
    queries = query_recordings(test)
    window_us = None if window_ms is None else int(round(window_ms * 1000))
    if window_us is not None and window_us <= 0:
        raise AnonyNoiseError(f"window_ms must be positive, got {window_ms}")
    recordings = {"train": train, "test": test}

    def load(sample: Sample) -> np.ndarray:
        split, k, position = sample.source
        rec = recordings[split][k]
        if window_us is None:
            return shrink(whole_sample_frames(rec, bins, sensor), size)
        return shrink(window_frames(rec, window_us, position, bins, sensor), size)

    def samples(split: str, keep, positions):
        return [Sample((split, k, pos), r.target, r.user, k + (0 if split == "train" else
                                                                  len(train)))
                for k, r in enumerate(recordings[split]) if keep(k) for pos in positions]

    if window_us is None:
        train_pos, eval_pos = [None], [None]
    else:
        train_pos = [None] * windows_per_recording
        eval_pos = list(np.linspace(0, 1, windows_per_recording)) if windows_per_recording > 1 \
            else [0.5]
    random_train = window_us is not None
    frames_train = FrameSet(samples("train", lambda k: True, train_pos), load, ids,
                            cache=not random_train)
    val = FrameSet(samples("test", lambda k: True, eval_pos), load)
    is_query = np.array([s.source[1] in queries for s in val.samples])
    query, gallery = val.subset(np.flatnonzero(is_query)), val.subset(np.flatnonzero(~is_query))
    w, h = sensor if size is None else (size, size)
    representation = Representation(bins=bins, width=w, height=h, window_us=window_us)
    synthetic = (root / MANIFEST).is_file()
    return Benchmark(name, frames_train, val, query, gallery, N_CLASSES, representation,
                     dvsgesture_augmentation(h),
                     notes={"root": str(root), "synthetic": synthetic,
                            "query": "first session of each test person" if synthetic or
                            len(queries) != 60 else "the reference's query list"})


def load_split(root: str | os.PathLike, split: str, bins: int = 5,
               events_filter: Callable[[EventBatch], EventBatch] | None = None):
    """(frames (N, 2*bins, H, W) float32, recordings) of a split, whole samples."""
    recordings = scan(root, split)
    sensor = sensor_size(root)
    frames = np.stack([whole_sample_frames(r, bins, sensor, events_filter=events_filter)
                       for r in recordings])
    return frames, recordings
