"""`composer train BLUEPRINT --data DIR`: train a network; checkpoints, metrics and curves in OUT.

Every problem with the flags, the blueprint, the recipe and the data is found before any work
(and before torchrun starts any process) and reported in one go."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import composer

from .common import SetOption, command_line_error, fail, out as say, parse_sets, quote, user_errors


def split_sets(items: list[str] | None) -> tuple[dict, dict]:
    """`--set recipe.KEY=V` goes to the recipe, any other `--set` to the blueprint."""
    sets = parse_sets(items)
    recipe = {k.removeprefix("recipe."): v for k, v in sets.items() if k.startswith("recipe.")}
    blueprint = {k: v for k, v in sets.items() if not k.startswith("recipe.")}
    return blueprint, recipe


def parse_parts(parts: Optional[str], weights: Optional[str]) -> Optional[list]:
    """`--parts stem,0,1` -> ["stem", 0, 1] (the parts `composer build --parts` takes)."""
    if parts is None:
        return None
    if weights is None:
        raise command_line_error("`--parts` needs `--weights`")
    items = [int(p) if p.strip().isascii() and p.strip().isdecimal() else p.strip() for p in parts.split(",") if p.strip()]
    if not items or any(isinstance(p, str) and p not in ("stem", "head") for p in items):
        raise command_line_error(f"`--parts {quote(parts)}`: expected stem, head and stage indices separated by commas, e.g. `stem,0,1`")
    return items


def parse_batch(batch: Optional[str]) -> tuple[bool, Optional[int]]:
    if batch is None:
        return False, None
    if batch.strip().lower() == "auto":
        return True, None
    text = batch.strip()
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= 1_000_000:
        raise command_line_error(f"`--batch {quote(batch)}`: expected a number from 1 to 1,000,000, or `auto`")
    return False, int(text)


def train(
    blueprint: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    data: Annotated[Path, typer.Option("--data", help="Images: DIR/train/<class>/* (+ DIR/val/<class>/*), DIR/<class>/*, or a CSV of path,label.")],
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, max=100_000, help="Epochs (overrides the recipe; with --resume, extends the run).")] = None,
    batch: Annotated[Optional[str], typer.Option("--batch", help="Global batch per step (the lr follows by the recipe's `lr_scale`), or `auto`: what fits the device with at least 8 steps per epoch.")] = None,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Processes on this machine (starts torchrun; at most one per GPU or CPU core).")] = 1,
    out: Annotated[Path, typer.Option("--out", help="Run folder: last.pt, best.pt, metrics.jsonl/.csv, curves.png. One that holds a run is left alone: the run goes to OUT2, OUT3, ...")] = Path("runs/train"),
    exist_ok: Annotated[bool, typer.Option("--exist-ok", help="Train into --out even when it holds a run (its checkpoints are replaced).")] = False,
    recipe: Annotated[Optional[Path], typer.Option("--recipe", help="Training recipe YAML (see recipes/ and docs/recipes.md); default: recipes/default.yaml values.")] = None,
    weights: Annotated[Optional[str], typer.Option("--weights", help="Start from these weights: a file, or `hf-hub:ORG/NAME` (fine-tuning; a new head when the classes differ).")] = None,
    weights_from: Annotated[str, typer.Option("--from", help="Layout of the --weights names: auto, composer, timm or transformers.")] = "auto",
    partial: Annotated[bool, typer.Option("--partial", help="Load what fits from --weights and leave the rest at initialisation.")] = False,
    parts: Annotated[Optional[str], typer.Option("--parts", help="Transplant only these parts from --weights: stem, head and stage indices, e.g. `stem,0,1`.")] = None,
    weights_blueprint: Annotated[Optional[Path], typer.Option("--weights-blueprint", help="Blueprint of the --weights checkpoint's architecture (for --parts from timm's layout).")] = None,
    size: Annotated[Optional[int], typer.Option("--size", min=8, max=4096, help="Input size to train at (overrides the blueprint's, as `profile --size`).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in OUT from last.pt (a finished run says so and changes nothing).")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:N, gpu or mps (default: the first GPU when there is one).")] = None,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", help="Recompute activations in the backward pass (less memory; `--batch auto` counts it). Same as `--set recipe.grad_checkpointing=true`.")] = False,
    set_: SetOption = None,
) -> None:
    """Train a blueprint on a folder of images. `--set recipe.KEY=VALUE` changes the recipe,
    any other `--set` the blueprint."""
    if grad_checkpointing:  # a recipe value, so a resumed run and the torchrun workers keep it
        set_ = [*(set_ or []), "recipe.grad_checkpointing=true"]
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        fail(f"`--out {out}`: it is not a directory; the run folder must be a directory or not exist yet")
    from composer.train import distributed
    worker = bool(os.environ.get(distributed.LAUNCHED_ENV)) and "TORCHELASTIC_RUN_ID" in os.environ
    with user_errors(), _worker_errors(worker):
        plan = _check(blueprint, data, epochs, batch, devices, out, recipe, weights, weights_from, parts, weights_blueprint,
                      size, resume, device, set_)
    from composer.train import MissingExtra, runs, train as run
    if plan["prep"] is not None and plan["prep"].complete:
        with user_errors():
            run(plan["bp"], data, plan["recipe"], out, resume=True, device=device, exist_ok=True, prepared=plan["prep"])
        return
    if not (resume or exist_ok or worker):
        with user_errors():
            chosen = runs.free_folder(out)
        if chosen != out:
            say(f"{out} holds a run; writing this one to {chosen}")
        out = chosen
    if devices > 1 and not worker:
        _launch(plan, blueprint, data, epochs, batch, devices, out, recipe, weights, weights_from, partial, parts,
                weights_blueprint, size, resume, device, set_)
        return
    with user_errors(), _worker_errors(worker):
        try:
            run(plan["bp"], data, plan["recipe"], out, resume=resume, weights=weights, weights_from=weights_from,
                partial=partial, parts=plan["parts"], weights_blueprint=plan["weights_bp"], auto=plan["auto"],
                batch=plan["batch"], device=device, exist_ok=True, prepared=plan["prep"])
        except MissingExtra as exc:
            fail(str(exc))


def _check(blueprint, data, epochs, batch, devices, out, recipe, weights, weights_from, parts, weights_blueprint,
           size, resume, device, set_) -> dict:
    """Every check of the command before work; one report of every problem found."""
    from composer.train import distributed, load_recipe
    from composer.train.data import find_splits
    from composer.train.loop import Gather, prepare
    gather = Gather()
    sets = gather.attempt(split_sets, set_) or ({}, {})
    bp_sets, recipe_sets = sets
    if size is not None:
        bp_sets["input.size"] = size
    auto, fixed = gather.attempt(parse_batch, batch) or (False, None)
    gather.attempt(distributed.environment)  # a stray WORLD_SIZE/RANK in the shell, in the same report
    dev = gather.attempt(distributed.resolve_device, device)
    if dev is not None and devices > 1 and gather.attempt(distributed.check_processes, devices, dev) is None:
        dev = None  # no batch checks for a process count that will not start
    from composer.weights import LAYOUTS
    if weights_from not in LAYOUTS:
        gather.add(command_line_error(f"`--from {quote(weights_from)}`: expected {', '.join(LAYOUTS[:-1])} or {LAYOUTS[-1]}"))
    part_list = gather.attempt(parse_parts, parts, weights)
    weights_bp = gather.attempt(composer.load, weights_blueprint) if weights_blueprint is not None else None
    bp = gather.attempt(composer.load, blueprint, overrides=bp_sets)
    if resume and (out / "last.pt").exists():
        rc = gather.attempt(_resumed_recipe, out / "last.pt", epochs)
    else:
        if epochs is not None:
            recipe_sets["epochs"] = epochs
        rc = gather.attempt(load_recipe, recipe, overrides=recipe_sets)
    prep = None
    if bp is not None and rc is not None and dev is not None:
        d = distributed.Dist(world=devices, device=dev)
        prep = gather.attempt(prepare, bp, Path(data), rc, out, d, resume=resume, auto=auto, batch=fixed)
    else:  # the data's own problems, with the default split
        gather.attempt(find_splits, Path(data), 0.1, 0)
    gather.done()
    return {"bp": bp, "recipe": rc, "prep": prep, "auto": auto, "batch": fixed, "parts": part_list, "weights_bp": weights_bp,
            "device": dev}


def _resumed_recipe(path: Path, epochs: Optional[int]):
    """A resumed run keeps the recipe it started with; only `--epochs` may extend it."""
    from pydantic import ValidationError

    from composer.blueprint import Problem
    from composer.train import Recipe
    from composer.train.checkpoints import load_checkpoint
    from composer.train.data import DataError
    saved = load_checkpoint(path).get("recipe")
    if not isinstance(saved, dict):
        raise DataError(Problem("holds no recipe: it is not a training checkpoint", (), str(path),
                                hint="resume from the last.pt a run wrote, or start a new run"))
    if epochs is not None:
        saved = {**saved, "epochs": epochs}
    try:
        return Recipe.model_validate(saved)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise DataError(Problem(f"its recipe is not valid: {where}: {first['msg']}", (), str(path),
                                hint="resume from the last.pt a run wrote, or start a new run")) from None


class _worker_errors:
    """In a worker of `--devices N`: a user mistake goes to the launcher's error folder (it prints
    the failing rank's message once) instead of every worker's stderr."""

    def __init__(self, worker: bool):
        self.worker = worker

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        from composer.blueprint import BlueprintError
        from composer.train import distributed
        folder = os.environ.get(distributed.ERRORS_ENV)
        if not (self.worker and folder and isinstance(exc, BlueprintError)):
            return False
        n = len(exc.problems)
        lines = [f"error: {n} problem{'s' if n != 1 else ''} {getattr(exc, 'subject', 'in the blueprint')}"]
        lines += [f"  {p}" for p in exc.problems]
        rank = os.environ.get("RANK", "0")
        try:
            Path(folder, f"rank-{rank if rank.isdecimal() else 0}.txt").write_text("\n".join(lines) + "\n")
        except OSError:
            return False  # the worker prints it itself
        raise typer.Exit(1)


def _launch(plan: dict, blueprint, data, epochs, batch, devices, out, recipe, weights, weights_from, partial, parts,
            weights_blueprint, size, resume, device, set_) -> None:
    """Start torchrun with `devices` processes on this machine and wait for it; the launcher holds
    the run folder's lock and passes its signals on."""
    import signal

    from composer.train import distributed, runs
    args = ["train", str(blueprint), "--data", str(data), "--out", str(out), "--exist-ok", "--devices", str(devices)]
    options: list[tuple[str, Any]] = [("--epochs", epochs), ("--batch", batch), ("--recipe", recipe), ("--weights", weights),
                                      ("--parts", parts), ("--weights-blueprint", weights_blueprint), ("--size", size),
                                      ("--device", device)]
    args += [a for name, value in options if value is not None for a in (name, str(value))]
    args += ["--from", weights_from] if weights_from != "auto" else []
    args += ["--partial"] if partial else []
    args += ["--resume"] if resume else []
    for item in set_ or []:
        args += ["--set", item]
    dev = plan["device"]
    cores = distributed.free_cores()[1]
    workers = plan["recipe"].data.workers
    threads = distributed.cpu_split(cores, devices, workers)[0] if dev.type == "cpu" else max(1, cores // devices)
    errors = Path(tempfile.mkdtemp(prefix="composer-workers-"))
    try:
        with user_errors():
            with runs.locked(out):
                say(f"starting {devices} processes ({threads} torch thread(s) each) with torchrun; writing to {out}")
                code = distributed.launch(devices, args, threads, errors, lock_held=str(out.resolve() / runs.LOCK))
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
            fail(f"stopped by {name}; every worker was stopped with it. Continue the run with `--resume --out {out}`")
        if code != 0:
            message = distributed.worker_errors(errors)
            if message:
                typer.echo(message.rstrip("\n"), err=True)
                raise typer.Exit(1)
            fail(f"a training process failed (exit code {code}); its output is above")
    finally:
        shutil.rmtree(errors, ignore_errors=True)
