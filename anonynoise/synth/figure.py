"""From a person, a recording's variation and arm angles to the shapes drawn in each frame.

A frame is a list of shapes drawn back to front: long hair behind, torso, neck, hair, a bun,
head, then the arm that is behind and the arm in front (upper arm, forearm, hand). Each shape
is one row of SHAPE_COLUMNS floats; `render.py` draws them. All frames are built at once with
numpy, so one numba call can render and simulate a whole recording.
"""

from __future__ import annotations

import numpy as np

from anonynoise.synth.people import HAIR_STYLES, Person, Variation

SHAPE_COLUMNS = 16
SKIP, CAPSULE, ELLIPSE, BOX = -1, 0, 1, 2
# columns: 0 type; 1-7 geometry (capsule: x0 y0 x1 y1 r; ellipse: cx cy a b angle bump_amp
# bump_freq; box: cx cy half_w half_h angle corner_r); 8 grey; 9 texture kind (0 none,
# 1 stripes, 2 dots, 3 checker); 10 texture angle; 11 texture period (px); 12 texture contrast;
# 13 part axis angle; 14-15 texture origin (px)
N_SHAPES = 12


def _direction(side: float, angle_deg: np.ndarray) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.stack([side * np.sin(a), np.cos(a)], -1)


def figure_shapes(person: Person, variation: Variation, angles: np.ndarray, t: np.ndarray,
                  width: int, height: int) -> np.ndarray:
    """Shapes (len(t), N_SHAPES, SHAPE_COLUMNS) in pixel coordinates."""
    n = len(t)
    p = person
    unit = height * variation.scale  # lengths in the person's traits are fractions of this
    sway = np.radians(p.sway_amplitude) * np.sin(2 * np.pi * p.sway_frequency * t
                                                 + variation.phase)
    # the upper body leans with the arms' asymmetry (how far each reaches out), as people
    # balance while gesturing
    reach = np.sin(np.radians(angles[:, :, 0]))
    turn = variation.rotation + sway + np.radians(p.body_coupling) * (reach[:, 0] - reach[:, 1])
    shift = 0.012 * np.sin(2 * np.pi * p.sway_frequency * 0.7 * t + 1.3 * variation.phase)
    cos_t, sin_t = np.cos(turn), np.sin(turn)
    bob = p.breathing * np.sin(2 * np.pi * 0.3 * t + variation.phase)
    center = np.stack([variation.center_x * width + shift * unit,
                       variation.center_y * height + bob * unit], -1)

    def to_px(local: np.ndarray) -> np.ndarray:
        """(n, 2) body coordinates (units of `unit`, y down) -> pixels, turned and placed."""
        x, y = local[:, 0] * unit, local[:, 1] * unit
        return center + np.stack([cos_t * x - sin_t * y, sin_t * x + cos_t * y], -1)

    def point(x, y):
        return np.stack([np.full(n, x), np.full(n, y)], -1)

    shapes = np.zeros((n, N_SHAPES, SHAPE_COLUMNS))
    shapes[:, :, 0] = SKIP
    top = -p.torso_height / 2
    head_center = top - p.neck_length - 0.45 * p.head_height
    shirt = (p.shirt_grey, p.texture, p.texture_angle, p.texture_period * unit,
             p.texture_contrast)

    def put(i, kind, geometry, grey, texture=None, axis=None, origin=None):
        shapes[:, i, 0] = kind
        for j, g in enumerate(geometry):
            shapes[:, i, 1 + j] = g
        shapes[:, i, 8] = grey
        if texture is not None:
            shapes[:, i, 9:13] = texture[1:]
            shapes[:, i, 13] = axis
            shapes[:, i, 14:16] = origin

    style = HAIR_STYLES[p.hair_style]
    ha, hb = p.head_width / 2 * unit, p.head_height / 2 * unit
    grow = 1 + 0.25 * p.hair_volume
    # the head tilts about the neck, in the person's rhythm, on top of the body's sway
    tilt = np.radians(p.head_motion) * np.sin(2 * np.pi * p.head_frequency * t
                                              + 2.1 * variation.phase)
    neck_top = top - p.neck_length

    def head_point(x, y):
        """A point of the head (body coordinates), tilted about the top of the neck."""
        dx, dy = x, y - neck_top
        return np.stack([np.cos(tilt) * dx - np.sin(tilt) * dy,
                         neck_top + np.sin(tilt) * dx + np.cos(tilt) * dy], -1)

    head_turn = turn + tilt
    head_px = to_px(head_point(0, head_center))
    if style == "long":
        c = to_px(head_point(0, head_center + 0.7 * p.head_height))
        put(0, BOX, (c[:, 0], c[:, 1], ha * grow, 0.75 * hb * 2, head_turn, ha * 0.5),
            p.hair_grey)
    torso = to_px(point(0, 0))
    put(1, BOX, (torso[:, 0], torso[:, 1], (p.shoulder_width + p.hip_width) / 4 * unit,
                 p.torso_height / 2 * unit, turn, 0.05 * unit), p.shirt_grey, shirt, turn, torso)
    neck_a, neck_b = to_px(point(0, top + 0.02)), head_px
    put(2, CAPSULE, (neck_a[:, 0], neck_a[:, 1], neck_b[:, 0], neck_b[:, 1],
                     0.3 * p.head_width * unit), p.skin_grey)
    if style != "none":
        lift = (0.15 + 0.35 * p.hair_volume) * hb
        hair = to_px(head_point(0, head_center - lift / unit))
        bumps = (0.06 + 0.1 * p.hair_bumps, 9 + 6 * p.hair_bumps) if style == "curly" else (0, 0)
        put(3, ELLIPSE, (hair[:, 0], hair[:, 1], ha * grow, hb + 0.3 * lift, head_turn, *bumps),
            p.hair_grey)
    if style == "bun":
        bun = to_px(head_point(0, head_center - 1.05 * p.head_height / 2
                               - 0.3 * p.head_width / 2))
        put(4, ELLIPSE, (bun[:, 0], bun[:, 1], 0.4 * ha, 0.35 * ha, head_turn, 0, 0),
            p.hair_grey)
    put(5, ELLIPSE, (head_px[:, 0], head_px[:, 1], ha, hb, head_turn, 0, 0), p.skin_grey)

    shoulder_y = top + 0.035
    order = (1 - p.lead_arm, p.lead_arm)  # the leading arm is drawn last: in front
    for slot, arm in enumerate(order):
        side = -1.0 if arm == 0 else 1.0
        shoulder = point(side * p.shoulder_width / 2 * 0.85, shoulder_y)
        upper_dir = _direction(side, angles[:, arm, 0])
        fore_dir = _direction(side, angles[:, arm, 1])
        elbow = shoulder + p.upper_arm * upper_dir
        wrist = elbow + p.forearm * fore_dir
        hand = wrist + 0.6 * p.hand_radius * fore_dir
        s_px, e_px, w_px, h_px = to_px(shoulder), to_px(elbow), to_px(wrist), to_px(hand)
        r = p.arm_radius * unit
        upper_axis = np.arctan2(e_px[:, 1] - s_px[:, 1], e_px[:, 0] - s_px[:, 0])
        fore_axis = np.arctan2(w_px[:, 1] - e_px[:, 1], w_px[:, 0] - e_px[:, 0])
        base = 6 + 3 * slot
        put(base, CAPSULE, (s_px[:, 0], s_px[:, 1], e_px[:, 0], e_px[:, 1], r), p.shirt_grey,
            shirt, upper_axis, s_px)
        if p.long_sleeves:
            put(base + 1, CAPSULE, (e_px[:, 0], e_px[:, 1], w_px[:, 0], w_px[:, 1], 0.9 * r),
                p.shirt_grey, shirt, fore_axis, e_px)
        else:
            put(base + 1, CAPSULE, (e_px[:, 0], e_px[:, 1], w_px[:, 0], w_px[:, 1], 0.75 * r),
                p.skin_grey)
        put(base + 2, ELLIPSE, (h_px[:, 0], h_px[:, 1], p.hand_radius * unit,
                                1.2 * p.hand_radius * unit, fore_axis, 0, 0), p.skin_grey)
    return shapes


def background(width: int, height: int, seed: int) -> np.ndarray:
    """A static grey background with soft gradients and a faint texture (float32, H x W)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    img = np.full((height, width), rng.uniform(0.35, 0.65))
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 3.0, 2)
        img += rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * (fx * x + fy * y) + rng.uniform(0, 6))
    img += rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0.05, 1.0).astype(np.float32)
