"""The `composer` command: a thin typer app over the composer library."""

from __future__ import annotations

from typing import Annotated

import typer

from . import blocks, build, compare, draw, export, profile, schema, search, validate
from . import eval as eval_cmd, predict as predict_cmd, train as train_cmd
from .common import STATE, new_command

app = typer.Typer(
    name="composer",
    help="Compose vision networks from YAML blueprints: validate, build and profile them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks of internal errors.")] = False,
) -> None:
    STATE["debug"] = debug
    new_command()


app.command("validate")(validate.validate)
app.command("build")(build.build)
app.command("profile")(profile.profile)
app.command("blocks")(blocks.blocks)
app.command("schema")(schema.schema)
app.command("draw")(draw.draw)
app.command("compare")(compare.compare)
app.command("search")(search.search)
app.command("train")(train_cmd.train)
app.command("eval")(eval_cmd.eval_)
app.command("predict")(predict_cmd.predict)
app.command("export")(export.export)


def main() -> None:
    """Console entry point. A malformed command line (click's usage errors, exit status 2) exits 1,
    like every other kind of bad input."""
    try:
        app()
    except SystemExit as exc:
        if exc.code == 2:
            raise SystemExit(1) from None
        raise
