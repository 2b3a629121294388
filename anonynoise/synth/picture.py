"""A picture of synthetic people doing gestures, as event frames (PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anonynoise.atomic import atomic_output
from anonynoise.events import EventBatch
from anonynoise.synth.dataset import DatasetConfig, record
from anonynoise.synth.gestures import GESTURES

BACKGROUND = (32, 32, 32)
ON_COLOUR = (255, 196, 32)
OFF_COLOUR = (48, 140, 255)


def event_frame(events: EventBatch, scale: int = 3) -> np.ndarray:
    """An RGB image (H*scale, W*scale, 3) uint8: ON and OFF pixels in two colours."""
    img = np.empty((events.height, events.width, 3), np.uint8)
    img[:] = BACKGROUND
    img[events.y[events.p == 0], events.x[events.p == 0]] = OFF_COLOUR
    img[events.y[events.p == 1], events.x[events.p == 1]] = ON_COLOUR
    return img.repeat(scale, 0).repeat(scale, 1)


def gesture_picture(out: str | os.PathLike, users: tuple[int, ...] = (1, 2, 3, 4),
                    gestures: tuple[int, ...] = (0, 1, 3, 7, 8, 9), window_ms: float = 40.0,
                    at_s: float = 1.5, config: DatasetConfig = DatasetConfig(duration_s=2.0),
                    scale: int = 2) -> Path:
    """A grid: one row per user, one column per gesture, each tile the events of a window."""
    from PIL import Image, ImageDraw

    pad, label = 4, 14
    tile = config.size * scale
    width = len(gestures) * (tile + pad) + pad
    height = label + len(users) * (tile + pad) + pad
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for j, g in enumerate(gestures):
        draw.text((pad + j * (tile + pad), 1), GESTURES[g].replace("_", " ")[:24],
                  fill=(220, 220, 220))
    for i, user in enumerate(users):
        for j, g in enumerate(gestures):
            events = record(config, user, "lab", g)
            t0 = int(at_s * 1e6)
            frame = event_frame(events.slice_time(t0, t0 + int(window_ms * 1000)), scale)
            canvas.paste(Image.fromarray(frame), (pad + j * (tile + pad),
                                                  label + pad + i * (tile + pad)))
    out = Path(out)
    with atomic_output(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out
