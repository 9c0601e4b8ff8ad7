"""`composer eval CHECKPOINT --data DIR`: top-1, top-5, per-class accuracy and a confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_output, fail, out, table, user_errors


def eval_(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint of `composer train` (best.pt, last.pt).")],
    data: Annotated[Path, typer.Option("--data", help="DIR/val/<class>/* when DIR/val exists, else DIR/<class>/*, or a CSV of path,label.")],
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per batch.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Decoding worker processes.")] = 2,
    confusion: Annotated[Optional[Path], typer.Option("--confusion", help="Write the confusion matrix PNG here.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON: top1, top5 (fractions), loss, images, per_class.")] = False,
) -> None:
    """Evaluate a checkpoint on labelled images."""
    if not checkpoint.is_file():
        fail(f"{checkpoint}: no such checkpoint")
    if confusion is not None:
        check_output(confusion)
    from composer.train import MissingExtra, evaluate
    from composer.train.report import plot_confusion
    with user_errors():
        try:
            r = evaluate(checkpoint, data, batch=batch, workers=workers, device=device, progress=not json_)
            if confusion is not None:
                plot_confusion(r["confusion"], r["classes"], confusion)
        except MissingExtra as exc:
            fail(str(exc))
    if json_:
        out(json.dumps({k: r[k] for k in ("top1", "top5", "loss", "images", "per_class")}, indent=2))
        return
    out(f"{checkpoint}: {r['images']} images, top-1 {r['top1']:.2%}, top-5 {r['top5']:.2%}, loss {r['loss']:.4f}")
    rows = [["class", "accuracy"]] + [[c, f"{a:.2%}"] for c, a in r["per_class"].items()]
    out(table(rows, right={1}))
    if confusion is not None:
        out(f"wrote {confusion}")
