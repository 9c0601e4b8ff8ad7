"""`composer predict CHECKPOINT PATH --csv FILE`: one `path,label` row per image under PATH."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_output, fail, out, user_errors


def predict(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint of `composer train` (best.pt, last.pt).")],
    images: Annotated[Path, typer.Argument(help="An image, or a folder searched recursively for images.")],
    csv_: Annotated[Path, typer.Option("--csv", help="Write `path,label` rows here (atomically).")],
    indices: Annotated[bool, typer.Option("--indices", help="Write class indices instead of class names.")] = False,
    tta: Annotated[bool, typer.Option("--tta", help="Average with the horizontally flipped image.")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per batch.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Decoding worker processes.")] = 2,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
) -> None:
    """Predict the class of every image under PATH; write a submission CSV."""
    if not checkpoint.is_file():
        fail(f"{checkpoint}: no such checkpoint")
    check_output(csv_)
    from composer.train import MissingExtra, predict as run, write_predictions
    with user_errors():
        try:
            paths, probs, classes = run(checkpoint, images, batch=batch, workers=workers, tta=tta, device=device)
        except MissingExtra as exc:
            fail(str(exc))
    write_predictions(csv_, images, paths, probs, classes, indices=indices)
    out(f"wrote {len(paths)} predictions to {csv_}")
