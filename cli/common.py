"""What every command shares: options, the error boundary and number formatting."""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from composer.blueprint import BlueprintError, Problem
from composer.blueprint.errors import printable
from composer.blueprint.loader import load_value
from composer.errors import COMMAND_LINE, caller
from composer.io.files import Interrupted, WriteError, check_target, forget_inputs, reading as _reading

STATE = {"debug": False}

SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", metavar="KEY=VALUE",
                 help="Override a blueprint value before validation, e.g. `stages.2.depth=6` (repeatable)."),
]


def quote(text: str, limit: int = 60) -> str:
    """A command-line word as messages quote it: cut when long."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """`["stages.2.depth=6"]` -> {"stages.2.depth": 6}; values are read as YAML scalars or lists."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise command_line_error(f"`--set {quote(item)}`: expected KEY=VALUE, e.g. `stages.0.depth=3`")
        try:
            out[key.strip()] = load_value(value)
        except BlueprintError as exc:
            reason = exc.problems[0].message if exc.problems else ""
            raise command_line_error(f"`--set {quote(item)}`: the value is not valid YAML: {reason}") from None
    return out


def command_line_error(message: str) -> BlueprintError:
    return BlueprintError(Problem(message, (), "<command line>"))


def reading(*paths: Any) -> None:
    """Declare the files this command reads (blueprints, weights, images, ...): no output of the
    command may replace one of them, whatever the spelling of its path (composer.io.files.reading).
    Call it before `check_output`."""
    _reading(*paths)


def new_command() -> None:
    """Every command starts with no declared input (the app's callback calls this)."""
    forget_inputs()


def write_error(path: Any, exc: OSError) -> None:
    """One line for any reason a file cannot be written (and exit 1): the target's name, never a
    temporary file's, and the system's reason."""
    target = exc.filename if isinstance(exc, WriteError) and exc.filename else path
    fail(f"cannot write `{target}`: {exc.strerror or exc}")


def write_picture(render: Callable[[], None], path: Any) -> None:
    """Run a picture writer (draw, --plot): a missing plotting extra or an unwritable file is one line, exit 1."""
    try:
        render()
    except ImportError as exc:
        fail(str(exc))
    except OSError as exc:
        write_error(path, exc)


def check_output(path: Any, *inputs: Any) -> None:
    """Refuse an output path before the work that fills it: a missing directory, a directory or
    device at the path, a name too long, one of the command's inputs (declared with `reading`, or
    given here), ..."""
    reading(*inputs)
    try:
        check_target(path)
    except OSError as exc:
        write_error(path, exc)


def fail(message: str) -> None:
    typer.echo(f"error: {printable(message, keep_newlines=False)}", err=True)
    raise typer.Exit(1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Blueprint mistakes become a readable report and exit code 1; anything else is a bug. A bad
    argument met inside is located at `<command line>` (the API's arguments are the options)."""
    try:
        with caller(COMMAND_LINE):
            yield
    except BlueprintError as exc:
        n = len(exc.problems)
        subject = getattr(exc, "subject", "in the blueprint")  # e.g. WeightsError: "with the weights"
        typer.echo(f"error: {n} problem{'s' if n != 1 else ''} {subject}", err=True)
        for p in exc.problems:
            typer.echo(f"  {p}", err=True)
        raise typer.Exit(1) from None
    except (typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt as exc:
        typer.echo(f"error: {exc if isinstance(exc, Interrupted) else 'interrupted'}; no file was changed", err=True)
        raise typer.Exit(1) from None
    except WriteError as exc:  # the target of a write, never its temporary file
        fail(f"cannot write `{exc.filename}`: {exc.strerror or exc}")
    except OSError as exc:  # a file that cannot be read or written: the system's reason, on one line
        where = f" `{exc.filename}`" if exc.filename else ""
        fail(f"cannot access{where}: {exc.strerror or exc}")
    except MemoryError:
        fail("out of memory; `composer profile` counts a network without allocating its weights")
    except RuntimeError as exc:
        if "DataLoader worker" in str(exc) and not STATE["debug"]:
            # torch re-raises a decoding worker's failure (or its death) with the worker's own error as the last line
            fail(f"a decoding worker failed: {_worker_reason(str(exc))}")
        _internal(exc)
    except Exception as exc:
        _internal(exc)


def _worker_reason(text: str) -> str:
    """The worker's own error, one line, and what to try (most often shared memory, /dev/shm, is
    full or limited: no space, a file-size limit, a bus error)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    reason = lines[-1][:300] if lines else "unknown"
    if re.search(r"File too large|No space left|Bus error|resize file|shared memory|shm", text):
        return (f"{reason} (worker processes pass images through shared memory, /dev/shm, which is full "
                "or limited; free it, or decode in this process: `--workers 0`, in train `--set recipe.data.workers=0`)")
    return f"{reason} (to decode in this process: `--workers 0`, in train `--set recipe.data.workers=0`)"


def _internal(exc: BaseException) -> None:
    if STATE["debug"]:
        raise exc
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    typer.echo(printable(f"error: internal error: {type(exc).__name__}: {first}", keep_newlines=False), err=True)
    typer.echo("  this is a bug in composer; rerun with `composer --debug ...` for the traceback", err=True)
    raise typer.Exit(1) from None


def si(n: float, unit: str = "") -> str:
    """4168849408 -> `4.169 G`."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.3f} {prefix}{unit}"
    return f"{n:g} {unit}".rstrip()


def shape(dims: list[int]) -> str:
    return "x".join(str(d) for d in dims)


def table(rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for r in rows:
        cells = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def out(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(printable(text) + end)
