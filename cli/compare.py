"""`composer compare A.yaml B.yaml ...`: several networks in one table (and one plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

import composer
from composer.blueprint import BlueprintError
from composer.tools.compare import compare as compare_rows, plot

from .common import SetOption, check_output, fail, out, parse_sets, quote, reading, si, table, user_errors, write_picture
from .profile import DType, Optimizer, bytes_text


def compare(
    files: Annotated[list[Path], typer.Argument(help="Blueprint YAML files.")],
    size: Annotated[Optional[int], typer.Option(help="Input size for every network (overrides the blueprints').", min=1)] = None,
    train: Annotated[bool, typer.Option("--train", help="Also estimate training memory (needs --batch).")] = False,
    batch: Annotated[Optional[int], typer.Option(help="With --train: batch size of the training step.", min=1)] = None,
    dtype: Annotated[DType, typer.Option(help="With --train: dtype of weights, gradients, state and activations.")] = DType.float32,
    optimizer: Annotated[Optimizer, typer.Option(help="With --train: sgd, momentum, adam or adamw.")] = Optimizer.adamw,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list, one object per network.")] = False,
    plot_file: Annotated[Optional[Path], typer.Option("--plot", help="Write a scatter plot (MACs against parameters) here: .png or .svg.")] = None,
    set_: SetOption = None,
) -> None:
    """Compare networks: parameters, MACs, per-stage split and (with --train) training memory."""
    reading(*files)
    if train and batch is None:
        fail("`--train` needs `--batch N`, the batch of the training step")
    if plot_file is not None:
        if plot_file.suffix.lower() not in (".png", ".svg"):
            fail(f"cannot plot to `{plot_file}`: the file must end in .png or .svg")
        check_output(plot_file)
    with user_errors():
        overrides = parse_sets(set_)
        if size is not None:
            overrides["input.size"] = size
        plans, problems = [], []
        for f in files:
            try:
                plans.append(composer.plan(composer.load(f, overrides=overrides)))
            except BlueprintError as exc:
                problems += exc.problems
        if problems:
            raise BlueprintError(problems)
        rows = compare_rows(plans, batch=batch if train else None, dtype=dtype.value, optimizer=optimizer.value)
    if plot_file is not None:
        write_picture(lambda: plot(rows, plot_file), plot_file)
    if as_json:
        out(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    header = ["network", "input", "params", "MACs"] + (["train memory"] if train else []) + ["MACs by part"]
    lines = [header]
    for r in rows:
        split = " ".join(f"{name} {100 * p['share']:.0f}%" for name, p in r.parts.items())
        memory = [bytes_text(r.train_memory)] if train else []
        lines.append([quote(r.name), "x".join(map(str, r.input)), f"{r.params:,}", si(r.macs), *memory, split])
    out(table(lines, right={2, 3} | ({4} if train else set())))
    if train:
        out(f"training memory: batch {batch}, {dtype.value}, {optimizer.value} (weights, gradients, optimizer state, saved activations)")
    if plot_file is not None:
        out(f"plotted to {plot_file}")
