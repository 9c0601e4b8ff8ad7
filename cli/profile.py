"""`composer profile FILE`: parameters and MACs per part, counted on meta tensors; optionally the
analytic second opinion (`--check`), training memory (`--train`) and several input sizes (`--sizes`)."""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

import composer
from composer.blueprint import BlueprintError
from composer.analysis.options import DTYPE_ALIASES, DTYPE_NAMES, OPTIMIZER_STATES

if TYPE_CHECKING:  # composer.profile traces with torch, imported when the command runs
    from composer.analysis.crosscheck import CheckReport
    from composer.analysis.memory import TrainMemory
    from composer.analysis.tracing import Profile

from .common import SetOption, command_line_error, out, quote, parse_sets, shape, si, table, user_errors


MAX_SIZES = 16  # reports per `--sizes` run

# choices come from composer.analysis.options, the one place that knows them
DType = Enum("DType", {name: name for name in [*DTYPE_NAMES, *DTYPE_ALIASES]}, type=str)
Optimizer = Enum("Optimizer", {name: name for name in OPTIMIZER_STATES}, type=str)


def parse_sizes(text: str) -> list[int]:
    """`128,224,384` -> [128, 224, 384]; at most MAX_SIZES of them (each is a full profile)."""
    sizes = []
    parts = text.split(",")
    if len(parts) > MAX_SIZES:
        raise command_line_error(f"`--sizes {quote(text)}`: {len(parts):,} sizes, over the budget of {MAX_SIZES} per run")
    for part in parts:
        part = part.strip()
        if not re.fullmatch(r"[0-9]{1,9}", part) or int(part) < 1:
            raise command_line_error(f"`--sizes {quote(text)}`: `{quote(part, 20)}` is not a positive whole number; "
                                     "expected sizes joined by commas, e.g. `128,224,384`")
        sizes.append(int(part))
    return sizes


def bytes_text(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def profile(
    file: Annotated[Path, typer.Argument(help="Blueprint YAML file.")],
    size: Annotated[Optional[int], typer.Option(help="Input size (overrides the blueprint's).", min=1)] = None,
    sizes: Annotated[Optional[str], typer.Option(help="Several input sizes, e.g. `128,224,384`: one report each.")] = None,
    batch: Annotated[int, typer.Option(help="Batch size for MACs and training memory.", min=1)] = 1,
    elementwise: Annotated[bool, typer.Option("--elementwise", help="Also count elementwise ops (one per output element).")] = False,
    check: Annotated[bool, typer.Option("--check", help="Compare each part with its analytic cost; exit 1 on a disagreement above 1%.")] = False,
    train: Annotated[bool, typer.Option("--train", help="Estimate training memory: weights, gradients, optimizer state, saved activations.")] = False,
    dtype: Annotated[DType, typer.Option(help="With --train: dtype of weights, gradients, state and activations.")] = DType.float32,
    optimizer: Annotated[Optimizer, typer.Option(help="With --train: sgd (no state), momentum (1 buffer), adam/adamw (2).")] = Optimizer.adamw,
    grad_checkpointing: Annotated[bool, typer.Option("--grad-checkpointing", help="With --train: count what gradient checkpointing (each block recomputed in the backward pass) keeps.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs (a list when several sizes are given).")] = False,
    set_: SetOption = None,
) -> None:
    """Count parameters and multiply-accumulates (MACs; FLOPs = 2 x MACs) without allocating weights."""
    with user_errors():
        if size is not None and sizes is not None:
            raise command_line_error("give either `--size` or `--sizes`, not both")
        if grad_checkpointing and not train:
            raise command_line_error("`--grad-checkpointing` changes the training-memory estimate; give it with `--train`")
        size_list = parse_sizes(sizes) if sizes is not None else [size]
        overrides = parse_sets(set_)
        plans, problems = [], []
        for s in size_list:
            try:
                extra = {"input.size": s} if s is not None else {}
                plans.append(composer.plan(composer.load(file, overrides={**overrides, **extra})))
            except BlueprintError as exc:
                problems += [p for p in exc.problems if p not in problems]
        if problems:
            raise BlueprintError(problems)
        results = []
        for p in plans:
            report = composer.profile(p, batch=batch, elementwise=elementwise)
            memory = composer.train_memory(p, batch=batch, dtype=dtype.value, optimizer=optimizer.value,
                                           grad_checkpointing=grad_checkpointing) if train else None
            checked = composer.check(p, traced=report) if check else None
            results.append((report, memory, checked))
    if as_json:
        dicts = []
        for report, memory, checked in results:
            d = report.to_dict()
            if memory is not None:
                d["train_memory"] = memory.to_dict()
            if checked is not None:
                d["check"] = checked.to_dict()
            dicts.append(d)
        out(json.dumps(dicts if sizes is not None else dicts[0], indent=2))
    else:
        for i, (report, memory, checked) in enumerate(results):
            if i:
                out()
            _print_profile(report)
            if memory is not None:
                _print_memory(memory)
            if checked is not None:
                _print_check(checked)
    if any(checked is not None and not checked.ok for _, _, checked in results):
        raise typer.Exit(1)


def _print_profile(report: Profile) -> None:
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


def _print_memory(m: TrainMemory) -> None:
    out(f"training memory, batch {m.batch}, {m.dtype}, {m.optimizer}"
        f"{', gradient checkpointing' if m.grad_checkpointing else ''}:")
    rows = [["  weights", bytes_text(m.weights)], ["  gradients", bytes_text(m.gradients)],
            ["  optimizer state", bytes_text(m.optimizer_state)], ["  saved activations", bytes_text(m.activations)]]
    rows += [[f"    {part}" if part != "recompute" else "    recompute (largest block, in backward)", bytes_text(n)]
             for part, n in m.activations_by_part.items()]
    rows.append(["  total", bytes_text(m.total)])
    out(table(rows, right={1}))


def _print_check(c: CheckReport) -> None:
    rows = [["part", "params", "analytic", "MACs", "analytic", "diff", ""]]
    for p in c.parts:
        if not p.checked:
            rows.append([p.name, f"{p.params:,}", "-", si(p.macs), "-", "-", "unchecked: no analytic cost"])
            continue
        rows.append([p.name, f"{p.params:,}", f"{p.analytic_params:,}", si(p.macs), si(p.analytic_macs),
                     f"{100 * p.macs_difference:+.2f}%", "ok" if p.ok else "MISMATCH"])
    out(f"check, one sample: traced vs analytic (params exact, MACs within {100 * c.tolerance:g}%)")
    out(table(rows, right={1, 2, 3, 4, 5}))
    if not c.ok:
        out("check failed: the parts marked MISMATCH disagree with their blocks' analytic cost")
