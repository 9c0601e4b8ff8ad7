"""`composer draw FILE -o arch.svg|arch.png`: the network as a picture for a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import composer

from .common import SetOption, check_output, fail, out, parse_sets, quote, user_errors, write_picture


def draw(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Picture to write (atomically): .svg or .png.")],
    set_: SetOption = None,
) -> None:
    """Draw the network: stem, stages (family, depth, width, output shape), head, and each part's share of
    MACs and parameters."""
    from composer.tools.draw import FORMATS, draw as draw_picture

    if output.suffix.lower().lstrip(".") not in FORMATS:
        fail(f"cannot draw to `{output}`: the file must end in .svg or .png")
    check_output(output, file)
    with user_errors():
        plan = composer.plan(composer.load(file, overrides=parse_sets(set_)))
        report = composer.profile(plan)
    write_picture(lambda: draw_picture(plan, report, output), output)
    out(f"drew {quote(plan.name)} to {output}")
