"""Images on disk -> labelled samples -> batches of uint8 tensors.

Two layouts: an ImageFolder tree (`DIR/train/<class>/*`, `DIR/val/<class>/*`, or `DIR/<class>/*`
with a held-out split) and a CSV of image paths and labels (paths relative to the CSV's folder; a
header row names the columns). Everything a user can get wrong in the data is found here, before a
model exists: missing or empty class folders, unreadable, truncated or oversized images, unknown
paths or labels in a CSV, more classes, images or CSV rows than the budgets below. Decoding and
resizing (Pillow) run in DataLoader workers; augmentation runs later, batched, on the device.

Class order: class names sort as strings, except when every name is an integer (`0`, `1`, ... `10`),
when they sort by value, so that index and name agree in the usual competition layout.

Decoding (`decode`): EXIF orientation applied; 16-bit and 32-bit images scaled to 8 bits (not
clipped); transparency (palette, LA, RGBA) composited on white; CMYK, palette and bilevel images
converted; the result is RGB, or luma (`L`) for 1-channel networks.
"""

from __future__ import annotations

import csv
import math
import os
import random
import re
import stat
import statistics
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..blueprint import BlueprintError, Problem
from ..errors import ComposerError
from ..io.files import atomic_write, reading_many
from .extras import require

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

# Budgets of the data, decided before any image is decoded.
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_IMAGES = 5_000_000  # per data set (ImageNet-1k has 1.28 million)
MAX_CSV_BYTES = 1 << 30  # a CSV of labels
MAX_FIELD = 4096  # characters of a CSV field (a path longer than PATH_MAX cannot name a file)
MAX_PIXELS = 89_478_485  # Pillow's decompression-bomb guard (Image.MAX_IMAGE_PIXELS), as an error
MAX_SIDE = 65_535  # pixels of one side (the largest JPEG and WebP)
MAX_ASPECT = 100  # longer side / shorter side: resizing the shorter side must not blow up the longer
# channel weights of Pillow's RGB -> L conversion (ITU-R 601-2 luma)
LUMA = (0.299, 0.587, 0.114)

PATH_COLUMNS = ("path", "file", "filename", "file_name", "filepath", "image", "image_path", "image_name",
                "image_id", "img", "id", "fname")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "classname", "target", "category", "y")


class DataError(BlueprintError):
    """A mistake in the training data (reported like a blueprint mistake: location, message, hint)."""

    subject = "in the data"


def _problem(where: str | os.PathLike, message: str, hint: str | None = None) -> Problem:
    return Problem(message, (), str(where), hint=hint)


@dataclass
class ImageStats:
    """Sizes of the images a check decoded: their count and median width and height."""

    count: int
    median_width: int
    median_height: int


@dataclass
class Samples:
    """Image paths with class indices, and the class names those indices stand for."""

    paths: list[Path]
    labels: list[int]
    classes: list[str]
    root: Path
    skipped: list[Path] = field(default_factory=list)
    stats: Optional[ImageStats] = None

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: list[int]) -> "Samples":
        return Samples([self.paths[i] for i in indices], [self.labels[i] for i in indices], self.classes, self.root,
                       stats=self.stats)


def usable_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


_INTEGER = re.compile(r"-?[0-9]{1,100}")


def numeric(classes: Sequence[str]) -> bool:
    """Every class name is an integer (`0`, `7`, `10`, `-1`)."""
    return bool(classes) and all(_INTEGER.fullmatch(c) for c in classes)


def class_order(names) -> list[str]:
    """Class names in index order: by value when every name is an integer, else as strings."""
    names = list(names)
    if numeric(names):
        return sorted(names, key=lambda c: (int(c), c))
    return sorted(names)


def class_number(name: str, index: int, classes: Sequence[str]) -> int:
    """What `--indices` writes for a class: its number when every class name is one, else its index."""
    return int(name) if numeric(classes) else index


def _over_budget(what: str, limit: int, where, hint: str) -> DataError:
    return DataError(_problem(where, f"more than {limit:,} {what}", hint))


