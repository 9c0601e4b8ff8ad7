"""YAML text -> plain data plus a source map (key path -> line:column).

Loading is safe and strict, the same for files, `--set` values and blueprints inside saved models:

- plain scalars follow the YAML 1.2 core schema, as editors and other YAML 1.2 tools read them:
  `true`/`false` are the only booleans, `012` is twelve, `1:30` and `2020-01-01` are strings,
  `1e-6` is a float; `yes`, `on`, octal `0755` and sexagesimal numbers are not YAML 1.1 surprises;
- only plain tags (map, seq, str, int, float, bool, null), and an explicit tag must fit its value;
- merge keys (`<<: *base`) work as YAML defines them: the mapping's own keys override merged ones;
- the text, its nesting depth and its expansion through aliases are bounded, so control
  characters, deep nesting, recursive aliases and alias bombs are located errors, not crashes.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import where
from .errors import BlueprintError, KeyPath, Problem

MAX_FILE_BYTES = 1_000_000
MAX_NODES = 20_000  # a blueprint has a few hundred; alias bombs have billions
MAX_DEPTH = 64  # a blueprint nests four or five levels deep
MAX_INT_DIGITS = 30  # far past every limit of the schema, far below Python's int/str conversion limit

_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_TAG + kind for kind in ("map", "seq", "str", "int", "float", "bool", "null")}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
# characters YAML allows in a stream (https://yaml.org/spec/1.2.2/#51-character-set)
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe parser with YAML 1.2 core resolution and a bounded composer."""

    yaml_implicit_resolvers: dict = {}

    def __init__(self, stream: str, file: str | None):
        super().__init__(stream)
        self.file = file
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        self.depth += 1
        self.nodes += 1
        try:
            if self.depth > MAX_DEPTH or self.nodes > MAX_NODES:
                mark = self.peek_event().start_mark
                message, hint = ((f"the document nests deeper than {MAX_DEPTH} levels", "blueprints nest a few levels deep")
                                 if self.depth > MAX_DEPTH else
                                 (f"the document has more than {MAX_NODES:,} values", "blueprints hold a few hundred"))
                raise BlueprintError(Problem(message, (), self.file, mark.line + 1, mark.column + 1, hint))
            event = self.peek_event()
            if not isinstance(event, yaml.AliasEvent) and event.anchor in self.anchors:
                del self.anchors[event.anchor]  # YAML 1.2: an alias refers to the latest node with its anchor
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


for _tag, _regexp, _first in (
    ("null", _NULL, ["~", "n", "N", ""]),
    ("bool", _BOOL, list("tTfF")),
    ("int", _INT, list("-+0123456789")),
    ("float", _FLOAT, list("-+.0123456789")),
    ("merge", re.compile(r"^(?:<<)$"), ["<"]),
):
    _Loader.add_implicit_resolver(_TAG + _tag, _regexp, _first)


class _Dumper(yaml.SafeDumper):
    """Writes YAML that _Loader reads back as written: a string that YAML 1.2 would read as a number
    or a bool (`0o17`, `1e5`) is quoted, whatever YAML 1.1 would make of it."""

    yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


