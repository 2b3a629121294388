"""Recordings of synthetic people: one gesture, or a live stream of random gestures."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from anonynoise.events import EventBatch, concatenate
from anonynoise.synth.figure import CAPSULE, SKIP, background, figure_shapes
from anonynoise.synth.gestures import GESTURES, arm_angles
from anonynoise.synth.people import LIGHTINGS, Person, Variation, sample_person, sample_variation
from anonynoise.synth.simulator import EventSimulator, SensorModel

# The scene is posed at FPS frames per simulated second; frames are rendered adaptively
# (ESIM's idea): only as often as needed so that nothing moves more than MAX_SHIFT_PX between
# two rendered frames, and at least every MAX_GAP_S. Log intensity is interpolated between
# rendered frames for the event timestamps.
DEFAULT_FPS = 2000
MAX_SHIFT_PX = 0.5
MAX_GAP_S = 0.004


def frame_motion(shapes: np.ndarray) -> np.ndarray:
    """Largest displacement in pixels of any shape between consecutive frames (len - 1,)."""
    geometry = shapes[:, :, 1:5]
    moved = np.abs(np.diff(geometry, axis=0)).max(axis=2)  # endpoints / centres / sizes
    kind = shapes[1:, :, 0]
    turning = np.abs(np.diff(shapes[:, :, 5], axis=0)) * np.maximum(shapes[1:, :, 3],
                                                                    shapes[1:, :, 4])
    moved = np.where(kind == CAPSULE, moved, np.maximum(moved, turning))
    return np.where(kind == SKIP, 0.0, moved).max(axis=1)


def adaptive_frames(shapes: np.ndarray, t: np.ndarray, max_shift_px: float = MAX_SHIFT_PX,
                    max_gap_s: float = MAX_GAP_S) -> np.ndarray:
    """Indices of the frames to render: the first, then whenever the motion accumulated since
    the last rendered frame would exceed max_shift_px or max_gap_s has passed; the last."""
    motion = frame_motion(shapes)
    keep = [0]
    moved = 0.0
    for i in range(1, len(t)):
        moved += motion[i - 1]
        if moved > max_shift_px or t[i] - t[keep[-1]] >= max_gap_s - 1e-9 or i == len(t) - 1:
            keep.append(i)
            moved = 0.0
    return np.asarray(keep)


def _simulator(variation: Variation, width: int, height: int, model: SensorModel,
               seed: int, t0_us: float = 0.0) -> EventSimulator:
    illumination, background_rate = LIGHTINGS[variation.lighting]
    return EventSimulator(background(width, height, variation.background_seed), illumination,
                          background_rate * model.background_rate / 0.3, model, seed=seed,
                          t0_us=t0_us)


def record_gesture(person: Person, gesture: int, variation: Variation, *,
                   width: int = 128, height: int = 128, duration_s: float = 3.0,
                   fps: int = DEFAULT_FPS, seed: int = 0,
                   model: SensorModel = SensorModel()) -> EventBatch:
    """The events of `person` doing `gesture` for `duration_s`, times from 0 µs."""
    rng = np.random.default_rng(seed)
    n_frames = max(int(round(duration_s * fps)), 1)
    t = np.arange(n_frames + 1) / fps  # frame 0 primes the sensor with the scene
    angles = arm_angles(gesture, t, person, variation, rng)
    shapes = figure_shapes(person, variation, angles, t, width, height)
    frames = adaptive_frames(shapes, t)
    sim = _simulator(variation, width, height, model, int(rng.integers(2**62)))
    sim.run(shapes[:1], t[:1] * 1e6)  # no events: the scene was there before recording
    return sim.run(shapes[frames[1:]], t[frames[1:]] * 1e6)


def warm_up() -> None:
    """Compile the simulator's and renderer's kernels now, or load them from numba's cache:
    the first stream after an install spent about 10 s in them before its first window."""
    next(iter(LiveScene(16, 16, seed=0, chunk_ms=50.0)))


class LiveScene:
    """A continuous stream of one person doing random gestures, chunk by chunk.

    Iterating yields an EventBatch for every `chunk_ms` of simulated time, times in µs from
    the start. With `realtime`, each chunk is held back until its end time has passed on the
    wall clock, as a camera delivers it. `seed` None draws everything from OS entropy.
    """

    def __init__(self, width: int = 128, height: int = 128, *, seed: int | None = None,
                 realtime: bool = False, chunk_ms: float = 20.0, fps: int = DEFAULT_FPS,
                 model: SensorModel = SensorModel()):
        if chunk_ms <= 0:
            raise ValueError("chunk_ms must be positive")
        self.width, self.height = int(width), int(height)
        self.rng = np.random.default_rng(seed)
        self.person = sample_person(self.rng)
        self.variation = sample_variation(self.rng)
        self.realtime, self.chunk_us, self.fps = realtime, float(chunk_ms) * 1000, fps
        self.sim = _simulator(self.variation, self.width, self.height, model,
                              int(self.rng.integers(2**62)))
        self._primed = False
        self.gestures: list[tuple[float, int]] = []  # (start s, class) of what was performed

    def _segment(self, t0: float):
        """Frames (shapes, times in s) of the next gesture, starting at rest at t0."""
        gesture = int(self.rng.integers(len(GESTURES)))
        duration = float(self.rng.uniform(2.0, 4.0))
        variation = replace(self.variation, start=0.1 + float(self.rng.uniform(0, 0.3)),
                            phase=float(self.rng.uniform(0, 2 * np.pi)),
                            speed=float(self.rng.uniform(0.85, 1.15)))
        t = np.arange(int(duration * self.fps) + 1) / self.fps
        angles = arm_angles(gesture, t, self.person, variation, self.rng, stop=duration)
        shapes = figure_shapes(self.person, variation, angles, t + t0, self.width, self.height)
        self.gestures.append((t0, gesture))
        return shapes, t + t0

    def __iter__(self):
        start_wall = None
        t0 = 0.0
        pending_events = []
        chunk_end = self.chunk_us
        while True:
            shapes, t = self._segment(t0)
            if not self._primed:
                self.sim.run(shapes[:1], t[:1] * 1e6)
                self._primed = True
            frames = adaptive_frames(shapes, t)[1:]
            for i in range(0, len(frames), 16):
                sel = frames[i:i + 16]
                pending_events.append(self.sim.run(shapes[sel], t[sel] * 1e6))
                while t[sel[-1]] * 1e6 >= chunk_end:
                    batch = concatenate(pending_events)
                    out = batch.slice_time(chunk_end - self.chunk_us, chunk_end)
                    pending_events = [batch.slice_time(chunk_end, batch.t[-1] + 1)
                                      if len(batch) else batch]
                    if self.realtime:
                        if start_wall is None:
                            # the clock starts with the first chunk, as a camera's does: the
                            # first segment compiles the renderer and simulator on a fresh
                            # install (seconds), which must not arrive later as a burst
                            start_wall = time.monotonic() - chunk_end / 1e6
                        delay = start_wall + chunk_end / 1e6 - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    yield out
                    chunk_end += self.chunk_us
            t0 = float(t[-1])
