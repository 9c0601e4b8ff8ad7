"""Evaluate and predict with checkpoints of `composer train`.

`evaluate` scores labelled images (a folder, a CSV, or the split a run recorded: RUN/val.csv) with
the plain cross-entropy (no label smoothing: training's `val_loss` uses the recipe's), top-1, top-5
and per-class accuracy, and the confusion matrix up to MAX_CONFUSION classes. `predict` averages
class probabilities over test-time views (flip, scales) and over several checkpoints (an ensemble,
whose class names must agree), and writes spreadsheet-safe CSVs.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch.utils.data import DataLoader

from ..blueprint.reading import parse_blueprint
from ..weights.model import model_from_saved
from ..blueprint import BlueprintError, Problem
from ..errors import where
from ..io.files import atomic_write
from ..weights.saved import saved_from_payload
from . import distributed
from .augment import Normalize
from .checkpoints import load_checkpoint
from .data import (write_csv_rows, DataError, ImageDataset, Samples, ViewsDataset, check_images, class_number, list_images,
                   scan_csv, scan_folder)
from .recipe import AugmentConfig
from .report import Progress

MAX_CONFUSION = 1_000  # classes up to which the confusion matrix is computed and drawn (a million cells)
MAX_INPUT_ELEMENTS = 1 << 26  # batch x channels x height x width of one inference batch (256 MiB of float32)
MAX_BATCH = 4096
MAX_SCALES = 8
MAX_MODELS = 32


class ModelsError(BlueprintError):
    """Checkpoints that cannot be used together (an ensemble of different classes)."""

    subject = "with the models"


@dataclass
class Loaded:
    net: torch.nn.Module
    classes: list[str]
    augment: AugmentConfig
    size: tuple[int, int]  # (height, width)
    channels: int
    path: Path

    def resizes(self, scales: Sequence[float] = (1.0,)) -> list[tuple[int, int]]:
        """The evaluation resize (size / crop_pct) at each test-time scale."""
        return [tuple(max(1, round(s * f / self.augment.crop_pct)) for s in self.size) for f in scales]


_NO_SKIP = "remove them or move them aside (eval and predict read every image they are given)"


def load_for_inference(path: str | Path, device: torch.device, batch: int = 1, views: int = 1) -> Loaded:
    """A checkpoint's network (eval mode), classes and preprocessing; `batch` is checked against
    the input budget before any weight exists."""
    payload = load_checkpoint(path)
    # the blueprint inside the checkpoint: its errors are located there, not in the file it was once read from
    origin = payload.get("blueprint_file")
    bp = parse_blueprint(payload["blueprint"], file=f"{path} (blueprint {origin})" if origin else str(path))
    shape = bp.model.input
    (h, w), channels = shape.hw, shape.channels
    if channels not in (1, 3):
        raise ModelsError(Problem(f"the network reads {channels}-channel images; images decode to 1 (grayscale) or 3 (RGB)",
                                  (), str(path)))
    if batch * views * channels * h * w > MAX_INPUT_ELEMENTS:
        each = f" x {views} views of each image (`--tta`, `--tta-scales`)" if views > 1 else ""
        exc = BlueprintError(Problem(f"`--batch {batch}`{each} of {channels}x{h}x{w} images is "
                                     f"{batch * views * channels * h * w:,} values, over the limit of {MAX_INPUT_ELEMENTS:,}",
                                     (), where(),
                                     hint=f"use `--batch {max(1, MAX_INPUT_ELEMENTS // (views * channels * h * w))}` or less"
                                          + (", or fewer views" if views > 1 else "")))
        exc.subject = "with the options"
        raise exc
    # the payload read above is the model too: the file is read once
    net = model_from_saved(saved_from_payload(path, payload), device=device, blueprint=bp).eval()
    classes = payload.get("classes") or [str(i) for i in range(net.num_classes)]
    if len(classes) != net.num_classes:
        raise ModelsError(Problem(f"the checkpoint names {len(classes)} classes but its head has {net.num_classes} outputs",
                                  (), str(path)))
    if len(set(map(str, classes))) != len(classes):
        twice = next(str(c) for i, c in enumerate(classes) if str(c) in map(str, classes[:i]))
        raise ModelsError(Problem(f"the checkpoint names the class `{shown(twice[:60])}` twice", (), str(path)))
    recipe = payload.get("recipe") or {}
    try:
        augment = AugmentConfig.model_validate(recipe.get("augment", {}) if isinstance(recipe, dict) else None)
    except ValueError as exc:  # pydantic's ValidationError: a recipe this composer does not read
        first = str(exc).strip().splitlines()
        why = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(exc)
        raise ModelsError(Problem(f"the checkpoint's recipe has a preprocessing this composer does not read ({why[:200]})",
                                  (), str(path))) from None
    if not all(s > 0 for s in augment.std):
        raise ModelsError(Problem(f"the checkpoint's recipe normalises by std {list(augment.std)}, which is not positive: "
                                  "every input would become infinite", (), str(path)))
    return Loaded(net, [str(c) for c in classes], augment, (h, w), channels, Path(path))


def _loader(samples: Samples, m: Loaded, batch: int, workers: int, scales: Sequence[float] = (1.0,)) -> DataLoader:
    resizes = m.resizes(scales)
    ds = (ImageDataset(samples, resizes[0], m.size, m.channels) if len(resizes) == 1
          else ViewsDataset(samples, resizes, m.size, m.channels))
    return DataLoader(ds, batch_size=batch, num_workers=workers)


def split_file(checkpoint: str | Path, split: str) -> Path:
    """RUN/<split>.csv beside a run's checkpoint: the files the run trained or validated on."""
    path = Path(checkpoint).parent / f"{split}.csv"
    if not path.is_file():
        raise DataError(Problem(f"no record of the `{split}` split beside the checkpoint", (), str(path),
                                hint="runs record train.csv and val.csv in their folder; give the images with `--data`"))
    return path


