"""Evaluate and predict with a checkpoint of `composer train`."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader

from ..api import load_model, loads
from ..fileio import write_text
from . import distributed
from .augment import Normalize
from .checkpoints import load_checkpoint
from .data import ImageDataset, Samples, check_images, list_images, scan_csv, scan_folder
from .loop import evaluate_loader
from .recipe import AugmentConfig
from .report import Progress


@dataclass
class Loaded:
    net: torch.nn.Module
    classes: list[str]
    augment: AugmentConfig
    size: int


def load_for_inference(path: str | Path, device: torch.device) -> Loaded:
    payload = load_checkpoint(path)
    net = load_model(path, device=device).eval()
    classes = payload.get("classes") or [str(i) for i in range(net.num_classes)]
    augment = AugmentConfig.model_validate((payload.get("recipe") or {}).get("augment", {}))
    size = loads(payload["blueprint"], file=payload.get("blueprint_file")).model.input.hw[0]
    return Loaded(net, list(classes), augment, size)


def evaluate(checkpoint: str | Path, data: str | Path, *, batch: int = 64, workers: int = 2,
             device: Optional[str] = None, progress: bool = True) -> dict:
    """top1, top5 (fractions), per-class accuracy and the confusion matrix of `data` (its `val`
    folder when there is one; an ImageFolder tree or a CSV of path,label)."""
    d = distributed.setup(device)
    m = load_for_inference(checkpoint, d.device)
    data = Path(data)
    if data.suffix.lower() == ".csv" and data.is_file():
        samples = scan_csv(data, m.classes)
    else:
        samples = scan_folder(data / "val" if (data / "val").is_dir() else data, m.classes)
    samples = check_images(samples, "refuse")
    ds = ImageDataset(samples, round(m.size / m.augment.crop_pct), m.size)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers)
    show = Progress(enabled=progress)
    r = evaluate_loader(m.net, loader, Normalize(m.augment.mean, m.augment.std).to(d.device), d, len(m.classes),
                        confusion=True, show=show)
    cm = r.pop("confusion")
    present = [i for i in range(len(m.classes)) if cm[i].sum() > 0]
    r["per_class"] = {m.classes[i]: cm[i, i].item() / cm[i].sum().item() for i in present}
    r["confusion"] = cm
    r["classes"] = m.classes
    return r


def predict(checkpoint: str | Path, images: str | Path, *, batch: int = 64, workers: int = 2, tta: bool = False,
            device: Optional[str] = None, progress: bool = True) -> tuple[list[Path], torch.Tensor, list[str]]:
    """(image paths, probabilities (N, classes), class names) for every image under `images`."""
    d = distributed.setup(device)
    m = load_for_inference(checkpoint, d.device)
    root = Path(images)
    paths = list_images(root)
    samples = check_images(Samples(paths, [0] * len(paths), m.classes, root), "refuse")
    ds = ImageDataset(samples, round(m.size / m.augment.crop_pct), m.size)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers)
    normalize = Normalize(m.augment.mean, m.augment.std).to(d.device)
    show = Progress(enabled=progress)
    show.start("predicting", len(loader))
    probs = []
    with torch.no_grad():
        for x, _ in loader:
            x = normalize(x.to(d.device))
            p = m.net(x).float().softmax(1)
            if tta:
                p = (p + m.net(x.flip(3)).float().softmax(1)) / 2
            probs.append(p.cpu())
            show.update(1, images=x.shape[0])
    show.finish()
    return paths, torch.cat(probs), m.classes


def write_predictions(path: str | Path, root: Path, paths: list[Path], probs: torch.Tensor, classes: list[str],
                      indices: bool = False) -> None:
    """CSV `path,label` (path relative to `root` when it is a folder), written atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", "label"])
    for p, k in zip(paths, probs.argmax(1).tolist()):
        name = p.relative_to(root).as_posix() if root.is_dir() else p.name
        w.writerow([name, k if indices else classes[k]])
    write_text(path, buf.getvalue())
