"""The one exception type for user mistakes, and the location it carries."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Iterable

from ..errors import ComposerError

KeyPath = tuple  # e.g. ("stages", 2, "block", "kernel")
MAX_MESSAGE = 2000  # characters of a problem's message when printed (a weights mismatch lists tensors)


# control characters (C0, DEL, C1), lone surrogates, bidi and other format characters: never printed raw
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def printable(text: str, keep_newlines: bool = True) -> str:
    """`text` safe to show on a terminal: escape sequences, control characters and lone surrogates
    are written as `\\x1b`, `\\ud800` escapes (this is the one place user text is rendered)."""
    def escape(m: re.Match) -> str:
        code = ord(m.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    text = _UNPRINTABLE.sub(escape, str(text))
    return text if keep_newlines else text.replace("\n", "\\n")


def format_path(path: KeyPath) -> str:
    """`("stages", 2, "block", "kernel")` -> `stages[2].block.kernel`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest spelling among `choices`, phrased as a hint, or None."""
    if len(str(word)) > 100:  # no option name is that long; and matching would be slow
        return None
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None


@dataclass(frozen=True)
class Problem:
    """One mistake in a blueprint: where it is, what is wrong, and how to fix it."""

    message: str
    path: KeyPath = ()
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based
    hint: str | None = None

    @property
    def location(self) -> str:
        where = self.file or "<blueprint>"
        if self.line is not None:
            where += f":{self.line}:{self.column or 1}"
        return where

    def __str__(self) -> str:
        text = f"{self.location}: "
        if self.path:
            text += f"{format_path(self.path)}: "
        # a message quotes the input; a long quote (a 900 KB name) is cut to keep the report readable
        text += self.message if len(self.message) <= MAX_MESSAGE else self.message[: MAX_MESSAGE - 3] + "..."
        if self.hint:
            text += f" ({self.hint})"
        return printable(text, keep_newlines=False)

    def to_dict(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": format_path(self.path) if self.path else "",
            "message": self.message,
            "hint": self.hint,
        }


class BlueprintError(ComposerError):
    """Everything wrong with a blueprint or an argument, each problem located (in its file, on the
    command line, or at the API function called)."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in blueprint"
        return head + ":\n" + "\n".join(f"  {p}" for p in self.problems)
