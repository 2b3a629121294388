"""Synthetic people: the traits that make an identity, and what varies between recordings.

Identity is appearance (body proportions, head shape, shoulder width, hair outline, clothing
grey level and texture, sleeves) and motion style (speed, amplitude, elbow bend, posture
sway, which arm leads and which is in front). A recording varies position, scale, a small
rotation, speed and amplitude, and the lighting, so none of these tells who it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# The lighting conditions of DVS-Gesture's folder names, as (illumination, background
# activity in events per pixel and second): dimmer light, more noise events.
LIGHTINGS = {
    "fluorescent": (1.0, 0.25),
    "fluorescent_led": (0.9, 0.35),
    "lab": (1.15, 0.2),
    "led": (0.8, 0.45),
    "natural": (0.6, 0.7),
}

HAIR_STYLES = ("none", "short", "long", "curly", "bun")
TEXTURES = ("plain", "stripes", "dots", "checker")


@dataclass(frozen=True)
class Person:
    """The fixed traits of one synthetic person. Lengths are fractions of the sensor height."""

    torso_height: float
    shoulder_width: float
    hip_width: float
    neck_length: float
    head_width: float
    head_height: float
    upper_arm: float
    forearm: float
    arm_radius: float
    hand_radius: float
    hair_style: int
    hair_volume: float
    hair_bumps: float
    hair_grey: float
    skin_grey: float
    shirt_grey: float
    texture: int
    texture_angle: float
    texture_period: float
    texture_contrast: float
    long_sleeves: bool
    speed: float
    amplitude: float
    elbow_bend: float
    sway_amplitude: float
    sway_frequency: float
    head_motion: float  # degrees of head tilt
    head_frequency: float
    breathing: float  # vertical bob of the upper body, fraction of the height
    body_coupling: float  # degrees the upper body leans per 90 degrees of arm asymmetry
    lead_arm: int  # 0 or 1: the arm that leads in two-handed gestures and is drawn in front
    lead_lag: float  # phase lag of the other arm, radians

    def as_dict(self) -> dict:
        return asdict(self)


# Which traits make up each identity cue; the others can be switched off for ablations.
CUES = {
    "body": ("torso_height", "shoulder_width", "hip_width", "neck_length", "head_width",
             "head_height", "upper_arm", "forearm", "arm_radius", "hand_radius"),
    "head": ("hair_style", "hair_volume", "hair_bumps", "hair_grey", "skin_grey"),
    "clothing": ("shirt_grey", "texture", "texture_angle", "texture_period", "texture_contrast",
                 "long_sleeves"),
    "motion": ("speed", "amplitude", "elbow_bend", "sway_amplitude", "sway_frequency",
               "head_motion", "head_frequency", "breathing", "body_coupling", "lead_arm",
               "lead_lag"),
}
ALL_CUES = tuple(CUES)


def _draw_traits(rng: np.random.Generator) -> dict:
    u = rng.uniform
    head_width = u(0.105, 0.15)
    return dict(
        torso_height=u(0.31, 0.45), shoulder_width=u(0.22, 0.38), hip_width=u(0.18, 0.3),
        neck_length=u(0.025, 0.055), head_width=head_width,
        head_height=head_width * u(1.1, 1.4), upper_arm=u(0.16, 0.22), forearm=u(0.14, 0.2),
        arm_radius=u(0.03, 0.048), hand_radius=u(0.025, 0.038),
        hair_style=int(rng.integers(len(HAIR_STYLES))), hair_volume=u(0.1, 0.45),
        hair_bumps=u(0.0, 1.0), hair_grey=u(0.05, 0.7), skin_grey=u(0.35, 0.85),
        shirt_grey=u(0.1, 0.9), texture=int(rng.integers(len(TEXTURES))),
        texture_angle=u(0, np.pi), texture_period=u(0.045, 0.13),
        texture_contrast=u(0.4, 0.8), long_sleeves=bool(rng.random() < 0.5),
        speed=u(0.75, 1.3), amplitude=u(0.75, 1.25), elbow_bend=u(-15.0, 25.0),
        sway_amplitude=u(2.5, 6.0), sway_frequency=u(0.2, 0.8),
        head_motion=u(1.0, 6.0), head_frequency=u(0.3, 1.2), breathing=u(0.002, 0.01),
        body_coupling=u(2.0, 6.0),
        lead_arm=int(rng.integers(2)), lead_lag=u(-0.6, 0.6),
    )


# Everyone's traits where a cue is switched off: one fixed, unremarkable person.
_NEUTRAL = _draw_traits(np.random.default_rng(20251126))
_NEUTRAL.update(hair_style=1, texture=0, shirt_grey=0.3, skin_grey=0.6, long_sleeves=False,
                lead_arm=0, lead_lag=0.0, speed=1.0, amplitude=1.0)


def sample_person(rng: np.random.Generator, cues: tuple[str, ...] = ALL_CUES) -> Person:
    """Draw a person's traits; traits of cues not in `cues` are the same for everyone."""
    unknown = set(cues) - set(CUES)
    if unknown:
        raise ValueError(f"unknown cues {sorted(unknown)} (known: {', '.join(CUES)})")
    traits = _draw_traits(rng)
    for cue, names in CUES.items():
        if cue not in cues:
            traits.update({name: _NEUTRAL[name] for name in names})
    return Person(**traits)


@dataclass(frozen=True)
class Variation:
    """What changes between two recordings of the same person and gesture."""

    center_x: float  # torso centre, fraction of the width
    center_y: float  # fraction of the height
    scale: float
    rotation: float  # radians
    speed: float  # multiplies the person's speed
    amplitude: float
    phase: float
    start: float  # seconds of rest before the gesture
    lighting: str
    background_seed: int


def sample_variation(rng: np.random.Generator, lighting: str | None = None) -> Variation:
    """Draw one recording's variation (a random lighting unless given)."""
    if lighting is None:
        lighting = str(rng.choice(list(LIGHTINGS)))
    if lighting not in LIGHTINGS:
        raise ValueError(f"unknown lighting {lighting!r} (known: {', '.join(LIGHTINGS)})")
    return Variation(center_x=rng.uniform(0.42, 0.58), center_y=rng.uniform(0.68, 0.76),
                     scale=rng.uniform(1.25, 1.4), rotation=rng.uniform(-0.06, 0.06),
                     speed=rng.uniform(0.9, 1.1), amplitude=rng.uniform(0.9, 1.1),
                     phase=rng.uniform(0, 2 * np.pi), start=rng.uniform(0.05, 0.4),
                     lighting=lighting, background_seed=int(rng.integers(2**31)))
