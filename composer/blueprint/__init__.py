"""Blueprint language: safe loading with a source map, the pydantic schema, located errors, the
scalar policy, overrides and the size budgets.

`Blueprint` and `validate` load the schema, which composes the part library (composer/blocks/), on
first use: the part library bases its configs on this package's scalar policy (scalars.py), so
importing either package first works.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .errors import BlueprintError, Problem
from .loader import Source, load_text, read_file

_LAZY = {"Blueprint": "validation", "validate": "validation"}

__all__ = ["BlueprintError", "Problem", "Source", "load_text", "read_file", "Blueprint", "validate"]


def __getattr__(name: str):
    home = _LAZY.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .validation import Blueprint, validate
