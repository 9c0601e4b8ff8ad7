"""`composer schema [-o FILE]`: the JSON Schema of blueprints, for editors and other tools."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import typer

from composer.blueprint.jsonschema import blueprint_json_schema_text

from .common import fail, out


def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schema here (atomically) instead of printing it.")] = None,
) -> None:
    """Print or write the JSON Schema of the blueprint language."""
    text = blueprint_json_schema_text()
    if output is None:
        out(text.rstrip("\n"))
        return
    if output.is_dir() or not output.parent.exists():
        fail(f"cannot write `{output}`: " + ("it is a directory" if output.is_dir() else "its directory does not exist"))
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, output)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        fail(f"cannot write `{output}`: {exc.strerror or exc}")
    out(f"wrote {output}")
