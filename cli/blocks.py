"""`composer blocks`: every registered block family with its options, defaults and meaning."""

from __future__ import annotations

from composer.blocks import BLOCKS
from composer.reference import option_rows

from .common import out, table


def blocks() -> None:
    """List the registered block families and their options."""
    for name in sorted(BLOCKS):
        cls = BLOCKS[name]
        out(f"{name}: {(cls.__doc__ or '').strip().splitlines()[0]}")
        rows = [["  option", "default", "meaning"]]
        rows += [[f"  {n}", d.replace("`", ""), m] for n, _, d, m in option_rows(cls)]
        out(table(rows, right=set()))
        out()
