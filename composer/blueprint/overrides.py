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
        merged = _merged_into_block(data, parts, value)
        if merged is not None:
            marks[merged] = f"{dotted}={_short(value)}"
            continue
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


def _merged_into_block(data: Any, parts: list[str], value: Any) -> tuple | None:
    """`blocks.T.attention.heads=3` and `stages.2.block.se.gate=...`: merged into the block options as a
    stage override would be (shorthands expanded, `heads` replacing `head_dim`); the key path set, or
    None for any other key (set as it is)."""
    from .schema import BLOCKS, merged_block, merged_options

    if not all(parts):
        return None

    blocks, stages = data.get("blocks") if isinstance(data, dict) else None, data.get("stages") if isinstance(data, dict) else None
    if len(parts) >= 3 and parts[0] == "blocks" and isinstance(blocks, dict) and isinstance(blocks.get(parts[1]), (dict, str)):
        rest, legend = parts[2:], blocks[parts[1]]
        blocks[parts[1]] = merged_block(legend, _nested(rest, value))
        return tuple(parts)
    if (len(parts) >= 4 and parts[0] == "stages" and parts[2] == "block" and parts[1].isascii() and parts[1].isdecimal()
            and isinstance(stages, list) and int(parts[1]) < len(stages) and isinstance(stages[int(parts[1])], dict)):
        stage = stages[int(parts[1])]
        layout = data.get("layout")
        letters = [p.strip() for p in layout.split("-")] if isinstance(layout, str) else []
        legend = blocks.get(letters[int(parts[1])]) if isinstance(blocks, dict) and int(parts[1]) < len(letters) else None
        kind = BLOCKS.get(legend.get("type") if isinstance(legend, dict) else legend)
        current = stage.get("block", {})
        if kind is None or not isinstance(current, dict):
            return None
        stage["block"] = merged_options(current, _nested(parts[3:], value), kind)
        return (parts[0], int(parts[1]), *parts[2:])
    return None


def _nested(keys: list[str], value: Any) -> dict:
    for key in reversed(keys):
        value = {key: value}
    return value


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."
