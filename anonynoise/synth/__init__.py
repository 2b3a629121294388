"""The built-in synthetic benchmark: people with identities doing the 11 DVS-Gesture gestures,
rendered and turned into events by a simulated sensor.

- people.py: identity traits and per-recording variation
- gestures.py: the gestures as arm trajectories
- figure.py / render.py: the articulated figure as shapes, drawn anti-aliased (numba)
- simulator.py: the event camera (thresholds with mismatch, refractory period, noise)
- scene.py: one recording of a gesture, or a live stream of random gestures
- dataset.py: the benchmark in tonic's DVS-Gesture layout; picture.py: a PNG of it
"""

from anonynoise.synth.dataset import DatasetConfig, generate_dataset
from anonynoise.synth.gestures import GESTURES
from anonynoise.synth.people import ALL_CUES, CUES, LIGHTINGS, sample_person, sample_variation
from anonynoise.synth.scene import LiveScene, record_gesture

__all__ = ["ALL_CUES", "CUES", "GESTURES", "LIGHTINGS", "DatasetConfig", "LiveScene",
           "generate_dataset", "record_gesture", "sample_person", "sample_variation"]
