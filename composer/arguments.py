"""Arguments of the Python API, checked at the door: every bad argument is a BlueprintError with the
message the command line gives for the same mistake, never a TypeError or a RuntimeError from deep
inside torch. The API functions in composer/api.py call these before any work."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable

from .blueprint.errors import BlueprintError, Problem
from .budgets import MAX_BATCH, MAX_TENSOR_BYTES
from .plan import Plan

if TYPE_CHECKING:
    import torch

WHERE = "<command line>"  # the API's arguments are the command line's options


def argument_error(message: str, hint: str | None = None) -> BlueprintError:
    return BlueprintError(Problem(message, (), WHERE, hint=hint))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_path(value: Any, what: str = "path") -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise argument_error(f"the {what} must be a string or a path, not {type(value).__name__}")


def check_choice(option: str, value: Any, choices: Iterable[str]) -> None:
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise argument_error(f"`--{option}`: {value!r} is not one of {', '.join(choices)}")


def check_flag(option: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise argument_error(f"`--{option}` is true or false, not {value!r}")


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
        raise argument_error(f"`--seed`: {seed!r} is not a whole number in 64 bits")


def check_tolerance(tolerance: Any) -> None:
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or not math.isfinite(tolerance) \
            or not 0 <= tolerance <= 1:
        raise argument_error(f"`tolerance`: {tolerance!r} is not a fraction between 0 and 1")


def check_batch(plan: Plan, batch: Any) -> None:
    """A whole batch size within MAX_BATCH whose largest tensor still has a size torch can count."""
    if not _is_int(batch) or not 1 <= batch <= MAX_BATCH:
        raise argument_error(f"`--batch`: {batch!r} is not a whole number from 1 to {MAX_BATCH:,}")
    per_sample = math.prod(plan.input_shape)
    for sp in plan.stages:
        for ctx in (sp.contexts[0], sp.contexts[-1]):
            grid = ctx.resolution[0] * ctx.resolution[1] + ctx.prefix_tokens
            # the widest hidden layer an option allows (64 x the width), and an attention matrix
            per_sample = max(per_sample, 64 * max(ctx.in_channels, ctx.out_channels) * grid,
                             (ctx.out_channels * grid * grid) if sp.data_format == "tokens" else 0)
    if batch * per_sample * 8 > MAX_TENSOR_BYTES:
        raise argument_error(
            f"`--batch {batch}`: the largest tensors of this network would hold about {batch * per_sample:.2g} "
            f"numbers, past the budget of {MAX_TENSOR_BYTES / 2**60:g} EiB per tensor", "use a smaller batch or input size")


def check_save(net: Any, blueprint: Any, path: Any, extra: Any) -> None:
    from .blueprint.validate import Blueprint
    from .build import ComposedNet

    if not isinstance(net, ComposedNet):
        raise argument_error(f"`net` must be a network built by composer.build, not {type(net).__name__}")
    if not isinstance(blueprint, Blueprint):
        raise argument_error(f"`blueprint` must be a Blueprint from composer.load, not {type(blueprint).__name__}")
    check_path(path, "output path")
    if extra is not None and not isinstance(extra, dict):
        raise argument_error(f"`extra` must be a dict of entries to save, not {type(extra).__name__}")
