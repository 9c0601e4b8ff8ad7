"""The `composer` command: a thin typer app over the composer library."""

from __future__ import annotations

from typing import Annotated

import typer
from typer.core import HAS_RICH, TyperCommand, TyperGroup

from . import blocks, build, compare, draw, export, profile, schema, search, validate
from . import eval as eval_cmd, predict as predict_cmd, train as train_cmd
from .common import STATE, new_command



def _plain_help(command, ctx) -> None:
    """Help as written: square brackets in help texts are words, not Rich markup (`[low, high, step]`
    would vanish), and a flag shows no value type (it takes none; typer would print `<bool>`)."""
    if getattr(command, "_composer_help_fixed", False) or not HAS_RICH or command.rich_markup_mode != "rich":
        return
    from rich.markup import escape

    command.help = escape(command.help) if command.help else command.help
    for param in command.get_params(ctx):
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    command._composer_help_fixed = True


class Command(TyperCommand):
    def format_help(self, ctx, formatter) -> None:
        _plain_help(self, ctx)
        return super().format_help(ctx, formatter)


class Group(TyperGroup):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in self.commands.values():  # every command, however it was registered
            if type(command) is TyperCommand:
                command.__class__ = Command

    def format_help(self, ctx, formatter) -> None:
        _plain_help(self, ctx)
        return super().format_help(ctx, formatter)


app = typer.Typer(
    name="composer",
    cls=Group,
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
