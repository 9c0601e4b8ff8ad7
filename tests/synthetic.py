"""A synthetic image-classification data set: coloured shapes on noisy backgrounds, as PNG files."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 80, 230))


def shape_image(kind: str, rng: random.Random, size: int = 32) -> Image.Image:
    """One shape in its class's colour (a little varied), at a random position and size, on a random
    grey background."""
    bg = rng.randint(0, 90)
    im = Image.new("RGB", (size, size), (bg, bg, bg))
    draw = ImageDraw.Draw(im)
    r = rng.randint(size // 5, size // 3)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    colour = tuple(min(255, max(0, v + rng.randint(-30, 30))) for v in COLOURS[CLASSES.index(kind) if kind in CLASSES else 0])
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    elif kind == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:  # a triangle, and the shape of any other class name
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    return im


def make_folder(root: Path, per_class: dict[str, int], seed: int = 0, classes=CLASSES) -> Path:
    """`root/<split>/<class>/<n>.png` for each split and its images per class."""
    rng = random.Random(seed)
    for split, n in per_class.items():
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                shape_image(c, rng).save(folder / f"{i}.png")
    return root


# A network small enough to train for an epoch in a test (about a second on a CPU).
TINY_NET = """\
name: tiny-data
input: {channels: 3, size: 32}
classes: 3
stem: {type: conv, channels: [8], stride: 2}
layout: C
blocks:
  C: {type: mbconv, expand: 2, kernel: 3}
stages:
  - {depth: 1, channels: 16, stride: 2}
head: {type: pool}
"""


def quick_train_args(blueprint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    """`composer train` arguments for a one-epoch run with no workers and no warm-up."""
    return ["train", str(blueprint), "--data", str(data), "--out", str(out), "--device", "cpu", "--epochs", "1",
            "--batch", "8", "--set", "recipe.data.workers=0", "--set", "recipe.schedule.warmup_epochs=0", *extra]