def dump_text(data: Any) -> str:
    """Plain data -> YAML text that load_text reads back to the same data (as saved models hold)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=False)


@dataclass
class Source:
    """A loaded blueprint: its plain data and where each key and value sits in the text.

    `overrides` names the key paths set from the command line (`--set`, `--size`) and how: a
    problem there is located on the command line, not in the file."""

    data: Any
    file: str | None = None
    text: str = ""
    keys: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    values: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    overrides: dict[KeyPath, str] = field(default_factory=dict)

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
        path = tuple(path)
        marks = [path[:i] for i in range(len(path), 0, -1) if path[:i] in self.overrides]
        if not marks and path not in self.keys and path not in self.values:  # made by a `--set` below it
            marks = [mark for mark in self.overrides if len(mark) > len(path) and mark[:len(path)] == path]
        if marks:  # the value at fault came from the command line
            how = f"set by `{self.overrides[marks[0]]}`"
            return Problem(message, path, where(), None, None, f"{hint}; {how}" if hint else how)
        pos = self.position(path)
        line, column = pos if pos else (None, None)
        return Problem(message, path, self.file, line, column, hint)


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Walker:
    """Node tree -> plain data, recording positions; bounded in size, depth and self-reference."""

    def __init__(self, source: Source):
        self.source = source
        self.visited = 0
        self.active: set[int] = set()  # ids of the collection nodes being walked (to find cycles)

    def fail(self, node: yaml.Node, message: str, path: KeyPath, hint: str | None = None):
        line, column = _mark(node)
        raise BlueprintError(Problem(message, tuple(path), self.source.file, line, column, hint))

    def walk(self, node: yaml.Node, path: KeyPath) -> Any:
        self.visited += 1
        if self.visited > MAX_NODES:
            self.fail(node, f"the document expands to more than {MAX_NODES:,} nodes", path,
                      "YAML aliases that expand exponentially are refused; write the values out")
        if node.tag not in _PLAIN_TAGS:
            self.fail(node, f"YAML tag `{node.tag}` is not allowed", path,
                      "blueprints hold plain mappings, lists, strings and numbers only")
        self.source.values.setdefault(path, _mark(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if id(node) in self.active or len(self.active) >= MAX_DEPTH:
            self.fail(node, "a recursive alias: this value contains itself" if id(node) in self.active
                      else f"the document nests deeper than {MAX_DEPTH} levels", path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _TAG + "seq":
                    self.fail(node, f"a list cannot be tagged `{node.tag}`", path)
                return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
            if node.tag != _TAG + "map":
                self.fail(node, f"a mapping cannot be tagged `{node.tag}`", path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":  # `<<: *base` or `<<: [*a, *b]`; earlier sources win
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, yaml.MappingNode):
                        self.fail(src, "a merge key `<<` takes a mapping or a list of mappings", path)
                    for k, v in self.walk(src, path).items():
                        merged.setdefault(k, v)
                continue
            key = self.walk(key_node, path)
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                self.fail(key_node, "mapping keys must be plain names", path)
            if key in out:
                self.fail(key_node, f"duplicate key `{key}`", path + (key,), "each key may appear once in a mapping")
            self.source.keys[path + (key,)] = _mark(key_node)
            out[key] = self.walk(value_node, path + (key,))
        for k, v in merged.items():
            out.setdefault(k, v)
        return out

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        kind, value = node.tag[len(_TAG):], node.value
        if kind == "str":
            return value
        if kind == "null" and _NULL.match(value):
            return None
        if kind == "bool" and _BOOL.match(value):
            return value.lower() == "true"
        if kind == "int" and _INT.match(value):
            digits = len(value.lstrip("+-"))
            if digits > MAX_INT_DIGITS:
                self.fail(node, f"a {digits}-digit integer is too large", path, "no option takes a number this large")
            if value.startswith(("0o", "0x")):
                return int(value[2:], 8 if value[1] == "o" else 16)
            return int(value)
        if kind == "float" and (_FLOAT.match(value) or _INT.match(value)):
            if len(value) > 100:
                self.fail(node, "a number written with more than 100 characters", path)
            low = value.lower()
            if low.endswith((".inf", ".nan")):
                return float(low.replace(".", ""))
            if value.startswith(("0o", "0x")):
                return float(int(value[2:], 8 if value[1] == "o" else 16))
            return float(value)
        self.fail(node, f"`{_short(value)}` is not a valid `!!{kind}`", path,
                  "remove the explicit tag, or write a value of that type")


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _check_characters(text: str, file: str | None) -> None:
    bad = _NOT_PRINTABLE.search(text)
    if bad:
        before = text[: bad.start()]
        line, column = before.count("\n") + 1, bad.start() - (before.rfind("\n") + 1) + 1
        char = bad.group()
        what = "a NUL character" if char == "\0" else f"the character U+{ord(char):04X}"
        hint = ("save the file as UTF-8 text; UTF-16 text is full of NUL characters" if char == "\0"
                else "blueprints are plain text; remove control characters")
        raise BlueprintError(Problem(f"{what} is not allowed in YAML", (), file, line, column, hint))


def _parse(text: Any, file: str | None) -> tuple[Source, Any]:
    if not isinstance(text, str):
        raise BlueprintError(Problem(f"blueprint text must be a string, not {type(text).__name__}", (), file))
    if len(text) > MAX_FILE_BYTES:
        raise BlueprintError(Problem(f"the text is longer than {MAX_FILE_BYTES:,} characters", (), file,
                                     hint="blueprints are short YAML files"))
    _check_characters(text, file)
    source = Source(data=None, file=file, text=text)
    loader = _Loader(text, file)
    try:
        node = loader.get_single_node()
        data = None if node is None else _Walker(source).walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = "YAML syntax error: " + (exc.problem or exc.context or "cannot parse")
        raise BlueprintError(Problem(message, (), file, line, column)) from None
    except yaml.YAMLError as exc:
        raise BlueprintError(Problem(f"YAML error: {exc}", (), file)) from None
    except RecursionError:  # a safety net: the depth bounds above stop well before Python's limit
        raise BlueprintError(Problem("the document nests too deeply", (), file)) from None
    finally:
        loader.dispose()
    return source, (node is not None, data)


def load_text(text: str, file: str | None = None) -> Source:
    """Parse blueprint text. Raises BlueprintError for syntax errors, tags and bombs."""
    source, (present, data) = _parse(text, file)
    if not present:
        raise BlueprintError(Problem("the file is empty", (), file, 1, 1, "start from one of the files in blueprints/"))
    source.data = data
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise BlueprintError(source.problem((), f"the top level must be a mapping, found {kind}",
                                            "a blueprint starts with keys such as `name:` and `layout:`"))
    return source


def load_value(text: str) -> Any:
    """Parse one value the way blueprint files are parsed (`1e-6` is a float, plain tags only).

    Used for `--set KEY=VALUE`. Raises BlueprintError for text that is not valid YAML.
    """
    return _parse(text, None)[1][1]


def read_file(path: str | os.PathLike) -> Source:
    """Read and parse a blueprint file, with a size limit and clear errors for unreadable files.

    Only regular files are opened (after a stat, and without blocking), so a FIFO or a device
    is refused instead of hanging or reading forever."""
    if not isinstance(path, (str, os.PathLike)):
        raise BlueprintError(Problem(f"a blueprint path must be a string or path, not {type(path).__name__}", ()))
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            raise BlueprintError(Problem("is a directory, not a blueprint file", (), name))
        if not stat.S_ISREG(info.st_mode):
            raise BlueprintError(Problem("is not a regular file (a device, FIFO or socket)", (), name,
                                         hint="give the path of a YAML file"))
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # replaced between the stat and the open
                raise BlueprintError(Problem("is not a regular file", (), name))
            raw = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise BlueprintError(Problem("no such file", (), name)) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BlueprintError(Problem(f"cannot read the file: {reason}", (), name)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise BlueprintError(Problem(f"the file is larger than {MAX_FILE_BYTES:,} bytes", (), name,
                                     hint="blueprints are short YAML files"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        hint = "the file looks like UTF-16; save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else None
        raise BlueprintError(Problem(f"the file is not UTF-8 text (byte {exc.start})", (), name, line, 1, hint)) from None
    return load_text(text, name)
