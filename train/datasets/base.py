"""What every training dataset turns into: labelled samples of count tensors, in four roles.

A dataset is read into a `Benchmark`: `train` (the nets learn on it), `val` (the target task's
accuracy), `query` and `gallery` (Re-ID on identities never seen in training). Each role is a
`FrameSet`, a torch Dataset whose items are

    (frames (2 * bins, H, W) float32, target, identity label, user, recording)

`target` is the task class (-1 where the dataset has none), `identity label` is 0..K-1 over the
training people (the Re-ID net's classes; -1 outside training), `user` is the person's own
number and `recording` an index that tells samples of the same recording apart (the junk rule
of the Re-ID metric: a match from the query's own recording does not count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from anonynoise.checkpoint import Representation
from train.augment import Augmentation


@dataclass(frozen=True)
class Sample:
    """One item: where its frames come from (`source`, the loader's business) and labels."""

    source: object
    target: int
    user: int
    recording: int


class FrameSet(torch.utils.data.Dataset):
    """Samples and the function that makes their frames; frames are kept in memory when
    `cache` (the reference holds all of DVS-Gesture in RAM) and made on demand otherwise."""

    def __init__(self, samples: Sequence[Sample], load: Callable[[Sample], np.ndarray],
                 id_labels: dict[int, int] | None = None, cache: bool = True):
        self.samples = list(samples)
        self.load = load
        self.id_labels = id_labels or {}
        # keyed by sample, so subsets (query and gallery of val) share what is already made
        self._cache: dict[Sample, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def frames(self, i: int) -> torch.Tensor:
        s = self.samples[i]
        if self._cache is not None and s in self._cache:
            return self._cache[s]
        x = torch.from_numpy(np.ascontiguousarray(self.load(s), dtype=np.float32))
        if self._cache is not None:
            self._cache[s] = x
        return x

    def __getitem__(self, i: int):
        s = self.samples[i]
        return self.frames(i), s.target, self.id_labels.get(s.user, -1), s.user, s.recording

    def preload(self) -> "FrameSet":
        """Make every sample's frames now (so errors in the data surface before training)."""
        for i in range(len(self)):
            self.frames(i)
        return self

    def column(self, name: str) -> np.ndarray:
        return np.array([getattr(s, name) for s in self.samples], dtype=np.int64)

    def subset(self, keep) -> "FrameSet":
        """The samples at indices `keep`, sharing this set's loader and cache."""
        out = FrameSet([self.samples[i] for i in keep], self.load, self.id_labels, cache=False)
        out._cache = self._cache
        return out


@dataclass
class Benchmark:
    """A dataset read for training: the four roles, the label counts and how to augment."""

    name: str
    train: FrameSet
    val: FrameSet
    query: FrameSet
    gallery: FrameSet
    n_targets: int | None  # None: the dataset has no task labels (Event-ReId v2)
    representation: Representation
    augmentation: Augmentation
    notes: dict = field(default_factory=dict)

    @property
    def n_ids(self) -> int:
        return len(self.train.id_labels)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.frames(0).shape)  # type: ignore[return-value]

    def describe(self) -> str:
        parts = [f"{self.name}: train {len(self.train)}, val {len(self.val)}, "
                 f"query {len(self.query)}, gallery {len(self.gallery)}",
                 f"{self.n_ids} training identities",
                 f"{self.n_targets} classes" if self.n_targets else "no task labels",
                 self.representation.describe()]
        return "; ".join(parts)


def id_labels(users: Sequence[int]) -> dict[int, int]:
    """Identity classes 0..K-1 in the order of the users' numbers."""
    return {u: i for i, u in enumerate(sorted(set(int(u) for u in users)))}


def subsample(frameset: FrameSet, fraction: float, seed: int = 0) -> FrameSet:
    """Keep about `fraction` of the samples, at least one per user (for quick runs)."""
    if fraction >= 1:
        return frameset
    rng = np.random.default_rng(seed)
    users = frameset.column("user")
    keep = []
    for u in np.unique(users):
        members = np.flatnonzero(users == u)
        k = max(1, int(round(len(members) * fraction)))
        keep.extend(sorted(rng.choice(members, k, replace=False)))
    return frameset.subset(np.array(sorted(keep)))
