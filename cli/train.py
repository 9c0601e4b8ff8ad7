"""`composer train BLUEPRINT --data DIR`: train a network; checkpoints, metrics and curves in OUT."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Annotated, Optional

import typer

import composer

from .common import SetOption, command_line_error, fail, parse_sets, user_errors


def split_sets(items: list[str] | None) -> tuple[dict, dict]:
    """`--set recipe.KEY=V` goes to the recipe, any other `--set` to the blueprint."""
    sets = parse_sets(items)
    recipe = {k.removeprefix("recipe."): v for k, v in sets.items() if k.startswith("recipe.")}
    blueprint = {k: v for k, v in sets.items() if not k.startswith("recipe.")}
    return blueprint, recipe


def train(
    blueprint: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    data: Annotated[Path, typer.Option("--data", help="Images: DIR/train/<class>/* (+ DIR/val/<class>/*), DIR/<class>/*, or a CSV of path,label.")],
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Epochs (overrides the recipe).")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", help="Global batch per step, or `auto`: the largest that fits the device.")] = None,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Processes on this machine (starts torchrun; one per GPU).")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, metrics.jsonl, curves.png.")] = Path("runs/train"),
    recipe: Annotated[Optional[Path], typer.Option("--recipe", help="Training recipe YAML (see recipes/); default: recipes/default.yaml values.")] = None,
    weights: Annotated[Optional[Path], typer.Option("--weights", help="Start from these weights (fine-tuning; a new head when the classes differ).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in OUT from last.pt.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu or cuda (default: cuda when available).")] = None,
    set_: SetOption = None,
) -> None:
    """Train a blueprint on a folder of images. `--set recipe.KEY=VALUE` changes the recipe,
    any other `--set` the blueprint."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        fail(f"`--out {out}`: it is not a directory; the run folder must be a directory or not exist yet")
    with user_errors():
        bp_sets, recipe_sets = split_sets(set_)
        if epochs is not None:
            recipe_sets["epochs"] = epochs
        auto = batch == "auto"
        if batch is not None and not auto:
            try:
                recipe_sets["batch"] = int(batch)
            except ValueError:
                raise command_line_error(f"`--batch {batch}`: expected a number or `auto`") from None
        bp = composer.load(blueprint, overrides=bp_sets)
        composer.plan(bp)
        from composer.train import load_recipe
        if resume and (out / "last.pt").exists():
            rc = _resumed_recipe(out / "last.pt", recipe_sets.get("epochs"))
        else:
            rc = load_recipe(recipe, overrides=recipe_sets)
    if devices > 1 and "WORLD_SIZE" not in os.environ:
        import torch
        if (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda") and devices > torch.cuda.device_count():
            fail(f"`--devices {devices}`: this machine has {torch.cuda.device_count()} GPU(s); use `--device cpu` for CPU processes")
        from composer.train.distributed import torchrun_command
        args = ["train", str(blueprint), "--data", str(data), "--out", str(out)]
        args += ["--epochs", str(epochs)] if epochs is not None else []
        args += ["--batch", batch] if batch is not None else []
        args += ["--recipe", str(recipe)] if recipe is not None else []
        args += ["--weights", str(weights)] if weights is not None else []
        args += ["--resume"] if resume else []
        args += ["--device", device] if device is not None else []
        for item in set_ or []:
            args += ["--set", item]
        raise typer.Exit(subprocess.call(torchrun_command(devices, args)))
    from composer.train import MissingExtra, train as run
    with user_errors():
        try:
            run(bp, data, rc, out, resume=resume, weights=weights, auto=auto, device=device)
        except MissingExtra as exc:
            fail(str(exc))


def _resumed_recipe(path: Path, epochs: Optional[int]):
    """A resumed run keeps the recipe it started with; only `--epochs` may extend it."""
    from composer.train import Recipe
    from composer.train.checkpoints import load_checkpoint
    saved = load_checkpoint(path).get("recipe") or {}
    if epochs is not None:
        saved = {**saved, "epochs": epochs}
    return Recipe.model_validate(saved)
