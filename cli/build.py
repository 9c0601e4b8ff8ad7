"""`composer build FILE [--weights CKPT [--from timm] [--partial]] [-o model.pt]`: build the module,
optionally initialise it from a checkpoint, summarise it, and optionally save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import composer

from .common import SetOption, check_output, fail, out, parse_sets, reading, shape, table, user_errors, write_error


def build(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Save weights and blueprint here (written atomically).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", "-w", help="Initialise from this checkpoint (.safetensors, or a .pt/.pth/.bin torch pickle).")] = None,
    weights_from: Annotated[str, typer.Option(
        "--from", help="Layout of the checkpoint's names: auto, composer, timm or transformers.")] = "auto",
    partial: Annotated[bool, typer.Option(
        "--partial", help="Load what fits and leave the rest at initialisation, instead of refusing.")] = False,
    parts: Annotated[Optional[str], typer.Option(
        "--parts", help="Transplant only these parts from --weights: stem, head and stage indices, e.g. `stem,0,1`.")] = None,
    weights_blueprint: Annotated[Optional[Path], typer.Option(
        "--weights-blueprint", help="Blueprint of the --weights checkpoint's architecture (for --parts from timm's layout).")] = None,
    set_: SetOption = None,
) -> None:
    """Build the network and print its stages, output shapes and parameters."""
    reading(file, weights, weights_blueprint)
    with user_errors():
        bp = composer.load(file, overrides=parse_sets(set_))
        plan = composer.plan(bp)
    if output is not None:
        check_output(output)
    if weights_from not in ("auto", "composer", "timm", "transformers"):
        fail(f"--from {weights_from}: expected auto, composer, timm or transformers")
    part_list = None
    if parts is not None:
        if weights is None:
            fail("--parts needs --weights")
        part_list = [int(p) if p.strip().isdigit() else p.strip() for p in parts.split(",") if p.strip()]
        bad = [p for p in part_list if isinstance(p, str) and p not in ("stem", "head")]
        if bad or not part_list:
            fail(f"--parts {parts}: expected stem, head and stage indices separated by commas, e.g. `stem,0,1`")
    with user_errors():
        source = composer.load(weights_blueprint) if weights_blueprint is not None else None
        net = composer.build(plan, seed=seed, weights=weights, weights_from=weights_from, strict=not partial,
                             parts=part_list, weights_blueprint=source)
    from composer.analysis.tracing import profile_module_parts

    params = profile_module_parts(net)
    rows = [["part", "block", "output", "params"]]
    rows += [[part.name, part.label, shape(list(part.out_shape)), f"{params[part.name]:,}"] for part in net.parts.top]
    total = sum(p.numel() for p in net.parameters())
    rows.append(["total", "", "", f"{total:,}"])
    out(f"{plan.name}: input {shape(list(plan.input_shape))}")
    out(table(rows, right={3}))
    if weights is not None:
        out(net.weights_report.summary())
    for report in getattr(net, "pretrained_reports", []):
        out(report.summary())
    if output is not None:
        try:
            with user_errors():
                composer.save(net, bp, output)
        except OSError as exc:
            write_error(output, exc)
        out(f"saved weights and blueprint to {output}")
