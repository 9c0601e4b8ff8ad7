"""`composer build FILE [-o model.pt]`: build the module and summarise it; optionally save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import composer
from composer.profile import profile_module_parts

from .common import SetOption, check_output, out, parse_sets, shape, table, user_errors, write_error


def build(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Save weights and blueprint here (written atomically).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights.")] = 0,
    set_: SetOption = None,
) -> None:
    """Build the network and print its stages, output shapes and parameters."""
    with user_errors():
        bp = composer.load(file, overrides=parse_sets(set_))
        plan = composer.plan(bp)
    if output is not None:
        check_output(output)
    with user_errors():
        net = composer.build(plan, seed=seed)
    params = profile_module_parts(net)
    rows = [["part", "block", "output", "params"],
            ["stem", plan.stem.type, shape(list(plan.stem_shape)), f"{params['stem']:,}"]]
    for sp in plan.stages:
        rows.append([f"s{sp.index + 1}", f"{sp.letter}: {sp.label} x{sp.depth}", shape(sp.output_shape),
                     f"{params[f's{sp.index + 1}']:,}"])
    rows.append(["head", plan.head.type, shape(plan.output_shape), f"{params['head']:,}"])
    total = sum(p.numel() for p in net.parameters())
    rows.append(["total", "", "", f"{total:,}"])
    out(f"{plan.name}: input {shape(list(plan.input_shape))}")
    out(table(rows, right={3}))
    if output is not None:
        try:
            with user_errors():
                composer.save(net, bp, output)
        except OSError as exc:
            write_error(output, exc)
        out(f"saved weights and blueprint to {output}")
