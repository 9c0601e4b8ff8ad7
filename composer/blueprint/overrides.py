"""Overrides: dotted keys (`stages.2.depth`, `input.size`) set in a loaded blueprint before it is
validated, each marked so that a problem with its value is located where it was given (the
command line or the API call) rather than at the file's line."""

from __future__ import annotations

import copy
from typing import Any

from .arguments import ArgumentError, argument_error
from .loader import Source


def _override_error(dotted: Any, message: str, hint: str | None = None) -> ArgumentError:
    return argument_error(f"cannot set `{dotted}`: {message}", hint)


def apply_overrides(source: Source, overrides: dict[str, Any] | None) -> Source:
    """Set dotted keys (`stages.2.depth`, `input.size`) in a loaded blueprint before validation.

    A list is indexed by plain ASCII digits (`stages.0`); a problem with a value set here is later
    located on the command line rather than at the file's line."""
    if not overrides:
        return source
    if not isinstance(overrides, dict):
        raise argument_error(f"overrides must be a dict of dotted keys to values, not {type(overrides).__name__}")
    data = copy.deepcopy(source.data)
    marks = dict(source.overrides)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted:
            raise _override_error(dotted, "keys are dotted names such as `stages.0.depth`")
        node, path = data, []
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the top level"
            if not part:
                raise _override_error(dotted, "a key part is empty", "keys are joined by single dots")
            if isinstance(node, list):
                if not (part.isascii() and part.isdecimal()):
                    raise _override_error(dotted, f"`{where}` is a list; `{part}` is not an index",
                                          f"use 0 to {len(node) - 1}" if node else None)
                key: Any = int(part)
                if key >= len(node):
                    raise _override_error(dotted, f"`{'.'.join(parts[:depth + 1])}` does not exist; `{where}` has "
                                                  f"{len(node)} entries", f"use 0 to {len(node) - 1}" if node else None)
            elif isinstance(node, dict):
                key = int(part) if part.isascii() and part.isdecimal() and int(part) in node else part
                if depth < len(parts) - 1 and key not in node:
                    if depth == 0:
                        raise _override_error(dotted, f"`{part}` does not exist in the blueprint")
                    node[key] = {}  # a sub-config left at its defaults (validation judges the key)
                elif depth < len(parts) - 1 and isinstance(node[key], str) and node[key]:
                    node[key] = {"type": node[key]}  # `attention: relative` is `{type: relative}`
            else:
                raise _override_error(dotted, f"`{where}` is a single value, not a mapping or list")
            path.append(key)
            if depth < len(parts) - 1:
                node = node[key]
        node[path[-1]] = value
        marks[tuple(path)] = f"{dotted}={_short(value)}"
    return Source(data, source.file, source.text, source.keys, source.values, marks)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."
