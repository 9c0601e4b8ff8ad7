"""`composer predict CHECKPOINT... PATH --csv FILE`: one `path,label` row per image under PATH.

Several checkpoints before PATH form an ensemble (their probabilities averaged; their class names
must agree). `--probs FILE` writes each class's probability; `--tta` adds the flipped image,
`--tta-scales` other zooms; `--id-column`, `--label-column` and `--drop-extension` shape the file
for a competition's submission format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from composer.io.files import reading_many

from .common import check_output, fail, out, quote, reading, user_errors


def _scales(text: Optional[str]) -> Optional[list[float]]:
    if text is None:
        return None
    from composer.train.evaluation import MAX_SCALES
    parts = [p.strip() for p in text.split(",")]
    if len(parts) > MAX_SCALES:
        fail(f"`--tta-scales`: {len(parts)} scales, over the limit of {MAX_SCALES}")
    scales = []
    for p in parts:
        try:
            v = float(p)
        except ValueError:
            v = float("nan")
        if not 0.25 <= v <= 4:  # also refuses nan
            fail(f"`--tta-scales {quote(text)}`: `{quote(p, 20)}` is not a number from 0.25 to 4 (e.g. 0.875,1,1.125)")
        scales.append(v)
    return scales


def predict(
    paths: Annotated[list[Path], typer.Argument(
        metavar="CHECKPOINT... IMAGES",
        help="One or more checkpoints of `composer train` (several: an ensemble), then an image or a folder searched recursively.")],
    csv_: Annotated[Optional[Path], typer.Option("--csv", help="Write one row per image (id, predicted class) here, atomically.")] = None,
    probs: Annotated[Optional[Path], typer.Option("--probs", help="Write each image's class probabilities here (a column per class).")] = None,
    indices: Annotated[bool, typer.Option("--indices", help="Write class numbers instead of names: the name's value when every class name is an integer, else the class's index.")] = False,
    tta: Annotated[bool, typer.Option("--tta", help="Average with the horizontally flipped image.")] = False,
    tta_scales: Annotated[Optional[str], typer.Option("--tta-scales", metavar="S,S,...", help="Average over zooms: the evaluation resize times each factor (e.g. 0.875,1,1.125; at the network's input size).")] = None,
    id_column: Annotated[str, typer.Option("--id-column", help="Header of the image column.")] = "path",
    label_column: Annotated[str, typer.Option("--label-column", help="Header of the class column.")] = "label",
    drop_extension: Annotated[bool, typer.Option("--drop-extension", help="Ids without the file extension (`img_01`, not `img_01.jpg`).")] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, max=4096, help="Images per batch.")] = 64,
    workers: Annotated[int, typer.Option("--workers", min=0, max=256, help="Decoding worker processes (at most the usable cores).")] = 2,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
) -> None:
    """Predict the class of every image under IMAGES (averaged over several checkpoints: an
    ensemble); write a submission CSV and/or the class probabilities."""
    if len(paths) < 2:
        fail("give one or more checkpoints, then the images: `composer predict best.pt IMAGES --csv submission.csv`")
    *checkpoints, images = paths
    for checkpoint in checkpoints:
        if not checkpoint.is_file():
            fail(f"{checkpoint}: no such checkpoint")
    if csv_ is None and probs is None:
        fail("nothing to write: give `--csv FILE` (predicted classes) or `--probs FILE` (probabilities), or both")
    if csv_ is not None and probs is not None and csv_.absolute() == probs.absolute():
        fail(f"`--csv` and `--probs` name the same file `{csv_}`")
    for name, value in (("--id-column", id_column), ("--label-column", label_column)):
        if not value.strip() or len(value) > 200:
            fail(f"`{name} {quote(value)}`: a column name of 1 to 200 characters")
    if id_column == label_column:
        fail(f"`--id-column` and `--label-column` are both `{quote(id_column)}`")
    scales = _scales(tta_scales)
    reading(*checkpoints, images)
    for target in (csv_, probs):
        if target is not None:
            check_output(target)
    from composer.train import MissingExtra, predict as run
    from composer.train.data import list_images, usable_cores
    from composer.train.evaluation import image_ids, write_predictions, write_probabilities
    with user_errors():
        from composer.train.distributed import resolve_device
        resolve_device(device)  # before the images are listed and decoded
        try:
            listed = list_images(images)
            reading_many(listed)  # an output onto one of the images is refused before any work
            for target in (csv_, probs):
                if target is not None:
                    check_output(target)
            ids = image_ids(images, listed, drop_extension)  # duplicate ids refused before any work
            found, p, classes = run(checkpoints, images, batch=batch, workers=min(workers, usable_cores()), tta=tta,
                                    scales=scales, device=device, paths=listed)
        except MissingExtra as exc:
            fail(str(exc))
        if csv_ is not None:
            write_predictions(csv_, images, found, p, classes, indices=indices, id_column=id_column,
                              label_column=label_column, ids=ids)
            out(f"wrote {len(found)} predictions to {csv_}")
        if probs is not None:
            write_probabilities(probs, images, found, p, classes, id_column=id_column, ids=ids)
            out(f"wrote the probabilities of {len(classes)} classes for {len(found)} images to {probs}")
