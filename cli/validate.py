"""`composer validate FILE`: check a blueprint and its shapes; exit 1 with located errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import composer

from .common import SetOption, out, parse_sets, shape, user_errors


def validate(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    set_: SetOption = None,
) -> None:
    """Validate a blueprint: schema, layout and shapes. Prints a one-line summary."""
    with user_errors():
        bp = composer.load(file, overrides=parse_sets(set_))
        plan = composer.plan(bp)
    blocks = sum(s.depth for s in plan.stages)
    out(f"{file}: ok: {plan.name}, layout {bp.model.layout}, {_count(len(plan.stages), 'stage')}, {_count(blocks, 'block')}, "
        f"input {shape(list(plan.input_shape))} -> {shape(plan.output_shape)}")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
