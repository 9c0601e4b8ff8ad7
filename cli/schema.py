"""`composer schema [-o FILE]`: the JSON Schema of blueprints, for editors and other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from composer.blueprint.jsonschema import blueprint_json_schema_text
from composer.fileio import write_text

from .common import check_output, out, user_errors, write_error


def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schema here (atomically) instead of printing it.")] = None,
) -> None:
    """Print or write the JSON Schema of the blueprint language."""
    text = blueprint_json_schema_text()
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
