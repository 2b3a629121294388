"""The synthetic benchmark on disk, in tonic's DVS-Gesture layout.

    OUT/DVSGesture/ibmGestureTrain/user01_<lighting>/<class>.npy    (train people)
    OUT/DVSGesture/ibmGestureTest/user31_<lighting>/<class>.npy     (test people)

Each .npy is float64 N x 4 with columns x, y, p, t in ms with a µs fraction, as tonic's
DVS-Gesture files, so tonic's DVSGesture class and our loader read it unchanged. Train and
test people are disjoint, as in the real split. Each user has `reps` sessions, each under
another lighting, each with all 11 gestures. Deterministic for a seed: every recording draws
from its own seed, so the result does not depend on the number of worker processes.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from anonynoise.errors import AnonyNoiseError
from anonynoise.events import to_dvsgesture_array
from anonynoise.synth.gestures import GESTURES
from anonynoise.synth.people import ALL_CUES, LIGHTINGS, sample_person, sample_variation
from anonynoise.synth.scene import DEFAULT_FPS, record_gesture

TRAIN_FOLDER, TEST_FOLDER = "ibmGestureTrain", "ibmGestureTest"
MANIFEST = "anonynoise-synth.json"


@dataclass(frozen=True)
class DatasetConfig:
    users: int = 40
    test_users: int = 10
    reps: int = 2
    seed: int = 0
    size: int = 128
    duration_s: float = 3.0
    fps: int = DEFAULT_FPS
    cues: tuple[str, ...] = ALL_CUES

    def check(self) -> None:
        if not 0 < self.test_users < self.users:
            raise AnonyNoiseError(f"test_users must be between 1 and users - 1 "
                                  f"({self.users - 1}), got {self.test_users}",
                                  parameter="test_users")
        if not 1 <= self.reps <= len(LIGHTINGS):
            raise AnonyNoiseError(f"reps must be between 1 and {len(LIGHTINGS)} (one lighting "
                                  f"each), got {self.reps}", parameter="reps")
        if not 16 <= self.size <= 1024:
            raise AnonyNoiseError(f"size must be between 16 and 1024, got {self.size}",
                                  parameter="size")
        if not 0.2 <= self.duration_s <= 60:
            raise AnonyNoiseError(f"duration_s must be between 0.2 and 60 s, got "
                                  f"{self.duration_s}", parameter="duration_s")


def generator_fingerprint() -> str:
    """A hash of the generator's source: recordings made by different code differ."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name not in ("dataset.py", "picture.py", "__init__.py"):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0])


def person_of(config: DatasetConfig, user: int):
    return sample_person(np.random.default_rng(_seed(config.seed, user, 1)), config.cues)


def sessions_of(config: DatasetConfig, user: int) -> list[str]:
    """The lightings of a user's sessions (distinct, drawn per user)."""
    rng = np.random.default_rng(_seed(config.seed, user, 2))
    return [str(name) for name in rng.choice(list(LIGHTINGS), size=config.reps, replace=False)]


def jobs(config: DatasetConfig) -> list[tuple[str, int, str, int]]:
    """(split folder, user, lighting, gesture) of every recording; users are 1-based."""
    train_users = config.users - config.test_users
    out = []
    for user in range(1, config.users + 1):
        folder = TRAIN_FOLDER if user <= train_users else TEST_FOLDER
        for lighting in sessions_of(config, user):
            for gesture in range(len(GESTURES)):
                out.append((folder, user, lighting, gesture))
    return out


def record(config: DatasetConfig, user: int, lighting: str, gesture: int):
    """The events of one recording of the benchmark."""
    rep = list(LIGHTINGS).index(lighting)
    variation = sample_variation(np.random.default_rng(_seed(config.seed, user, 3, rep, gesture)),
                                 lighting)
    return record_gesture(person_of(config, user), gesture, variation, width=config.size,
                          height=config.size, duration_s=config.duration_s, fps=config.fps,
                          seed=_seed(config.seed, user, 4, rep, gesture))


def _write_one(args) -> int:
    config, root, (folder, user, lighting, gesture) = args
    events = record(config, user, lighting, gesture)
    path = Path(root) / folder / f"user{user:02d}_{lighting}" / f"{gesture}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, to_dvsgesture_array(events))
    return len(events)


def _plain_sigterm() -> None:
    # forked workers inherit the parent's handlers; a SIGTERM that raised in a worker (see
    # anonynoise.cli_support.sigterm_as_interrupt) could leave the pool's queues locked while the
    # parent terminates it: workers simply die
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def generate_dataset(out: str | os.PathLike, config: DatasetConfig = DatasetConfig(), *,
                     workers: int | None = None, force: bool = False,
                     progress: Callable[[int, int], None] | None = None) -> Path:
    """Write the benchmark under OUT/DVSGesture; returns that folder.

    It is built in OUT/DVSGesture.partial and moved into place when complete, so an existing
    dataset is only replaced (with force) by a complete one.
    """
    config.check()
    out = Path(out)
    root = out / "DVSGesture"
    if root.exists() and not force:
        raise AnonyNoiseError(f"{root} already exists (force=True replaces it)",
                              parameter="force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "DVSGesture.partial"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir()
    except OSError as e:
        raise AnonyNoiseError(f"{out}: cannot write: {e.strerror or e}") from None
    todo = [(config, str(partial), job) for job in jobs(config)]
    workers = workers or os.cpu_count() or 1
    counts, pool = [], None
    try:
        if workers == 1:
            results = map(_write_one, todo)
        else:
            pool = multiprocessing.get_context("fork").Pool(workers, _plain_sigterm)
            results = pool.imap_unordered(_write_one, todo, chunksize=2)
        for i, n in enumerate(results):
            counts.append(n)
            if progress:
                progress(i + 1, len(todo))
        if pool is not None:
            pool.close()
            pool.join()
        manifest = {"generator": "anonynoise.synth", "fingerprint": generator_fingerprint(),
                    "config": asdict(config),
                    "classes": list(GESTURES), "recordings": len(counts),
                    "events": int(sum(counts)),
                    "train_users": config.users - config.test_users,
                    "test_users": config.test_users}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    except BaseException as e:
        if pool is not None:  # first: a live worker may still be writing into the folder
            pool.terminate()  # (it joins the workers)
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(e, OSError):
            raise AnonyNoiseError(f"{out}: cannot write: {e.strerror or e}") from None
        raise
    return root
