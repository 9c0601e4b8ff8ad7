"""A blueprint from a file (with overrides) or from text: read, then validated; every problem located."""

from __future__ import annotations

import os
from typing import Any

from .arguments import check_path
from .loader import load_text, read_file
from .overrides import apply_overrides
from .validation import Blueprint, validate


def read_blueprint(path: str | os.PathLike, overrides: dict[str, Any] | None = None) -> Blueprint:
    """The blueprint in the file at `path`, `overrides` (dotted keys) set before validation."""
    check_path(path, "blueprint path")
    return validate(apply_overrides(read_file(path), overrides or {}))


def parse_blueprint(text: str, file: str | None = None) -> Blueprint:
    """The blueprint in `text`; `file` names it in the messages."""
    if file is not None:
        check_path(file, "file name")
    return validate(load_text(text, file))
