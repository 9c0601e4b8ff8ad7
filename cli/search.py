"""`composer search SPACE.yaml --budget ...`: the best networks of a space that fit a budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from composer.blueprint import read_file
from composer.blueprint.loader import dump_text
from composer.io.files import check_target, child, safe_name, write_text
from composer.tools.search import parse_budget, plot, search as run_search

from .common import SetOption, check_output, command_line_error, fail, out, parse_sets, quote, reading, si, table, user_errors, write_error, write_picture
from .profile import DType, Optimizer, bytes_text


def search(
    space: Annotated[Path, typer.Argument(help="Search space: a blueprint whose values may be `{one_of: [...]}` or `{range: [low, high, step]}`.")],
    budget: Annotated[str, typer.Option(help="Limits, e.g. `macs=4.5G,params=30M,train_memory=24GiB@128` (memory of a training step at batch 128).")],
    top: Annotated[Optional[int], typer.Option(help="Show (and emit) only the first K of the front, largest MACs first.", min=1)] = None,
    limit: Annotated[int, typer.Option(help="Evaluate every candidate up to this many; sample this many (seeded) from larger spaces.", min=1, max=100_000)] = 10_000,
    seed: Annotated[int, typer.Option(help="Seed of the sample, for spaces larger than --limit.")] = 0,
    dtype: Annotated[DType, typer.Option(help="With a train_memory budget: dtype of weights, gradients, state and activations.")] = DType.float32,
    optimizer: Annotated[Optimizer, typer.Option(help="With a train_memory budget: sgd, momentum, adam or adamw.")] = Optimizer.adamw,
    emit: Annotated[Optional[Path], typer.Option(help="Write each reported candidate as an ordinary blueprint into this directory.")] = None,
    plot_file: Annotated[Optional[Path], typer.Option("--plot", help="Write MACs against parameters (candidates and front) here: .png or .svg.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for programs.")] = False,
    set_: SetOption = None,
) -> None:
    """Enumerate (or sample) a space, keep the networks within the budget, report their Pareto front."""
    reading(space)
    if emit is not None and emit.exists() and not emit.is_dir():
        fail(f"cannot emit into `{emit}`: it is not a directory")
    if plot_file is not None:
        if plot_file.suffix.lower() not in (".png", ".svg"):
            fail(f"cannot plot to `{plot_file}`: the file must end in .png or .svg")
        check_output(plot_file)
    with user_errors():
        try:
            limits = parse_budget(budget)
        except ValueError as exc:
            raise command_line_error(f"`--budget {budget}`: {exc}") from None
        if not limits.limits:
            raise command_line_error("`--budget` names no limit")
        from composer.api import apply_overrides
        source = apply_overrides(read_file(space), parse_sets(set_))
        show = sys.stderr.isatty() and not as_json

        def progress(done: int, total: int) -> None:
            if show:
                sys.stderr.write(f"\r{done:,}/{total:,} candidates")
                sys.stderr.flush()

        result = run_search(source, limits, limit=limit, seed=seed, dtype=dtype.value, optimizer=optimizer.value,
                            progress=progress)
        if show:
            sys.stderr.write("\n")
    front = result.front[:top]
    written = _emit(result, front, emit, space) if emit is not None else []
    if plot_file is not None:
        write_picture(lambda: plot(result, plot_file), plot_file)
    if as_json:
        d = result.to_dict(top)
        if emit is not None:
            d["emitted"] = [str(p) for p in written]
        out(json.dumps(d, indent=2))
        return
    _report(result, front, limits)
    if written:
        out(f"wrote {len(written)} blueprint{'s' if len(written) != 1 else ''} to {emit}")
    if plot_file is not None:
        out(f"plotted to {plot_file}")


def _emit(result, front, emit: Path, space: Path) -> list[Path]:
    """Each candidate of `front` as an ordinary blueprint in the folder `emit`: all written or none."""
    written = []
    # file names from the space's name (text from a file): one plain name inside the folder each
    stem = safe_name(result.name, fallback="space", limit=100)
    paths = [child(emit, f"{stem}-{c.index}.yaml") for c in front]
    try:
        emit.mkdir(parents=True, exist_ok=True)
        for path in paths:  # every target checked before the first is written: all or none refused
            check_target(path)
        for rank, (c, path) in enumerate(zip(front, paths), 1):
            data = {**c.data, "name": f"{result.name}-{c.index}"}
            picks = ", ".join(f"{k}={_flow(v)}" for k, v in c.picks.items())
            header = (f"# Candidate {c.index} of the space {safe_name(space.name, limit=200)} (rank {rank} of its Pareto front):\n"
                      f"# {picks}\n# {c.params:,} parameters, {si(c.macs)}MACs\n")
            write_text(path, header + dump_text(data))  # reads back exactly as written
            written.append(path)
    except OSError as exc:
        write_error(exc.filename or emit, exc)
    return written


def _report(result, front, limits) -> None:
    """The search's summary line, its invalid examples and the table of the front."""
    how = f"sampled {result.evaluated:,} of {result.size:,}" if result.sampled else f"all {result.size:,}"
    out(f"{quote(result.name)}: {how} candidates; {result.invalid:,} invalid, {len(result.fitting):,} within "
        f"{_budget_text(limits)}, {len(result.front)} on the Pareto front")
    for example in result.invalid_examples:
        out(f"  invalid, e.g. {example}")
    if front:
        memory = limits.train_memory is not None
        rows = [["#", "params", "MACs"] + (["train memory"] if memory else []) + ["choices"]]
        for c in front:
            rows.append([str(c.index), f"{c.params:,}", si(c.macs)] + ([bytes_text(c.train_memory)] if memory else [])
                        + [" ".join(f"{k}={_flow(v)}" for k, v in c.picks.items())])
        out(table(rows, right={0, 1, 2, 3} if memory else {0, 1, 2}))


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _budget_text(b) -> str:
    parts = []
    if b.macs is not None:
        parts.append(f"{si(b.macs)}MACs")
    if b.params is not None:
        parts.append(f"{si(b.params)} params")
    if b.train_memory is not None:
        parts.append(f"{bytes_text(int(b.train_memory))} at batch {b.batch}")
    return ", ".join(parts)
