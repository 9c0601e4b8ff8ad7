"""The `composer` command: a thin typer app over the composer library."""

from __future__ import annotations

from typing import Annotated

import typer

from . import blocks, build, export, profile, schema, validate
from .common import STATE

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


app.command("validate")(validate.validate)
app.command("build")(build.build)
app.command("profile")(profile.profile)
app.command("blocks")(blocks.blocks)
app.command("schema")(schema.schema)
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