def evaluate(checkpoint: str | Path, data: str | Path | None = None, *, split: Optional[str] = None, batch: int = 64,
             workers: int = 2, device: Optional[str] = None, progress: bool = True) -> dict:
    """top1, top5 (fractions), loss (plain cross-entropy), per-class accuracy and, up to
    MAX_CONFUSION classes, the confusion matrix of `data` (its `val` folder when there is one; an
    ImageFolder tree or a CSV of path,label), or of a `split` ("val", "train") the run recorded."""
    d = distributed.setup(device)  # the device and torchrun's variables checked before any work
    m = load_for_inference(checkpoint, d.device, batch)
    if split is not None:
        samples = scan_csv(split_file(checkpoint, split), m.classes)
    else:
        data = Path(data)
        if data.suffix.lower() == ".csv" and data.is_file():
            samples = scan_csv(data, m.classes)
        else:
            samples = scan_folder(data / "val" if (data / "val").is_dir() else data, m.classes)
    samples = check_images(samples, "refuse", fix=_NO_SKIP)
    loader = _loader(samples, m, batch, workers)
    normalize = Normalize(m.augment.mean, m.augment.std, m.channels).to(d.device)
    n = len(m.classes)
    k = min(5, n)
    F = torch.nn.functional
    loss_sum, correct1, correct5, total = 0.0, 0, 0, 0
    hits = torch.zeros(n, dtype=torch.long)
    counts = torch.zeros(n, dtype=torch.long)
    matrix = torch.zeros(n, n, dtype=torch.long) if n <= MAX_CONFUSION else None
    show = Progress(enabled=progress)
    show.start("evaluating", len(loader))
    with torch.no_grad():
        for images, labels in loader:
            logits = m.net(normalize(images.to(d.device))).float()
            labels = labels.to(d.device)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            top = logits.topk(k, dim=1).indices
            right = top[:, 0] == labels
            correct1 += right.sum().item()
            correct5 += (top == labels[:, None]).any(1).sum().item()
            total += labels.numel()
            labels, first = labels.cpu(), top[:, 0].cpu()
            counts += torch.bincount(labels, minlength=n)
            hits += torch.bincount(labels[right.cpu()], minlength=n)
            if matrix is not None:
                matrix += torch.bincount(labels * n + first, minlength=n * n).view(n, n)
            show.update(1, images=labels.numel())
    show.finish()
    total = max(total, 1)
    present = [i for i in range(n) if counts[i] > 0]
    return {"loss": loss_sum / total, "top1": correct1 / total, "top5": correct5 / total, "images": int(total),
            "per_class": {m.classes[i]: hits[i].item() / counts[i].item() for i in present},
            "confusion": matrix, "classes": m.classes}


def predict(checkpoints: str | Path | Sequence[str | Path], images: str | Path, *, batch: int = 64, workers: int = 2,
            tta: bool = False, scales: Optional[Sequence[float]] = None, device: Optional[str] = None,
            progress: bool = True, paths: Optional[list[Path]] = None) -> tuple[list[Path], torch.Tensor, list[str]]:
    """(image paths, probabilities (N, classes), class names) for every image under `images`.

    Probabilities are averaged over the test-time views of each image (`tta`: the horizontally
    flipped image too; `scales`: the evaluation resize times each factor, so 1.125 looks closer and
    0.875 takes in more of the image, always at the network's input size) and over the checkpoints
    (an ensemble; their class names, in order, must agree)."""
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    checkpoints = [Path(c) for c in checkpoints]
    if not 1 <= len(checkpoints) <= MAX_MODELS:
        raise ModelsError(Problem(f"an ensemble of {len(checkpoints)} checkpoints; give 1 to {MAX_MODELS}", (), where()))
    scales = list(scales or [1.0])
    d = distributed.setup(device)  # the device and torchrun's variables checked before any work
    root = Path(images)
    paths = list_images(root) if paths is None else paths
    total, classes = None, None
    for checkpoint in checkpoints:
        m = load_for_inference(checkpoint, d.device, batch, len(scales) * (2 if tta else 1))
        if classes is None:
            classes = m.classes
            samples = check_images(Samples(paths, [0] * len(paths), classes, root), "refuse", fix=_NO_SKIP)
        elif m.classes != classes:
            raise ModelsError(Problem(f"its classes ({_shown_list(m.classes)}) differ from those of `{checkpoints[0]}` "
                                      f"({_shown_list(classes)})", (), str(checkpoint),
                                      hint="an ensemble averages the probabilities of models trained on the same classes"))
        probs = _probabilities(m, _loader(samples, m, batch, workers, scales), d.device, tta, Progress(enabled=progress),
                               f"predicting ({checkpoint.name})" if len(checkpoints) > 1 else "predicting")
        total = probs if total is None else total + probs
        del m
    return paths, total / len(checkpoints), classes


