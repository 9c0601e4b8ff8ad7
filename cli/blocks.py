"""`composer blocks`: every registered block family with its options, defaults and meaning."""

from __future__ import annotations

import typer

from composer.blocks import BLOCKS
from composer.reference import block_summary, option_rows, render_blocks, sub_kinds

from .common import out, table


def blocks(
    markdown: bool = typer.Option(False, "--markdown", help="Print the catalogue as Markdown (docs/blocks.md)."),
) -> None:
    """List the registered block families and their options."""
    if markdown:
        out(render_blocks(), end="")
        return
    for name in sorted(BLOCKS):
        cls = BLOCKS[name]
        out(f"{name}: {block_summary(cls)}")
        rows = [["  option", "default", "meaning"]]
        rows += [[f"  {n}", d.replace("`", ""), m] for n, _, d, m in option_rows(cls)]
        out(table(rows, right=set()))
        for field, kind_name, kind in sub_kinds(cls):
            out(f"  {field}: {kind_name}: {block_summary(kind)}")
            rows = [["    option", "default", "meaning"]]
            rows += [[f"    {n}", d.replace("`", ""), m] for n, _, d, m in option_rows(kind)]
            out(table(rows, right=set()))
        out()
