"""YAML text -> plain data plus a source map (key path -> line:column).

Loading is safe: PyYAML's SafeLoader composes the node tree, no tag that constructs an object is
accepted, and the walk over the tree is bounded so that alias expansion ("billion laughs") is
refused instead of exhausting memory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import BlueprintError, KeyPath, Problem

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 100_000  # a blueprint has a few hundred; alias bombs have billions

_PLAIN_TAGS = {
    "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",  # constructed, then rejected by the schema with a location
}


class _SafeLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-6` as a float (YAML 1.2), not as the string "1e-6"."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


@dataclass
class Source:
    """A loaded blueprint: its plain data and where each key and value sits in the text."""

    data: Any
    file: str | None = None
    text: str = ""
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: KeyPath) -> tuple[int, int] | None:
        """1-based (line, column) of the key at `path`, else its value, else its nearest parent."""
        path = tuple(path)
        while True:
            if path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]

    def problem(self, path: KeyPath, message: str, hint: str | None = None) -> Problem:
        pos = self.position(path)
        line, column = pos if pos else (None, None)
        return Problem(message, tuple(path), self.file, line, column, hint)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    def __init__(self, loader: _SafeLoader, source: Source):
        self.loader = loader
        self.source = source
        self.visited = 0

    def fail(self, node: yaml.Node, message: str, path: KeyPath, hint: str | None = None):
        line, column = _mark(node)
        raise BlueprintError(Problem(message, path, self.source.file, line, column, hint))

    def walk(self, node: yaml.Node, path: KeyPath) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            self.fail(
                node,
                f"the document expands to more than {MAX_NODES:,} nodes",
                path,
                "YAML aliases that expand exponentially are refused; write the values out",
            )
        if node.tag not in _PLAIN_TAGS:
            self.fail(
                node,
                f"YAML tag `{node.tag}` is not allowed",
                path,
                "blueprints hold plain mappings, lists, strings and numbers only",
            )
        self.source.values.setdefault(path, _mark(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            self.loader.flatten_mapping(node)  # resolves `<<` merge keys
            for key_node, value_node in node.value:
                key = self.walk(key_node, path)
                if not isinstance(key, (str, int)):
                    self.fail(key_node, "mapping keys must be plain names", path)
                if key in out:
                    self.fail(key_node, f"duplicate key `{key}`", path + (key,),
                              "each key may appear once in a mapping")
                self.source.keys[path + (key,)] = _mark(key_node)
                out[key] = self.walk(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def load_text(text: str, file: str | None = None) -> Source:
    """Parse blueprint text. Raises BlueprintError for syntax errors, tags and bombs."""
    source = Source(data=None, file=file, text=text)
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise BlueprintError(Problem("the file is empty", (), file, 1, 1,
                                         "start from one of the files in blueprints/"))
        source.data = _Walker(loader, source).walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = "YAML syntax error: " + (exc.problem or exc.context or "cannot parse")
        raise BlueprintError(Problem(message, (), file, line, column)) from None
    except yaml.YAMLError as exc:
        raise BlueprintError(Problem(f"YAML error: {exc}", (), file)) from None
    finally:
        loader.dispose()
    if not isinstance(source.data, dict):
        kind = type(source.data).__name__
        raise BlueprintError(source.problem((), f"the top level must be a mapping, found {kind}",
                                            "a blueprint starts with keys such as `name:` and `layout:`"))
    return source


def load_value(text: str) -> Any:
    """Parse one value the way blueprint files are parsed (`1e-6` is a float, plain tags only).

    Used for `--set KEY=VALUE`. Raises yaml.YAMLError for text that is not valid YAML.
    """
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _Walker(loader, Source(data=None, file=None, text=text)).walk(node, ())
    finally:
        loader.dispose()


def read_file(path: str | Path) -> Source:
    """Read and parse a blueprint file, with a size limit and clear errors for unreadable files."""
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise BlueprintError(Problem("no such file", (), name))
    if p.is_dir():
        raise BlueprintError(Problem("is a directory, not a blueprint file", (), name))
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise BlueprintError(Problem(f"cannot read the file: {exc.strerror}", (), name)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise BlueprintError(Problem(f"the file is larger than {MAX_FILE_BYTES:,} bytes", (), name,
                                     hint="blueprints are short YAML files"))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise BlueprintError(Problem(f"the file is not UTF-8 text (byte {exc.start})", (), name, line, 1))
    return load_text(text, name)