def _shown_list(names: list[str]) -> str:
    return f"{len(names)}: " + ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _probabilities(m: Loaded, loader: DataLoader, device: torch.device, flip: bool, show: Progress, label: str) -> torch.Tensor:
    normalize = Normalize(m.augment.mean, m.augment.std, m.channels).to(device)
    show.start(label, len(loader))
    probs = []
    with torch.no_grad():
        for x, _ in loader:
            x = x.to(device)
            views = x.flatten(0, 1) if x.ndim == 5 else x  # (B*V, C, H, W): the scales of each image
            v = x.shape[1] if x.ndim == 5 else 1
            views = normalize(views)
            p = m.net(views).float().softmax(1)
            if flip:
                p = (p + m.net(views.flip(3)).float().softmax(1)) / 2
            probs.append(p.view(x.shape[0], v, -1).mean(1).cpu())
            show.update(1, images=x.shape[0])
    show.finish()
    return torch.cat(probs)


# --- the files predictions go to --------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading `=`, `+`, `-`, `@`, tab or carriage return
    would start a formula, so such a cell gets a leading `'` (OWASP's advice; a plain number such
    as `-1` is left alone: it is read as the number it is). Undecodable bytes of a file name (lone
    surrogates) are written as `\\xNN`."""
    text = shown(text)
    if text.startswith(_FORMULA) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def shown(text: str) -> str:
    """`text` with the bytes of a non-UTF-8 file name (surrogate escapes) written as `\\xNN`."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    out = []
    for ch in text:
        code = ord(ch)
        out.append(f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}" if 0xD800 <= code <= 0xDFFF else ch)
    return "".join(out)


def image_ids(root: Path, paths: list[Path], drop_extension: bool = False) -> list[str]:
    """The id of each image in a predictions file: its path relative to `root` (a folder), or its
    file name; without its extension with `drop_extension`. Ids must be unique."""
    root = Path(root)
    ids = []
    for p in paths:
        rel = p.relative_to(root) if root.is_dir() else Path(p.name)
        if drop_extension:
            rel = rel.with_suffix("")
        ids.append(rel.as_posix())
    if len(set(ids)) != len(ids):
        seen, twice = set(), None
        for i in ids:
            if i in seen:
                twice = i
                break
            seen.add(i)
        raise DataError(Problem(f"two images have the id `{twice}`", (), str(root),
                                hint="without `--drop-extension` each image's id keeps its extension"))
    return ids


def _write_rows(path: str | Path, rows: list[list[str]]) -> None:
    buf = io.StringIO()
    write_csv_rows(buf, rows)
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue().encode("utf-8"))


def write_predictions(path: str | Path, root: Path, paths: list[Path], probs: torch.Tensor, classes: list[str],
                      indices: bool = False, *, id_column: str = "path", label_column: str = "label",
                      drop_extension: bool = False, ids: Optional[list[str]] = None) -> None:
    """CSV of `id_column,label_column` rows: the image's id and its class (the name, or with
    `indices` its number: the name's value when every class name is an integer, else the index),
    written atomically, every text cell spreadsheet-safe."""
    ids = ids if ids is not None else image_ids(root, paths, drop_extension)
    rows = [[safe_cell(id_column), safe_cell(label_column)]]
    for name, k in zip(ids, probs.argmax(1).tolist()):
        rows.append([safe_cell(name), str(class_number(classes[k], k, classes)) if indices else safe_cell(classes[k])])
    _write_rows(path, rows)


def write_probabilities(path: str | Path, root: Path, paths: list[Path], probs: torch.Tensor, classes: list[str], *,
                        id_column: str = "path", drop_extension: bool = False, ids: Optional[list[str]] = None) -> None:
    """CSV with one column per class (headed by its name): each image's class probabilities."""
    ids = ids if ids is not None else image_ids(root, paths, drop_extension)
    rows = [[safe_cell(id_column)] + [safe_cell(c) for c in classes]]
    for name, p in zip(ids, probs.tolist()):
        rows.append([safe_cell(name)] + [f"{v:.6g}" for v in p])
    _write_rows(path, rows)
