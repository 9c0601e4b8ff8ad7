"""Decode + augment throughput per core, composer's data pipeline against plain Pillow (not a test:
it times things). From the repository root:

    .venv/bin/python bench/decode_bench.py        # rewrites its section of docs/benchmarks-train.md

On the same JPEG files, one thread, rounds alternated (A, B, C, A, B, C, ...):

A. plain Pillow: `Image.open(p).convert("RGB").resize((224, 224))`, as a user would write it;
B. composer training: `TrainDataset` (RandomResizedCrop box + flip, JPEG draft scale chosen for the
   box, one resampling) and the batch stage of `TrainAugment` (normalisation) on batches of 32;
C. composer evaluation: `load_image` (shorter side to 256, centre 224) and `Normalize`.

Two sets of files: ImageNet-like 500x375 and photo-like 2000x1500 JPEGs (quality 90).
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from composer.train import load_recipe  # noqa: E402
from composer.train.augment import Normalize, TrainAugment  # noqa: E402
from composer.train.data import Samples, TrainDataset, load_image  # noqa: E402

BATCH = 32
ROUNDS = 5
SIZES = ((500, 375, 96), (2000, 1500, 32))  # width, height, files


def make_jpegs(folder: Path, n: int, width: int, height: int) -> list[Path]:
    """Smooth gradients with coloured discs (compress like photographs, not like noise)."""
    from PIL import Image, ImageDraw
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    paths = []
    for i in range(n):
        im = Image.linear_gradient("L").resize((width, height)).convert("RGB")
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x, y, r = rng.randint(0, width), rng.randint(0, height), rng.randint(width // 50, width // 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randint(0, 255) for _ in range(3)))
        paths.append(folder / f"{i}.jpg")
        im.save(paths[-1], quality=90)
    return paths


def plain(paths: list[Path]) -> float:
    from PIL import Image
    t0 = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            im.convert("RGB").resize((224, 224))
    return len(paths) / (time.perf_counter() - t0)


def training(paths: list[Path], epoch: int) -> float:
    augment = load_recipe().augment  # the default recipe: crop scale 0.08-1, flip 0.5
    ds = TrainDataset(Samples(paths, [0] * len(paths), ["x"], paths[0].parent), (224, 224), 3, augment.crop,
                      augment.hflip, seed=0, resize=(256, 256))
    batch_stage = TrainAugment(augment, 224, cropped=True)
    labels = torch.zeros(BATCH, dtype=torch.long)
    t0 = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        keys = range(epoch * len(paths) + i, epoch * len(paths) + min(i + BATCH, len(paths)))
        images = torch.stack([ds[k][0] for k in keys])
        batch_stage(images, labels[: len(images)])
    return len(paths) / (time.perf_counter() - t0)


def evaluation(paths: list[Path]) -> float:
    normalize = Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    t0 = time.perf_counter()
    for i in range(0, len(paths), BATCH):
        normalize(torch.stack([load_image(p, 256, 224) for p in paths[i:i + BATCH]]))
    return len(paths) / (time.perf_counter() - t0)


def measure(paths: list[Path]) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"plain": [], "training": [], "evaluation": []}
    plain(paths[:4]), training(paths[:BATCH], 99), evaluation(paths[:4])  # warm-up
    for r in range(ROUNDS):
        runs["plain"].append(plain(paths))
        runs["training"].append(training(paths, r))
        runs["evaluation"].append(evaluation(paths))
    return runs


def main() -> None:
    torch.set_num_threads(1)  # per core
    tmp = Path(tempfile.mkdtemp(prefix="composer-decode-"))
    load = os.getloadavg()[0]
    try:
        results = {(w, h, n): measure(make_jpegs(tmp / f"{w}x{h}", n, w, h)) for w, h, n in SIZES}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from report import machine
    lines = [
        "## Decode + augment per core: composer against plain Pillow",
        "",
        "<!-- written by `.venv/bin/python bench/decode_bench.py`; rerun it to refresh -->",
        "",
        f"Machine: {machine()}; load average {load:.1f} when the run started. One thread; "
        f"{ROUNDS} rounds, the three pipelines alternated on the same files; images/s per core, median "
        "(best) of the rounds.",
        "",
        "| JPEGs | plain Pillow: open, convert, resize to 224 | composer training: crop + flip while decoding, normalise | "
        "composer evaluation: resize 256, centre 224, normalise | training / plain |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (w, h, n), runs in results.items():
        med = {k: statistics.median(v) for k, v in runs.items()}
        best = {k: max(v) for k, v in runs.items()}
        lines.append(f"| {n} of {w}x{h} | {med['plain']:.0f} ({best['plain']:.0f}) | {med['training']:.0f} "
                     f"({best['training']:.0f}) | {med['evaluation']:.0f} ({best['evaluation']:.0f}) | "
                     f"{med['training'] / med['plain']:.2f} |")
    lines += [
        "",
        "Composer's training pipeline draws the RandomResizedCrop box (default recipe: 8-100% of the",
        "area) before decoding, so a JPEG decodes at the smallest DCT scale (1/2, 1/4, 1/8) that still",
        "covers the box at 224, and Pillow resamples only the box, once, with the flip on the result;",
        "the batch stage is then a normalisation of uint8 images. Plain Pillow decodes every pixel and",
        "resizes the whole image (with its default filter, bicubic). Evaluation needs the whole shorter",
        "side, so on 500x375 files the draft scale cannot help it (375 / 2 < 256); it gains by resampling",
        "only the centre box, bilinear, as training does.",
    ]
    import report
    report.TARGET = ROOT / "docs" / "benchmarks-train.md"
    report.write_section("decode", "\n".join(lines))


if __name__ == "__main__":
    main()
