"""The 11 DVS-Gesture classes as arm-joint trajectories.

Each arm has two absolute angles in degrees, in the arm's own mirrored frame: 0 hangs down,
90 points horizontally away from the body, 180 points up, -90 points across the body. Arm 0
is on the image's left (the person's right arm, facing the camera); arm 1 on the right.
Clockwise means clockwise as the camera sees it.
"""

from __future__ import annotations

import numpy as np

from anonynoise.synth.people import Person, Variation

GESTURES = ("hand_clap", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
            "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
            "arm_roll", "air_drums", "air_guitar", "other")
REST = np.array([8.0, 12.0])  # upper arm, forearm: hanging, slightly away from the body
# Base frequency of each class in Hz (a person's speed and the recording's jitter scale it).
_FREQUENCY = (1.8, 2.2, 2.2, 0.9, 0.9, 0.9, 0.9, 1.5, 2.3, 2.0, 1.0)
RAMP_S = 0.3


def _wobble(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A smooth random deviation: two slow sinusoids of random frequency and phase."""
    out = np.zeros_like(t)
    for _ in range(2):
        out += amplitude * rng.uniform(0.3, 1.0) * np.sin(
            2 * np.pi * rng.uniform(0.2, 1.2) * t + rng.uniform(0, 2 * np.pi))
    return out


def arm_angles(gesture: int, t: np.ndarray, person: Person, variation: Variation,
               rng: np.random.Generator, stop: float | None = None) -> np.ndarray:
    """Angles (len(t), 2 arms, 2 segments) in degrees for a gesture at times t (seconds).

    The arms rest until variation.start, then ease into the gesture; with `stop` they ease
    back to rest, reaching it at `stop` (for gestures strung together).
    """
    if not 0 <= gesture < len(GESTURES):
        raise ValueError(f"gesture must be in 0..{len(GESTURES) - 1}, got {gesture}")
    n = len(t)
    speed = person.speed * variation.speed
    amp = person.amplitude * variation.amplitude
    active = np.clip(t - variation.start, 0, None)
    envelope = np.clip(active / RAMP_S, 0, 1)
    if stop is not None:
        envelope = np.minimum(envelope, np.clip((stop - t) / RAMP_S, 0, 1))
    envelope = envelope * envelope * (3 - 2 * envelope)  # smoothstep
    tempo = 0.25 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * _FREQUENCY[gesture] * speed * active + variation.phase + tempo
    lead = person.lead_arm
    lag = np.zeros(2)
    lag[1 - lead] = person.lead_lag
    bend = person.elbow_bend
    angles = np.empty((n, 2, 2))
    angles[:] = REST
    target = angles.copy()
    s = np.sin

    def both(fn):
        for arm in (0, 1):
            target[:, arm] = fn(arm, phase + lag[arm])

    if gesture == 0:  # hand clap: forearms swing in to meet in front of the chest
        both(lambda arm, ph: np.stack([28 + 6 * amp * s(ph),
                                       -62 - 32 * amp * (0.5 + 0.5 * s(ph)) + 0.3 * bend], -1))
    elif gesture in (1, 2):  # hand wave: forearm up, swinging side to side
        arm = 0 if gesture == 1 else 1
        target[:, arm, 0] = 78 + 6 * s(0.5 * phase) + 0.2 * bend
        target[:, arm, 1] = 168 + 28 * amp * s(phase)
    elif 3 <= gesture <= 6:  # arm circles; arm 0 turns clockwise with increasing angle
        arm = 0 if gesture in (3, 4) else 1
        clockwise = gesture in (3, 5)
        direction = 1.0 if clockwise == (arm == 0) else -1.0
        theta = np.degrees(direction * phase)
        radius = 1.0 - 0.15 * (1.1 - amp)  # smaller circles bend the elbow
        target[:, arm, 0] = theta * radius + 10
        target[:, arm, 1] = theta * radius + 10 + 0.6 * bend + 12 * (1 - radius)
    elif gesture == 7:  # arm roll: forearms circling each other, half a turn apart
        both(lambda arm, ph: np.stack([32 + 10 * amp * s(ph + np.pi * arm),
                                       -72 + 26 * amp * np.cos(ph + np.pi * arm) + 0.3 * bend], -1))
    elif gesture == 8:  # air drums: alternate hits at waist height
        both(lambda arm, ph: np.stack([24 + 8 * amp * s(ph + np.pi * arm),
                                       -18 + 34 * amp * s(ph + np.pi * arm) + 0.3 * bend], -1))
    elif gesture == 9:  # air guitar: one hand strums at the hip, the other holds the neck
        strum, fret = (0, 1) if lead == 0 else (1, 0)
        target[:, strum, 0] = 22 + 5 * s(0.5 * phase)
        target[:, strum, 1] = -58 + 28 * amp * s(2 * phase) + 0.3 * bend
        target[:, fret, 0] = 58 + 6 * s(0.25 * phase)
        target[:, fret, 1] = 98 + 10 * amp * s(0.5 * phase + 1.0)
    else:  # other: random smooth motion of both arms
        for arm in (0, 1):
            target[:, arm, 0] = 30 + _wobble(rng, t, 45 * amp)
            target[:, arm, 1] = target[:, arm, 0] + bend + _wobble(rng, t, 60 * amp)
    angles += envelope[:, None, None] * (target - angles)
    for arm in (0, 1):  # sloppiness: nobody repeats a gesture exactly
        for seg in (0, 1):
            angles[:, arm, seg] += _wobble(rng, t, 5.0)
    return angles
