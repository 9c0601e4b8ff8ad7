"""The base of every error composer raises on purpose, and the label that locates a bad argument.

Every exception class composer defines derives from ComposerError (a few also from the built-in
class callers already catch: InputSizeError is a ValueError, WriteError an OSError, TimmUnavailable
an ImportError). A mistake in an argument is located by who made it: `<command line>` for the
command line's options, `composer.build()` and the like for a Python call. This module imports
nothing, so every other module (and `import composer`) may use it."""

from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar
from typing import Callable, Iterator, TypeVar

COMMAND_LINE = "<command line>"
_CALLER: ContextVar[str | None] = ContextVar("composer_caller", default=None)

F = TypeVar("F", bound=Callable)


class ComposerError(Exception):
    """Anything composer refuses or cannot do, with a message meant for its user."""


def where(method: str | None = None) -> str:
    """The location label of an argument given in the current call: the outermost API function
    called (`composer.build()`), `<command line>` under the command line, else `method` (the
    method or function whose argument it is) or `<python>`."""
    return _CALLER.get() or method or "<python>"


def on_command_line() -> bool:
    return _CALLER.get() == COMMAND_LINE


def option(name: str) -> str:
    """An option as its caller spells it: `--grad-checkpointing` on the command line,
    `grad_checkpointing` in Python."""
    return f"--{name.replace('_', '-')}" if on_command_line() else name


def given(name: str, value) -> str:
    """An option with its value as its caller wrote it: `--batch 4` or `batch=4`."""
    return f"{option(name)} {value}" if on_command_line() else f"{name}={value!r}"


@contextlib.contextmanager
def caller(label: str) -> Iterator[None]:
    """Locate argument mistakes made inside the block at `label` (kept if a caller is already set)."""
    token = _CALLER.set(label) if _CALLER.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _CALLER.reset(token)


def api(func: F) -> F:
    """Mark a public function: argument mistakes made in it are located at `composer.<name>()`."""
    label = f"composer.{func.__name__}()"

    @functools.wraps(func)
    def call(*a, **kw):
        with caller(label):
            return func(*a, **kw)

    return call  # type: ignore[return-value]
