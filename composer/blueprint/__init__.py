"""Blueprint language: safe loading with a source map, the pydantic schema, located errors."""

from .errors import BlueprintError, Problem
from .loader import Source, load_text, read_file
from .validation import Blueprint, validate

__all__ = ["BlueprintError", "Problem", "Source", "load_text", "read_file", "Blueprint", "validate"]
