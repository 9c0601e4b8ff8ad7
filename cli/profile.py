"""`composer profile FILE`: parameters and MACs per part, counted on meta tensors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

import composer

from .common import SetOption, out, parse_sets, shape, si, table, user_errors


def profile(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    size: Annotated[Optional[int], typer.Option(help="Input size (overrides the blueprint's).", min=1)] = None,
    batch: Annotated[int, typer.Option(help="Batch size the MACs are counted for.", min=1)] = 1,
    elementwise: Annotated[bool, typer.Option("--elementwise", help="Also count elementwise ops (one per output element).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object for programs.")] = False,
    set_: SetOption = None,
) -> None:
    """Count parameters and multiply-accumulates (MACs; FLOPs = 2 x MACs) without allocating weights."""
    with user_errors():
        bp = composer.load(file, overrides=parse_sets(set_, size))
        report = composer.profile(bp, batch=batch, elementwise=elementwise)
    if as_json:
        out(json.dumps(report.to_dict(), indent=2))
        return
    rows = [["part", "block", "output", "params", "MACs", "share"]]
    for p in report.parts:
        rows.append([p.name, p.label, shape(p.output_shape), f"{p.params:,}", si(p.macs), f"{100 * p.share:.1f}%"])
    rows.append(["total", "", "", f"{report.params:,}", si(report.macs), "100.0%"])
    out(f"{report.name}: input {shape(report.input)}")
    out(table(rows, right={3, 4, 5}))
    out(f"MACs: {si(report.macs)}  (FLOPs = 2 x MACs = {si(report.flops)})")
    if report.free_ops and not report.elementwise_counted:
        ops = ", ".join(f"{k} x{v}" for k, v in report.free_ops.items())
        out(f"elementwise ops treated as free (count them with --elementwise): {ops}")
    ops = ", ".join(f"{k} x{v}" for k, v in report.uncounted_ops.items()) or "none"
    out(f"uncounted ops: {ops}")
