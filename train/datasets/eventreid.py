"""Event-ReId v2, after the reference's two preprocessing commands (train.reid_utils):

    ROOT/train/<ID>_c<camera>_<NNN>.txt    every chunk of the 22 training identities
    ROOT/test/<ID>_c<camera>_<NNN>.txt     every 5th chunk of the 11 test identities

Each chunk is text, one event per line: `t x y p`. As in the reference, a chunk is cropped to
its events' bounding box (x - min x, y - min y), made into 5 time bins x 2 polarities over the
whole chunk (tonic's ToFrame(n_time_bins=5) rule), zero-padded to a centred square and resized
to 304x304 (nearest for training, bilinear for evaluation). There are no task labels; the
"target" is the camera, used only by the Re-ID junk rule (a match from the query's own camera
does not count). Queries: the reference's list (one chunk per test identity and camera).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch

from anonynoise.checkpoint import Representation
from anonynoise.errors import AnonyNoiseError
from anonynoise.events import make_events
from anonynoise.represent import whole_sample_counts
from train.augment import Augmentation, random_crop, random_hflip, random_rotation, resize
from train.datasets.base import Benchmark, FrameSet, Sample, id_labels

log = logging.getLogger(__name__)

QUERY_LIST = Path(__file__).resolve().parent.parent / "reference_splits" / \
    "eventreid_query_subset_ids.txt"
SIZE = 304
CHUNK = re.compile(r"^(\d+)_c(\d+)_(\d+)\.txt$")


def read_chunk(path: Path) -> np.ndarray:
    """(N, 4) float64 t, x, y, p of a chunk file (empty chunks give (0, 4))."""
    try:
        if path.stat().st_size == 0:
            return np.zeros((0, 4))
        a = np.loadtxt(path, dtype=np.float64, usecols=(0, 1, 2, 3), ndmin=2)
    except (OSError, ValueError) as e:
        raise AnonyNoiseError(f"{path}: not an Event-ReId chunk (lines of 't x y p'): "
                              f"{str(e).splitlines()[0]}") from None
    return a


def chunk_frames(path: Path, bins: int = 5) -> np.ndarray:
    """(2 * bins, S, S) counts of a chunk: bounding-box crop, whole chunk in `bins` bins,
    centred on a square."""
    a = read_chunk(path)
    if len(a) == 0:
        raise AnonyNoiseError(f"{path}: empty chunk")
    t = a[:, 0].astype(np.int64)  # the reference's structured cast truncates
    x = a[:, 1].astype(np.int64)
    y = a[:, 2].astype(np.int64)
    x, y = x - x.min(), y - y.min()
    w, h = int(x.max()) + 1, int(y.max()) + 1
    try:
        events = make_events(t, x, y, a[:, 3].astype(np.int64) > 0, w, h)
    except AnonyNoiseError as e:
        raise AnonyNoiseError(f"{path}: {e}") from None
    counts = whole_sample_counts(events, bins).reshape(2 * bins, h, w)
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = np.zeros((2 * bins, side, side), np.float32)
    square[:, top:top + h, left:left + w] = counts
    return square


def scan_chunks(folder: Path) -> list[tuple[Path, int, int, int]]:
    """(path, identity, camera, chunk number) of the chunk files in a folder, sorted."""
    if not folder.is_dir():
        raise AnonyNoiseError(f"{folder}: no such folder (expected the layout of "
                              "`python -m train.reid_utils.split_train_test`: ROOT/train/ and "
                              "ROOT/test/ with <ID>_c<camera>_<NNN>.txt)")
    out = []
    for f in sorted(folder.iterdir()):
        m = CHUNK.match(f.name)
        if m and f.is_file() and f.stat().st_size > 0:  # the reference skips empty chunks
            out.append((f, int(m.group(1)), int(m.group(2)), int(m.group(3))))
    if not out:
        raise AnonyNoiseError(f"{folder}: no chunk files <ID>_c<camera>_<NNN>.txt")
    return out


def query_names(chunks, query_list: Path = QUERY_LIST) -> set[str]:
    names = {c[0].name for c in chunks}
    listed = set(query_list.read_text().split()) if query_list.is_file() else set()
    if listed and listed <= names:
        return listed
    log.warning("the reference's Event-ReId query list does not match this tree; using the "
                "first chunk of each test identity and camera as queries")
    first: dict[tuple[int, int], str] = {}
    for path, ident, cam, _ in chunks:
        first.setdefault((ident, cam), path.name)
    return set(first.values())


def eventreid_augmentation(size: int = SIZE) -> Augmentation:
    """The reference's RandomCrop(304, padding=304 // 12), HFlip and Rotation(15); its
    Resize(304, NEAREST) happens when the frames are made."""
    pad = size // 12
    return Augmentation((lambda x, g: random_crop(x, g, size, pad), random_hflip,
                         random_rotation), f"resize {size} nearest + crop pad {pad} + hflip + "
                                           "rotation 15")


def load_eventreid(root: str | os.PathLike, bins: int = 5, size: int = SIZE) -> Benchmark:
    root = Path(root)
    train, test = scan_chunks(root / "train"), scan_chunks(root / "test")
    overlap = {c[1] for c in train} & {c[1] for c in test}
    if overlap:
        raise AnonyNoiseError(f"{root}: identities {sorted(overlap)} are in both train and test")
    queries = query_names(test)
    recordings: dict[tuple[int, int], int] = {}

    def samples(chunks):
        return [Sample(path, cam, ident, recordings.setdefault((ident, cam), len(recordings)))
                for path, ident, cam, _ in chunks]

    def load_train(sample: Sample) -> np.ndarray:
        x = torch.from_numpy(chunk_frames(sample.source, bins))[None]
        return resize(x, size, "nearest")[0].numpy()

    def load_eval(sample: Sample) -> np.ndarray:
        x = torch.from_numpy(chunk_frames(sample.source, bins))[None]
        return resize(x, size, "bilinear")[0].numpy()

    # 304x304x10 floats are 3.7 MB a chunk: frames are made on demand, not kept
    train_set = FrameSet(samples(train), load_train, id_labels([c[1] for c in train]),
                         cache=False)
    test_samples = samples(test)
    val = FrameSet(test_samples, load_eval, cache=False)
    is_query = np.array([s.source.name in queries for s in test_samples])
    return Benchmark("reid", train_set, val, val.subset(np.flatnonzero(is_query)),
                     val.subset(np.flatnonzero(~is_query)), None,
                     Representation(bins=bins), eventreid_augmentation(size),
                     notes={"root": str(root), "target": "camera (junk rule only)"})
