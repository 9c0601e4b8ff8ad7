"""`composer eval CHECKPOINT --data DIR | --split val`: top-1, top-5, per-class accuracy and a confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_output, fail, out, reading, table, user_errors


def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint of `composer train` (best.pt, last.pt).")],
    data: Annotated[Optional[Path], typer.Option("--data", help="DIR/val/<class>/* when DIR/val exists, else DIR/<class>/*, or a CSV of path,label.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Instead of --data: `val` or `train`, the files the run recorded beside the checkpoint (RUN/val.csv, RUN/train.csv).")] = None,
    batch: Annotated[int, typer.Option("--batch", min=1, max=4096, help="Images per batch.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, max=256, help="Decoding worker processes (at most the usable cores).")] = 2,
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="Write the confusion matrix PNG here (up to 1,000 classes).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON: top1, top5 (fractions), loss (plain cross-entropy), images, per_class.")] = False,
) -> None:
    """Evaluate a checkpoint on labelled images. The loss is the plain cross-entropy (no label
    smoothing; training's val_loss applies the recipe's)."""
    if not checkpoint.is_file():
        fail(f"{checkpoint}: no such checkpoint")
    if (data is None) == (split is None):
        fail("give the images with `--data DIR` or a split the run recorded with `--split val` (one of them)")
    if split is not None and split not in ("val", "train"):
        fail(f"`--split {split}`: expected `val` or `train`")
    reading(checkpoint, *([data] if data is not None else []))
    if confusion is not None:
        check_output(confusion)
    from composer.train import MissingExtra, evaluate
    from composer.train.evaluation import MAX_CONFUSION
    from composer.train.extras import require
    from composer.train.report import plot_confusion
    from composer.train.data import usable_cores
    with user_errors():
        try:
            r = evaluate(checkpoint, data, split=split, batch=batch, workers=min(workers, usable_cores()), device=device,
                         progress=not json_)
            if confusion is not None and r["confusion"] is not None:
                require("matplotlib")
                plot_confusion(r["confusion"], r["classes"], confusion)
        except MissingExtra as exc:
            fail(str(exc))
    note = None
    if confusion is not None and r["confusion"] is None:
        note = (f"note: no confusion matrix for {len(r['classes']):,} classes (the limit is {MAX_CONFUSION:,}); "
                f"the per-class table holds each class's accuracy; {confusion} was not written")
        typer.echo(note, err=True)
    if json_:
        out(json.dumps({k: r[k] for k in ("top1", "top5", "loss", "images", "per_class")}, indent=2))
        return
    out(f"{checkpoint}: {r['images']} images, top-1 {r['top1']:.2%}, top-5 {r['top5']:.2%}, "
        f"cross-entropy {r['loss']:.4f} (without label smoothing)")
    rows = [["class", "accuracy"]] + [[c, f"{a:.2%}"] for c, a in r["per_class"].items()]
    out(table(rows, right={1}))
    if confusion is not None and note is None:
        out(f"wrote {confusion}")
