"""Drawing a scene as a 32x32 RGB image with PIL (deterministic given its RNG).

A cross's arms are thin (half-width r // 4, so 3 px for a small cross): with half-width r // 2 a
small cross was a blob the tiny ViT confused with a small circle (shape accuracy 0.96; thin
arms: 1.0).
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

from vltool.demo.world import COLOURS, Scene

CANVAS = 32
CENTRES = {"left": (9, 16), "right": (22, 16), "top": (16, 9), "bottom": (16, 22)}
RADIUS = {"big": 8, "small": 5}


def render(scene: Scene, rng: random.Random) -> Image.Image:
    """One shape, slightly jittered, on a dark background."""
    shade = rng.randint(10, 40)
    image = Image.new("RGB", (CANVAS, CANVAS), (shade, shade, shade))
    draw = ImageDraw.Draw(image)
    cx, cy = CENTRES[scene.pos]
    cx += rng.randint(-1, 1)
    cy += rng.randint(-1, 1)
    r = RADIUS[scene.size] + rng.randint(0, 1)
    colour = tuple(max(0, min(255, c + rng.randint(-15, 15))) for c in COLOURS[scene.colour])
    box = (cx - r, cy - r, cx + r, cy + r)
    if scene.shape == "circle":
        draw.ellipse(box, fill=colour)
    elif scene.shape == "square":
        draw.rectangle(box, fill=colour)
    elif scene.shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    else:
        w = max(1, r // 4)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=colour)
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=colour)
    return image
