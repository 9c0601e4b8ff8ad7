"""Images on disk -> labelled samples -> batches of uint8 tensors.

Two layouts: an ImageFolder tree (`DIR/train/<class>/*`, `DIR/val/<class>/*`, or `DIR/<class>/*`
with a held-out split) and a CSV of `path,label` rows (paths relative to the CSV's folder).
Everything a user can get wrong in the data is found here, before a model exists: missing or empty
class folders, unreadable or truncated images, unknown paths or labels in a CSV. Decoding and
resizing (Pillow) run in DataLoader workers; augmentation runs later, batched, on the device.
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..blueprint import BlueprintError, Problem
from .extras import require

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class DataError(BlueprintError):
    """A mistake in the training data (reported like a blueprint mistake: location, message, hint)."""

    subject = "in the data"


def _problem(where: str | os.PathLike, message: str, hint: str | None = None) -> Problem:
    return Problem(message, (), str(where), hint=hint)


@dataclass
class Samples:
    """Image paths with class indices, and the class names those indices stand for."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    root: Path
    skipped: list[Path] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: list[int]) -> "Samples":
        return Samples([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes, self.root)


def is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def scan_folder(root: Path, classes: Optional[list[str]] = None) -> Samples:
    """`root/<class>/*` -> Samples. With `classes` given, the folder's classes must be among them."""
    if not root.is_dir():
        raise DataError(_problem(root, "no such folder", "expected DIR/train/<class>/* and DIR/val/<class>/*, or a CSV of path,label"))
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(_problem(root, "has no class folders", "put each class's images in a folder named after the class: DIR/<class>/*.jpg"))
    problems = []
    found: dict[str, list[Path]] = {}
    for folder in folders:
        images = sorted(p for p in folder.rglob("*") if is_image(p))
        if not images:
            problems.append(_problem(folder, "class folder holds no images", f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"))
        found[folder.name] = images
    if problems:
        raise DataError(problems)
    names = classes if classes is not None else list(found)
    unknown = [c for c in found if c not in names]
    if unknown:
        raise DataError(_problem(root, f"class folder{'s' if len(unknown) > 1 else ''} {', '.join(f'`{c}`' for c in unknown)} "
                                       f"not among the model's {len(names)} classes", f"the model knows: {', '.join(names[:20])}"))
    index = {c: i for i, c in enumerate(names)}
    paths = [p for c in found for p in found[c]]
    labels = [index[c] for c in found for _ in found[c]]
    return Samples(paths, labels, list(names), root)


def scan_csv(path: Path, classes: Optional[list[str]] = None) -> Samples:
    """A CSV of `path,label` (a header row is recognised and skipped); paths relative to its folder."""
    try:
        with path.open(newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(_problem(path, f"cannot read the CSV: {exc}")) from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows, first = rows[1:], 2
    else:
        first = 1
    if not rows:
        raise DataError(_problem(path, "the CSV has no rows", "one `path,label` row per image"))
    problems, pairs = [], []
    for n, row in enumerate(rows, start=first):
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            problems.append(Problem("expected `path,label`", (), str(path), n, 1))
            continue
        image = (path.parent / row[0].strip())
        if not image.is_file():
            problems.append(Problem(f"no such image `{row[0].strip()}`", (), str(path), n, 1))
            continue
        pairs.append((image, row[1].strip(), n, len(row[0]) + 2))
    names = classes if classes is not None else sorted({label for _, label, _, _ in pairs})
    index = {c: i for i, c in enumerate(names)}
    for image, label, line, column in pairs:
        if label not in index:
            problems.append(Problem(f"unknown label `{label}`", (), str(path), line, column,
                                    f"the model's classes: {', '.join(names[:20])}"))
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise DataError(problems[:20] + ([_problem(path, f"... and {len(problems) - 20} more")] if len(problems) > 20 else []))
    return Samples([p for p, *_ in pairs], [index[c] for _, c, *_ in pairs], list(names), path.parent)


@dataclass
class Splits:
    train: Samples
    val: Samples
    held_out: bool  # val is a held-out part of train


def find_splits(data: Path, val_split: float, seed: int) -> Splits:
    """The training and validation samples of a data folder or CSV."""
    if data.suffix.lower() == ".csv" and data.is_file():
        samples = scan_csv(data)
        return _hold_out(samples, val_split, seed)
    if not data.exists():
        raise DataError(_problem(data, "no such folder or CSV file"))
    if (data / "train").is_dir():
        train = scan_folder(data / "train")
        if (data / "val").is_dir():
            return Splits(train, scan_folder(data / "val", train.classes), False)
        return _hold_out(train, val_split, seed)
    return _hold_out(scan_folder(data), val_split, seed)


def _hold_out(samples: Samples, fraction: float, seed: int) -> Splits:
    """Hold out `fraction` of each class (at least one image per class with two or more)."""
    g = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c in range(len(samples.classes)):
        idx = [i for i, label in enumerate(samples.labels) if label == c]
        order = [idx[i] for i in torch.randperm(len(idx), generator=g).tolist()]
        k = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        val += order[:k]
        train += order[k:]
    if not val:
        raise DataError(_problem(samples.root, "too few images to hold out a validation split", "add a `val` folder"))
    return Splits(samples.subset(sorted(train)), samples.subset(sorted(val)), True)


def _check_one(path: Path) -> Optional[str]:
    Image = require("PIL.Image")
    try:
        with Image.open(path) as im:
            im.load()  # a full decode: truncated files fail here, not in a worker mid-epoch
        return None
    except Exception as exc:  # Pillow raises many kinds for broken files
        return f"{type(exc).__name__}: {exc}"


def check_images(samples: Samples, policy: str, progress: Callable[[int, int], None] | None = None,
                 threads: int | None = None) -> Samples:
    """Decode every image once. Broken ones are refused (DataError) or dropped and counted."""
    threads = threads or min(8, os.cpu_count() or 1)
    bad: list[tuple[Path, str]] = []
    with ThreadPoolExecutor(threads) as pool:
        for done, (path, error) in enumerate(zip(samples.paths, pool.map(_check_one, samples.paths)), start=1):
            if error is not None:
                bad.append((path, error))
            if progress is not None:
                progress(done, len(samples))
    if not bad:
        return samples
    if policy == "refuse":
        problems = [_problem(p, f"unreadable image ({e})") for p, e in bad[:20]]
        problems[-1] = Problem(problems[-1].message, (), problems[-1].file,
                               hint=f"{len(bad)} broken image{'s' if len(bad) > 1 else ''} in all; remove them, or skip them "
                                    "with `--set recipe.data.bad_images=skip`")
        raise DataError(problems)
    broken = {p for p, _ in bad}
    keep = [i for i, p in enumerate(samples.paths) if p not in broken]
    out = samples.subset(keep)
    out.skipped = [p for p, _ in bad]
    return out


class ImageDataset(torch.utils.data.Dataset):
    """Decode (Pillow, RGB) and resize to a fixed square: the shorter side to `resize`, then a centre
    crop of `crop`. Returns (uint8 tensor CxHxW, label)."""

    def __init__(self, samples: Samples, resize: int, crop: int):
        self.samples, self.resize, self.crop = samples, resize, crop

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_image(self.samples.paths[i], self.resize, self.crop), self.samples.labels[i]


def load_image(path: Path, resize: int, crop: int) -> torch.Tensor:
    Image = require("PIL.Image")
    with Image.open(path) as im:
        im.draft("RGB", (resize, resize))  # JPEG: decode at the smallest DCT scale that still covers `resize`
        im = im.convert("RGB")
        w, h = im.size
        scale = resize / min(w, h)
        size = (max(crop, round(w * scale)), max(crop, round(h * scale)))
        if size != (w, h):
            im = im.resize(size, Image.BILINEAR, reducing_gap=None if scale > 0.5 else 3.0)
        left, top = (size[0] - crop) // 2, (size[1] - crop) // 2
        im = im.crop((left, top, left + crop, top + crop))
        data = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
    return data.view(crop, crop, 3).permute(2, 0, 1).contiguous()  # (3, H, W)


def list_images(path: Path) -> list[Path]:
    """The images at `path`: one file, or every image under a folder (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(_problem(path, "no such file or folder"))
    images = sorted(p for p in path.rglob("*") if is_image(p))
    if not images:
        raise DataError(_problem(path, "holds no images", f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"))
    return images
