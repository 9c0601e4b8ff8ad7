"""`composer export BLUEPRINT|MODEL.pt --format onnx|export [-o FILE]`: ONNX or a torch.export program."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

import composer

from .common import SetOption, check_output, fail, out, parse_sets, shape, user_errors, write_error

MODEL_SUFFIXES = (".pt", ".pth", ".safetensors")  # what composer.load_model reads


class Format(str, Enum):
    onnx = "onnx"
    export = "export"


def export(
    source: Annotated[Path, typer.Argument(help="Blueprint YAML file, or a model saved by `composer build -o`.")],
    format: Annotated[Format, typer.Option("--format", "-f", help="`onnx` (checked with onnxruntime) or `export` "
                                           "(a torch.export program, .pt2).")] = Format.onnx,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write (default: the source's "
                                                   "name with .onnx / .pt2, in the current directory).")] = None,
    size: Annotated[Optional[int], typer.Option(help="Input size to export for (default: the blueprint's).", min=1)] = None,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Leave the batch dimension free.")] = False,
    tolerance: Annotated[float, typer.Option(help="Largest difference from PyTorch's outputs accepted.")] = 1e-4,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights (blueprints only).")] = 0,
    set_: SetOption = None,
) -> None:
    """Export the network of a blueprint (the one `composer build` builds) or a saved model, check the
    exported file against PyTorch, and write it atomically; exit 1 when they differ beyond tolerance."""
    from composer.export import FORMATS, ExportError, check_room, example_input, export_onnx, export_program, facts_for

    output = output or Path(source.stem + FORMATS[format.value])
    if output.suffix.lower() != FORMATS[format.value]:
        fail(f"cannot export to `{output}`: `--format {format.value}` writes a {FORMATS[format.value]} file")
    if not (math.isfinite(tolerance) and tolerance >= 0):
        fail(f"`--tolerance {tolerance}`: expected a finite number of at least 0")
    check_output(output, source)
    batch = 4 if dynamic_batch else 1  # the largest batch the export runs (the check input of a free batch)
    entries: dict = {}
    with user_errors():
        if source.suffix.lower() in MODEL_SUFFIXES:
            if set_:
                fail("`--set` changes a blueprint; a saved model is exported as it was saved")
            saved = _read_saved(source)
            entries = saved.entries
            plan = composer.plan(composer.loads(saved.blueprint_text, file=saved.blueprint_name))
            if size is not None:
                plan = _at_size(plan, size)
            _check_room(check_room, plan, batch, ExportError)
            net = _load_model(source)
        else:
            overrides = parse_sets(set_)
            if size is not None:
                overrides["input.size"] = size  # built for that size: position tables and grids follow
            plan = composer.plan(composer.load(source, overrides=overrides))
            _check_room(check_room, plan, batch, ExportError)
            net = composer.build(plan, seed=seed)
    try:
        example_input(net, size)  # refuse a size the network cannot take before any work
    except composer.InputSizeError as exc:
        fail(str(exc))
    except ExportError as exc:
        fail(str(exc))
    try:
        facts = facts_for(net, entries, size)
    except ExportError as exc:  # what a saved model says of itself does not hold together
        fail(f"{source}: {exc}")
    out(f"{net.name}: exporting {shape(['B' if dynamic_batch else 1, *_hw(net, size)])} "
        f"with {'torch.onnx' if format is Format.onnx else 'torch.export'} ...")
    try:
        run = export_onnx if format is Format.onnx else export_program
        report = run(net, output, size=size, dynamic_batch=dynamic_batch, tolerance=tolerance, facts=facts)
    except ExportError as exc:
        fail(str(exc))
    except OSError as exc:
        write_error(output, exc)
    out(f"checked with {report.checked_with}: max abs difference {report.max_abs_diff:.3g} "
        f"(tolerance {report.tolerance:g})")
    out(facts.summary())
    out(f"wrote {report.path} ({report.bytes / 2**20:.1f} MiB)")


def _check_room(check_room, plan, batch: int, error: type) -> None:
    try:
        check_room(plan, batch)
    except error as exc:
        fail(str(exc))


def _hw(net, size: int | None) -> list[int]:
    c, h, w = net.input_shape
    return [c, size, size] if size else [c, h, w]


def _at_size(plan, size: int):
    """A saved model exported at another size: its blueprint planned at that size (the language's
    limits on input.size, located at the command line), before any tensor exists."""
    from composer.api import apply_overrides
    from composer.blueprint import validate

    return composer.plan(validate(apply_overrides(plan.blueprint.source, {"input.size": size})))


def _read_saved(path: Path):
    from composer.weights.saved import read_saved

    if not path.is_file():
        fail(f"cannot read `{path}`: no such file")
    return read_saved(path)


def _load_model(path: Path):
    if not path.is_file():
        fail(f"cannot read `{path}`: no such file")
    try:
        return composer.load_model(path)
    except composer.BlueprintError:
        raise
    except Exception as exc:  # not a torch file, or not one `composer build -o` wrote
        fail(f"cannot read `{path}` as a saved composer model: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
