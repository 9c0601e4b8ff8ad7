"""`composer schema [--space] [-o FILE]`: the JSON Schema of blueprints (or search spaces), for editors and other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from composer.blueprint.jsonschema import blueprint_json_schema_text, space_json_schema_text
from composer.io.files import write_text

from .common import check_output, fail, out, user_errors, write_error


def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schema here (atomically) instead of printing it.")] = None,
    space: Annotated[bool, typer.Option("--space", help="The schema of search spaces (`composer search`) instead.")] = False,
    recipe: Annotated[bool, typer.Option("--recipe", help="The schema of training recipes instead (recipes/recipe.schema.json).")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="With --recipe: the reference page of every option (docs/recipes.md).")] = False,
) -> None:
    """Print or write the JSON Schema of the blueprint language (or of search spaces, or of training recipes)."""
    if space and recipe:
        fail("give either `--space` or `--recipe`, not both")
    if markdown and not recipe:
        fail("`--markdown` goes with `--recipe` (blocks: `composer blocks --markdown`)")
    if recipe:
        from composer.train.recipe import recipe_json_schema_text, recipe_markdown
        text = recipe_markdown() if markdown else recipe_json_schema_text()
    else:
        text = space_json_schema_text() if space else blueprint_json_schema_text()
    if output is None:
        out(text.rstrip("\n"))
        return
    check_output(output)
    try:
        with user_errors():
            write_text(output, text)
    except OSError as exc:
        write_error(output, exc)
    out(f"wrote {output}")