def _walk_images(folder: Path, budget: int) -> list[Path]:
    """Images under `folder` (not following links to folders), sorted; at most `budget` + 1."""
    found: list[Path] = []
    for top, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            path = Path(top) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".") and path.is_file():
                found.append(path)
                if len(found) > budget:
                    return found
    return sorted(found)


def scan_folder(root: Path, classes: Optional[list[str]] = None) -> Samples:
    """`root/<class>/*` -> Samples. With `classes` given, the folder's classes must be among them."""
    if not root.is_dir():
        raise DataError(_problem(root, "no such folder", "expected DIR/train/<class>/* and DIR/val/<class>/*, or a CSV of path,label"))
    folders = []
    for entry in os.scandir(root):
        if not entry.name.startswith(".") and entry.is_dir():
            folders.append(Path(entry.path))
            if len(folders) > MAX_CLASSES:
                raise _over_budget("class folders", MAX_CLASSES, root, "each folder under DIR is a class")
    if not folders:
        raise DataError(_problem(root, "has no class folders", "put each class's images in a folder named after the class: DIR/<class>/*.jpg"))
    problems = []
    found: dict[str, list[Path]] = {}
    total = 0
    for folder in sorted(folders):
        images = _walk_images(folder, MAX_IMAGES - total)
        total += len(images)
        if total > MAX_IMAGES:
            raise _over_budget("images", MAX_IMAGES, root, "train on a part of the data (a CSV lists one)")
        if not images:
            problems.append(_problem(folder, "class folder holds no images", f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"))
        found[folder.name] = images
    if problems:
        raise DataError(problems[:20] + ([_problem(root, f"... and {len(problems) - 20} more empty class folders")]
                                         if len(problems) > 20 else []))
    names = classes if classes is not None else class_order(found)
    known = set(names)
    unknown = [c for c in found if c not in known]
    if unknown:
        raise DataError(_problem(root, f"class folder{'s' if len(unknown) > 1 else ''} {', '.join(f'`{c}`' for c in unknown[:20])}"
                                       f"{', ...' if len(unknown) > 20 else ''} not among the model's {len(names)} classes",
                                 f"the model knows: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''}"))
    index = {c: i for i, c in enumerate(names)}
    order = sorted(found, key=lambda c: index[c])
    paths = [p for c in order for p in found[c]]
    labels = [index[c] for c in order for _ in found[c]]
    return Samples(paths, labels, list(names), root)


def _not_a_file(path: Path) -> Optional[str]:
    """Why a path that exists is not an image file (a device, a FIFO, a link to nothing), or None."""
    try:
        if not os.path.lexists(path):
            return None
        info = os.stat(path) if os.path.exists(path) else None
    except (OSError, ValueError):
        return None
    if info is None:
        return "a symbolic link to nothing"
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not an image"
    kind = ("a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket" if stat.S_ISSOCK(info.st_mode) else None)
    return f"{kind}, not a regular file (images are read from regular files only)" if kind else None


def _resolve(base: Path, text: str) -> Optional[Path]:
    """The image a CSV cell names: the path itself, or, for a Kaggle-style id without a suffix, the
    file with an image suffix added."""
    path = base / text
    try:
        if path.is_file():
            return path
        if not path.suffix or path.suffix.lower() not in IMAGE_SUFFIXES:
            for suffix in (".jpg", ".png", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"):
                candidate = path.with_name(path.name + suffix)
                if candidate.is_file():
                    return candidate
    except (OSError, ValueError):  # a name too long, a NUL byte
        return None
    return None


def _columns(path: Path, rows: list[list[str]]) -> tuple[int, int, bool]:
    """(path column, label column, has a header row) of a CSV's first rows.

    A header is a first row naming the columns: by a known name (`path`/`id`/`file`/`image`/...
    and `label`/`class`/`target`/...), or any two names when the first row names no image and the
    second does."""
    head = [c.strip().lower() for c in rows[0]]
    path_col = next((head.index(n) for n in PATH_COLUMNS if n in head), None)
    label_col = next((head.index(n) for n in LABEL_COLUMNS if n in head), None)
    if path_col is not None and label_col is not None and path_col != label_col:
        return path_col, label_col, True
    if len(head) == 2 and (path_col is None) != (label_col is None):  # one column named, the other is the other
        return (path_col, 1 - path_col, True) if path_col is not None else (1 - label_col, label_col, True)
    # a cell that looks like a path (a folder separator, an image suffix) is data, even when no such file exists
    first_is_image = len(rows[0]) >= 1 and (_resolve(path.parent, rows[0][0].strip()) is not None or "/" in rows[0][0]
                                            or "\\" in rows[0][0] or Path(rows[0][0].strip()).suffix.lower() in IMAGE_SUFFIXES)
    second_is_image = len(rows) > 1 and len(rows[1]) >= 1 and _resolve(path.parent, rows[1][0].strip()) is not None
    if not first_is_image and second_is_image:
        if len(rows[0]) == 2:
            return 0, 1, True
        raise DataError(Problem(f"cannot tell which of the columns {', '.join(f'`{c}`' for c in rows[0][:10])} "
                                "hold the image and its label", (), str(path), 1, 1,
                                f"name them `{PATH_COLUMNS[0]}` and `{LABEL_COLUMNS[0]}`, or id/file/image and class/target"))
    return 0, 1, False


def read_csv_rows(path: Path) -> list[list[str]]:
    """The rows of a CSV file within the budgets: UTF-8 with or without a byte-order mark (bytes
    that are not UTF-8 kept as surrogate escapes, as file names are), fields of at most MAX_FIELD
    characters, at most MAX_IMAGES rows."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(_problem(path, f"cannot read the CSV: {exc.strerror or exc}")) from None
    if size > MAX_CSV_BYTES:
        raise DataError(_problem(path, f"the CSV is {size / 2**30:.1f} GiB, over the limit of {MAX_CSV_BYTES / 2**30:.0f} GiB"))
    rows: list[list[str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            reader = csv.reader(fh)
            try:
                for row in reader:
                    if not row or not any(c.strip() for c in row):
                        rows.append([])  # keeps line numbers: blank lines are skipped later
                        continue
                    if any("\0" in c for c in row):
                        raise DataError(Problem("a NUL character: not a text CSV", (), str(path), reader.line_num, 1,
                                                "save it as CSV UTF-8; UTF-16 puts a NUL in every character"))
                    long = next((i for i, c in enumerate(row) if len(c) > MAX_FIELD), None)
                    if long is not None:
                        raise DataError(Problem(f"field {long + 1} is {len(row[long]):,} characters long, over the limit of "
                                                f"{MAX_FIELD:,}", (), str(path), reader.line_num, 1))
                    rows.append(row)
                    if len(rows) > MAX_IMAGES + 1:
                        raise _over_budget("rows", MAX_IMAGES, path, "one row per image")
            except csv.Error as exc:
                reason = str(exc)
                if "field larger than field limit" in reason:
                    reason = f"a field is over the limit of {MAX_FIELD:,} characters"
                raise DataError(Problem(f"not a readable CSV: {reason}", (), str(path), reader.line_num, 1)) from None
    except OSError as exc:
        raise DataError(_problem(path, f"cannot read the CSV: {exc.strerror or exc}")) from None
    return rows


def scan_csv(path: Path, classes: Optional[list[str]] = None) -> Samples:
    """A CSV of image paths and labels; paths relative to its folder. A header row chooses the
    columns by name (`path,label`, `id,label`, `file,class`, ...); without one, the first two
    columns are the path and the label."""
    rows = read_csv_rows(path)
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if row]
    if not numbered:
        raise DataError(_problem(path, "the CSV has no rows", "one `path,label` row per image"))
    path_col, label_col, header = _columns(path, [row for _, row in numbered[:2]])
    head = numbered[0][1]
    if header:
        numbered = numbered[1:]
    if not numbered:
        raise DataError(_problem(path, "the CSV has a header but no rows", "one row per image"))
    problems, pairs = [], []
    width = max(path_col, label_col) + 1
    for n, row in numbered:
        if len(row) < width or not row[path_col].strip() or not row[label_col].strip():
            problems.append(Problem("expected `path,label`" if not header else
                                    f"expected values in the columns `{head[path_col]}` and `{head[label_col]}`", (), str(path), n, 1))
            if len(problems) > 20:
                break
            continue
        name = row[path_col].strip()
        image = _resolve(path.parent, name)
        column = sum(len(c) + 1 for c in row[:label_col]) + 1
        if image is None:
            why = _not_a_file(path.parent / name)
            problems.append(Problem(f"`{name}` is {why}" if why else f"no such image `{name}`", (), str(path), n, sum(len(c) + 1 for c in row[:path_col]) + 1))
            if len(problems) > 20:
                break
            continue
        pairs.append((image, row[label_col].strip(), n, column))
    if classes is not None:
        names = classes
    else:
        labels = set()
        for _, label, _, _ in pairs:
            labels.add(label)
            if len(labels) > MAX_CLASSES:
                raise _over_budget("classes", MAX_CLASSES, path, "a label column holds class names")
        names = class_order(labels)
    index = {c: i for i, c in enumerate(names)}
    for image, label, line, column in pairs:
        if label not in index:
            problems.append(Problem(f"unknown label `{label}`", (), str(path), line, column,
                                    f"the model's classes: {', '.join(names[:20])}{', ...' if len(names) > 20 else ''}"))
            if len(problems) > 20:
                break
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise DataError(problems[:20] + ([_problem(path, "... and more")] if len(problems) > 20 else []))
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
    by_class: list[list[int]] = [[] for _ in samples.classes]
    for i, label in enumerate(samples.labels):
        by_class[label].append(i)
    train, val = [], []
    for idx in by_class:
        order = [idx[i] for i in torch.randperm(len(idx), generator=g).tolist()]
        k = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        val += order[:k]
        train += order[k:]
    if not val:
        raise DataError(_problem(samples.root, "too few images to hold out a validation split", "add a `val` folder"))
    return Splits(samples.subset(sorted(train)), samples.subset(sorted(val)), True)


def csv_text(samples: Samples) -> bytes:
    """`path,label` rows of `samples` (absolute paths, class names), as `scan_csv` reads them back;
    file names that are not UTF-8 keep their bytes."""
    import io
    buf = io.StringIO()
    write_csv_rows(buf, [["path", "label"]] + [[str(Path(p).resolve()), samples.classes[k]]
                                              for p, k in zip(samples.paths, samples.labels)])
    return buf.getvalue().encode("utf-8", "surrogateescape")


def write_csv_rows(buf, rows) -> None:
    """CSV rows ending in `\n`. A cell holding a carriage return is quoted too (with `\n` as the line
    end the csv module quotes only `\n`, and every reader would split the row at the `\r`)."""
    plain = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    for row in rows:
        (quoted if any("\r" in str(c) for c in row) else plain).writerow(row)


def write_splits(out: Path, splits: Splits) -> None:
    """Record the files of a run: OUT/train.csv and OUT/val.csv (atomically), which
    `composer eval OUT/best.pt --split val` scores."""
    for name, samples in (("train.csv", splits.train), ("val.csv", splits.val)):
        with atomic_write(out / name, "wb") as fh:
            fh.write(csv_text(samples))


# --- decoding -------------------------------------------------------------------------------------------

class ImageRefused(ComposerError, ValueError):
    """An image over the size budgets (refused before it is decoded)."""


def _pair(v) -> tuple[int, int]:
    """An int size or (height, width) -> (height, width)."""
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def check_size(width: int, height: int) -> None:
    """Refuse an image over the pixel, side and aspect budgets (from its header, before decoding)."""
    if width < 1 or height < 1:
        raise ImageRefused(f"{width}x{height} pixels: empty")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise ImageRefused(f"{width}x{height} pixels: a side is over the limit of {MAX_SIDE:,}")
    if width * height > MAX_PIXELS:
        raise ImageRefused(f"{width}x{height} pixels: over the limit of {MAX_PIXELS:,} (a possible decompression bomb)")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageRefused(f"{width}x{height} pixels: the aspect ratio is over {MAX_ASPECT}:1")


def _open(path: Path):
    Image = require("PIL.Image")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused by check_size instead
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise ImageRefused(f"over twice the limit of {MAX_PIXELS:,} pixels (a possible decompression bomb)") from None
    try:
        check_size(*im.size)
    except BaseException:
        im.close()
        raise
    return im


_ORIENTATION = 0x0112
_SWAPS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
SUPPORTED_MODES = {"1", "L", "P", "RGB", "RGBA", "LA", "PA", "La", "RGBa", "RGBX", "CMYK", "YCbCr",
                   "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: no rotation, as viewers do
        return 1


def to_mode(im, channels: int):
    """A decoded image as RGB (channels 3) or L (channels 1), as people expect to see it."""
    Image = require("PIL.Image")
    target = "L" if channels == 1 else "RGB"
    mode = im.mode
    if mode not in SUPPORTED_MODES:
        raise ValueError(f"unsupported colour mode {mode}")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return im.convert("I").point(lambda v: v * (1 / 257)).convert(target)  # 0..65535 -> 0..255
    if mode == "I":
        low, high = im.getextrema()
        if high > 255 or low < 0:  # 16-bit data in 32 bits (older PNG and TIFF readers), or signed
            span = 65535 if low >= 0 and high <= 65535 else max(high - low, 1)
            offset = 0 if span == 65535 else low
            return im.point(lambda v: (v - offset) * (255 / span)).convert(target)
        return im.convert(target)
    if mode == "F":
        low, high = im.getextrema()
        if 0 <= low and high <= 1:
            return im.point(lambda v: v * 255).convert(target)
        return im.convert(target)
    if mode == "P" and "transparency" in im.info or mode in ("PA", "LA", "La", "RGBA", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert(target)
    return im.convert(target)


def decode(path: Path, channels: int = 3, want: Optional[Callable[[int, int], tuple[int, int]]] = None):
    """Open, check, orient and convert an image (a Pillow image in RGB or L). `want` maps the
    upright (width, height) to the size needed, so that a JPEG decodes at the smallest DCT scale
    that still covers it."""
    im = _open(path)
    try:
        orientation = _orientation(im)
        if want is not None and im.format == "JPEG":
            w, h = im.size
            swap = orientation in _SWAPS
            w, h = want(*((h, w) if swap else (w, h)))
            if swap:
                w, h = h, w
            im.draft("L" if channels == 1 else "RGB", (max(1, w), max(1, h)))
        im.load()
        if orientation != 1:
            ImageOps = require("PIL.ImageOps")
            im = ImageOps.exif_transpose(im)
        return to_mode(im, channels)
    finally:
        im.close()


def _cover(w: int, h: int, resize: tuple[int, int], crop: tuple[int, int]) -> float:
    """The scale at which a w x h image covers both the resize target and the crop."""
    (rh, rw), (ch, cw) = resize, crop
    return max(rh / h, rw / w, ch / h, cw / w)


def load_image(path: Path, resize, crop, channels: int = 3) -> torch.Tensor:
    """Decode, resize so the image covers `resize` (height, width; an int for a square), and take
    the centre `crop`, in one resampling of the crop's box. -> uint8 tensor (channels, H, W)."""
    return load_views(path, [resize], crop, channels)[0]


def load_views(path: Path, resizes: Sequence, crop, channels: int = 3) -> list[torch.Tensor]:
    """One decode, several centre crops: one per resize (multi-scale test-time augmentation)."""
    Image = require("PIL.Image")
    crop = _pair(crop)
    resizes = [_pair(r) for r in resizes]
    ch, cw = crop

    def want(w: int, h: int) -> tuple[int, int]:
        s = max(_cover(w, h, r, crop) for r in resizes)
        return math.ceil(w * s), math.ceil(h * s)

    im = decode(path, channels, want)
    w, h = im.size
    views = []
    for resize in resizes:
        s = _cover(w, h, resize, crop)
        bw, bh = min(w, cw / s), min(h, ch / s)
        left, top = (w - bw) / 2, (h - bh) / 2
        view = im.resize((cw, ch), Image.BILINEAR, box=(left, top, left + bw, top + bh), reducing_gap=3.0)
        data = torch.frombuffer(bytearray(view.tobytes()), dtype=torch.uint8)
        views.append(data.view(ch, cw, channels).permute(2, 0, 1).contiguous())  # (C, H, W)
    return views


def _check_one(path: Path) -> tuple[Optional[str], Optional[tuple[int, int]]]:
    """(error, (width, height)): a full decode, so truncated files fail here, not in a worker mid-epoch."""
    try:
        with _open(path) as im:
            mode = im.mode
            if mode not in SUPPORTED_MODES:
                return f"unsupported colour mode {mode}", None
            im.load()
            size = im.size
            if _orientation(im) in _SWAPS:
                size = size[::-1]
        return None, size
    except ImageRefused as exc:
        return f"too large: {exc}", None
    except MemoryError:
        return "out of memory while decoding", None
    except Exception as exc:  # Pillow raises many kinds for broken files
        return f"{type(exc).__name__}: {exc}", None


SKIP_HINT = "remove them, or skip them with `--set recipe.data.bad_images=skip`"


def check_images(samples: Samples, policy: str, progress: Callable[[int, int], None] | None = None,
                 threads: int | None = None, fix: str = SKIP_HINT) -> Samples:
    """Decode every image once. Broken ones are refused (DataError) or dropped and counted; the
    sizes of the good ones are summarised in `stats` of the result. The images become inputs of the
    running command: no output of it may replace one (composer.io.files.reading_many)."""
    reading_many(samples.paths)
    threads = threads or min(8, os.cpu_count() or 1)
    bad: list[tuple[Path, str]] = []
    widths, heights = [], []
    done = 0
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, len(samples), 4096):  # a bounded number of pending checks, whatever the data's size
            chunk = samples.paths[start:start + 4096]
            for path, (error, size) in zip(chunk, pool.map(_check_one, chunk)):
                done += 1
                if error is not None:
                    bad.append((path, error))
                else:
                    widths.append(size[0])
                    heights.append(size[1])
                if progress is not None:
                    progress(done, len(samples))
    stats = ImageStats(len(widths), int(statistics.median(widths)), int(statistics.median(heights))) if widths else None
    if not bad:
        samples.stats = stats
        return samples
    if policy == "refuse":
        problems = [_problem(p, f"unreadable image ({e})") for p, e in bad[:20]]
        problems[-1] = Problem(problems[-1].message, (), problems[-1].file,
                               hint=f"{len(bad)} broken image{'s' if len(bad) > 1 else ''} in all; {fix}")
        raise DataError(problems)
    broken = {p for p, _ in bad}
    keep = [i for i, p in enumerate(samples.paths) if p not in broken]
    out = samples.subset(keep)
    out.skipped = [p for p, _ in bad]
    out.stats = stats
    return out


def size_note(stats: Optional[ImageStats], size) -> Optional[str]:
    """One line when the images are much smaller than the input (half its sides or less), naming
    the flag that trains at their size."""
    if stats is None:
        return None
    h, w = _pair(size)
    if stats.median_width * 2 > w and stats.median_height * 2 > h:
        return None
    suggest = max(32, -(-min(stats.median_width, stats.median_height) // 32) * 32)
    return (f"note: the images are much smaller than the {h}x{w} input (median {stats.median_width}x{stats.median_height} "
            f"pixels); upscaling them costs time and adds no detail; `composer train --size {suggest}` trains at about their size")


class ImageDataset(torch.utils.data.Dataset):
    """Decode (Pillow; RGB, or L for `channels` 1) and resize: the image scaled to cover `resize`,
    then the centre `crop` (each an int for a square, or (height, width)). Returns
    (uint8 tensor CxHxW, label)."""

    def __init__(self, samples: Samples, resize, crop, channels: int = 3):
        self.samples, self.resize, self.crop, self.channels = samples, resize, crop, channels

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return load_image(self.samples.paths[i], self.resize, self.crop, self.channels), self.samples.labels[i]


class ViewsDataset(ImageDataset):
    """Several centre crops of each image, one per resize: (uint8 tensor VxCxHxW, label)."""

    def __init__(self, samples: Samples, resizes: Sequence, crop, channels: int = 3):
        super().__init__(samples, resizes[0], crop, channels)
        self.resizes = list(resizes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.stack(load_views(self.samples.paths[i], self.resizes, self.crop, self.channels)), self.samples.labels[i]


def random_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
               rng: random.Random) -> tuple[float, float, float, float]:
    """A RandomResizedCrop box (left, top, right, bottom) of a width x height image: area a `scale`
    fraction, aspect (width / height) log-uniform in `ratio`; ten tries, then the centre crop at
    the nearest allowed aspect (the procedure of Szegedy et al. 2015 as torchvision runs it)."""
    area = width * height
    low, high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(low, high))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def load_random_crop(path: Path, size, scale: tuple[float, float], ratio: tuple[float, float], flip: float,
                     rng: random.Random, channels: int = 3) -> torch.Tensor:
    """RandomResizedCrop + horizontal flip in one resampling of the crop box, decoding a JPEG at the
    smallest DCT scale that still covers the box at `size`. -> uint8 tensor (channels, H, W)."""
    Image = require("PIL.Image")
    ch, cw = _pair(size)
    chosen: list = []

    def want(w: int, h: int) -> tuple[int, int]:
        box = random_box(w, h, scale, ratio, rng)
        chosen.append((box, w, h))
        s = max(cw / max(box[2] - box[0], 1), ch / max(box[3] - box[1], 1))
        return math.ceil(w * min(s, 1.0)), math.ceil(h * min(s, 1.0))

    im = decode(path, channels, want)
    if not chosen:  # not a JPEG: the box is drawn on the decoded size
        want(*im.size)
    (l, t, r, b), w0, h0 = chosen[0]
    fx, fy = im.size[0] / w0, im.size[1] / h0  # the draft's reduction
    view = im.resize((cw, ch), Image.BILINEAR, box=(l * fx, t * fy, r * fx, b * fy), reducing_gap=3.0)
    if rng.random() < flip:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    data = torch.frombuffer(bytearray(view.tobytes()), dtype=torch.uint8)
    return data.view(ch, cw, channels).permute(2, 0, 1).contiguous()


class TrainDataset(ImageDataset):
    """Training images with the recipe's RandomResizedCrop and flip done while decoding (one
    resampling per image; see `load_random_crop`). The random numbers of an image come from the
    run's seed, the epoch and the image's index only, so a run draws the same crops with any number
    of workers or processes, and resumed as uninterrupted. The epoch reaches persistent workers in
    the keys an `EpochSampler` yields (epoch x len + index). Without a crop (`crop: null`), the
    evaluation view (`resize`, centre `size`), flipped as the recipe says."""

    def __init__(self, samples: Samples, size, channels: int, crop, hflip: float, seed: int, resize=None):
        super().__init__(samples, resize if resize is not None else size, size, channels)
        self.crop_cfg, self.hflip, self.seed = crop, hflip, seed

    def __getitem__(self, key: int) -> tuple[torch.Tensor, int]:
        epoch, i = divmod(int(key), len(self.samples))
        rng = random.Random(f"{self.seed}:{epoch}:{i}")
        path = self.samples.paths[i]
        if self.crop_cfg is not None:
            x = load_random_crop(path, self.crop, tuple(self.crop_cfg.scale), tuple(self.crop_cfg.ratio), self.hflip, rng,
                                 self.channels)
        else:
            x = load_image(path, self.resize, self.crop, self.channels)
            if rng.random() < self.hflip:
                x = x.flip(2)
        return x, self.samples.labels[i]


class EpochSampler(torch.utils.data.DistributedSampler):
    """A DistributedSampler whose keys carry the epoch (epoch x len + index), for `TrainDataset`."""

    def __iter__(self):
        n = len(self.dataset)
        return (self.epoch * n + i for i in super().__iter__())


def list_images(path: Path) -> list[Path]:
    """The images at `path`: one file, or every image under a folder (sorted)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        why = _not_a_file(path)
        raise DataError(_problem(path, f"it is {why}" if why else "no such file or folder"))
    images = _walk_images(path, MAX_IMAGES)
    if len(images) > MAX_IMAGES:
        raise _over_budget("images", MAX_IMAGES, path, "predict a part of the folder at a time")
    if not images:
        raise DataError(_problem(path, "holds no images", f"images end in {', '.join(sorted(IMAGE_SUFFIXES))}"))
    return images
