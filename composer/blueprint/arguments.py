"""Arguments of the Python API, checked at the door: every bad argument is an ArgumentError (a
BlueprintError, and a ValueError) with the message the command line gives for the same mistake,
never a TypeError or a RuntimeError from deep inside torch. The API functions in composer/api.py
call these before any work. A problem is located where the argument was given: `<command line>`
under the command line, the API function (`composer.build()`) in Python (composer/errors.py)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .errors import BlueprintError, Problem
from .budgets import MAX_BATCH, MAX_TENSOR_BYTES
from ..errors import given, option, where

if TYPE_CHECKING:
    import torch

    from ..planning.planner import Plan


class ArgumentError(BlueprintError, ValueError):
    """A bad argument to an API function or a command-line option."""

    def __str__(self) -> str:
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''} with the arguments:\n" + "\n".join(f"  {p}" for p in self.problems)


def argument_error(message: str, hint: str | None = None, at: str | None = None) -> ArgumentError:
    """`at` labels a method's arguments (`ComposedNet.reset_classifier()`) when no API function is the caller."""
    return ArgumentError(Problem(message, (), where(at), hint=hint))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_path(value: Any, what: str = "path") -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise argument_error(f"the {what} must be a string or a path, not {type(value).__name__}")


def check_choice(name: str, value: Any, choices: Iterable[str], at: str | None = None) -> None:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise argument_error(f"`{option(name)}`: {value!r} is not one of {', '.join(choices)}", at=at)


def check_flag(name: str, value: Any, at: str | None = None) -> None:
    if not isinstance(value, bool):
        raise argument_error(f"`{option(name)}` is true or false, not {value!r}", at=at)


def check_device(device: Any) -> torch.device:
    import torch

    if device is not None and not isinstance(device, (str, torch.device)):
        raise argument_error(f"`device` must be a device name such as `cpu` or `cuda:0`, not {type(device).__name__}")
    try:
        return torch.device(device if device is not None else "cpu")
    except (RuntimeError, ValueError, TypeError):
        raise argument_error(f"`{device}` is not a device", "use `cpu`, `cuda`, `cuda:1` or `meta`") from None


def check_seed(seed: Any) -> None:
    if seed is not None and not (_is_int(seed) and -(1 << 63) <= seed < (1 << 64)):
        raise argument_error(f"`{option('seed')}`: {seed!r} is not a whole number in 64 bits")


def check_tolerance(tolerance: Any) -> None:
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not math.isfinite(tolerance) \
            or not 0 <= tolerance <= 1:
        raise argument_error(f"`tolerance`: {tolerance!r} is not a fraction between 0 and 1")


def check_batch(plan: Plan, batch: Any) -> None:
    """A whole batch size within MAX_BATCH whose largest tensor still has a size torch can count."""
    if not _is_int(batch) or not 1 <= batch <= MAX_BATCH:
        raise argument_error(f"`{option('batch')}`: {batch!r} is not a whole number from 1 to {MAX_BATCH:,}")
    per_sample = math.prod(plan.input_shape)
    for sp in plan.stages:
        for ctx in (sp.contexts[0], sp.contexts[-1]):
            grid = ctx.resolution[0] * ctx.resolution[1] + ctx.prefix_tokens
            # the widest hidden layer an option allows (64 x the width), and an attention matrix
            per_sample = max(per_sample, 64 * max(ctx.in_channels, ctx.out_channels) * grid,
                             (ctx.out_channels * grid * grid) if sp.data_format == "tokens" else 0)
    if batch * per_sample * 8 > MAX_TENSOR_BYTES:
        raise argument_error(
            f"`{given('batch', batch)}`: the largest tensors of this network would hold about {batch * per_sample:.2g} "
            f"numbers, past the budget of {MAX_TENSOR_BYTES / 2**60:g} EiB per tensor", "use a smaller batch or input size")


RESERVED = ("format", "blueprint", "blueprint_file", "state_dict")  # the entries a saved model holds itself


def check_extra(path: Any, extra: Any) -> None:
    """`extra` of composer.save: a dict with string keys other than a saved model's own entries; for
    a .safetensors file, string values only. Safetensors metadata is text by format, and a value
    turned into text would not read back as it was given (3 would come back as "3"), so a
    non-string is refused rather than converted: the caller picks the encoding (json.dumps) or a .pt file."""
    if extra is None:
        return
    if not isinstance(extra, dict):
        raise argument_error(f"`extra` must be a dict of entries to save, not {type(extra).__name__}")
    for key, value in extra.items():
        if not isinstance(key, str):
            raise argument_error(f"`extra`: the keys are strings, not {type(key).__name__} ({key!r})")
        if key in RESERVED:
            raise argument_error(f"`extra`: `{key}` is an entry composer writes itself",
                                 f"use another name than {', '.join(RESERVED)}")
    if str(path).lower().endswith(".safetensors"):
        bad = [k for k, v in extra.items() if not isinstance(v, str)]
        if bad:
            raise argument_error(
                f"`extra`: safetensors metadata holds strings only; {', '.join(f'`{k}`' for k in bad)} "
                f"{'is' if len(bad) == 1 else 'are'} {type(extra[bad[0]]).__name__}",
                "encode it yourself (json.dumps) or save to a .pt file")


def check_indices(indices: Any, count: int, what: str, at: str | None = None) -> tuple[int, ...]:
    """timm's convention for choosing among `count` levels or blocks: None takes all, an int n the
    last n, a sequence those (negative from the end); returns them sorted, non-negative."""
    if indices is None:
        return tuple(range(count))
    if _is_int(indices):
        if not 1 <= indices <= count:
            raise argument_error(f"`{given(what, indices)}`: asks for the last {indices} of {count}",
                                 f"give 1 to {count}, or a list of indices", at=at)
        return tuple(range(count - indices, count))
    if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
        raise argument_error(f"`{what}`: expected None, an int or a list of ints, not {type(indices).__name__} "
                             f"({indices!r})", at=at)
    out = []
    for i in indices:
        if not _is_int(i):
            raise argument_error(f"`{what}`: indices are ints, not {type(i).__name__} ({i!r})", at=at)
        if not -count <= i < count:
            raise argument_error(f"`{what}`: index {i} is out of range; there are {count} (0 to {count - 1}, "
                                 f"or negative from the end)", at=at)
        out.append(i % count)
    if not out or len(set(out)) != len(out):
        raise argument_error(f"`{what}`: give distinct indices, not {list(indices)!r}", at=at)
    return tuple(sorted(out))
