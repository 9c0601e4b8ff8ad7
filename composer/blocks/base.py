"""What every block family provides, and the registry that names them.

A block family is a frozen pydantic config model (its options, each with a description) that knows
how to check itself against the shapes the plan gives it and how to build its nn.Module. Families
are registered by name with `@register_block`; blueprints can name registered blocks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Literal, Union, get_args

from pydantic import BaseModel

from ..blueprint.scalars import MAX_NUMBER, StrictModel  # noqa: F401  (the language's scalar policy)
from .cost import Cost

if TYPE_CHECKING:
    from torch import nn

# Checkpoint mapping of a part: our key (or module prefix) -> timm's key, or (timm's key, convert).
CheckpointNames = dict[str, Union[str, tuple[str, Callable]]]


def downsample(size: int, stride: int) -> int:
    """ceil(size / stride)."""
    return -(-size // stride)


@dataclass(frozen=True)
class BlockContext:
    """Everything a block needs to know about where it sits in the network."""

    in_channels: int
    out_channels: int
    stride: int  # 1, or the stage's stride for the first block of a stage
    resolution: tuple[int, int]  # (H, W) of the block's input grid
    prefix_tokens: int = 0  # class tokens in front of the grid tokens
    drop_path: float = 0.0

    @property
    def out_resolution(self) -> tuple[int, int]:
        """ceil(H / stride) x ceil(W / stride): what a strided conv with "same" padding, or pooling
        with `ceil_mode`, gives; every block family downsamples this way."""
        return downsample(self.resolution[0], self.stride), downsample(self.resolution[1], self.stride)


@dataclass(frozen=True)
class Complaint:
    """A shape problem a block finds in its context: the option at fault, what, and a fix."""

    option: str  # a block option name, or "channels" / "stride" / "depth" for the stage
    message: str
    hint: str | None = None


class BlockConfig(StrictModel):
    """Base of every block family's config."""

    # "map": works on (B, C, H, W); "tokens": works on (B, N, C) with N = prefix + H*W
    data_format: ClassVar[Literal["map", "tokens"]] = "map"
    # whether the family can change width/resolution in its first block
    can_downsample: ClassVar[bool] = True
    can_change_width: ClassVar[bool] = True
    # groups of options that exclude each other; a stage override of one replaces the others
    exclusive_options: ClassVar[tuple[tuple[str, ...], ...]] = ()

    @classmethod
    def type_name(cls) -> str:
        return get_args(cls.model_fields["type"].annotation)[0]

    def check(self, ctx: BlockContext) -> list[Complaint]:
        """Shape problems of this block in `ctx`; the plan reports them with locations."""
        return []

    def build(self, ctx: BlockContext) -> nn.Module:
        raise NotImplementedError

    def cost(self, ctx: BlockContext) -> "Cost":
        """Parameters and MACs of one block in `ctx` for one sample, from the config alone
        (conventions in composer/blocks/cost.py). `profile --check` compares it with the trace."""
        raise NotImplementedError(f"block family `{self.type_name()}` states no analytic cost")

    def describe(self, ctx: BlockContext) -> str:
        """A short label for summaries, e.g. `mbconv k3 e4 se0.25`."""
        return self.type_name()

    def timm_names(self, ctx: BlockContext, layout: str) -> "CheckpointNames":
        """How timm names this block's tensors: our key or module prefix -> timm's, or (timm's, convert)
        where `convert` turns timm's tensor into ours. `layout` is timm's numbering of the block
        (`resnet`, `efficientnet`, `stages`, `vit`). Empty: the family has no timm counterpart."""
        return {}


BLOCKS: dict[str, type[BlockConfig]] = {}


def register_block(cls: type[BlockConfig]) -> type[BlockConfig]:
    """Class decorator: make a block family nameable in blueprints by its `type`."""
    name = cls.type_name()
    if name in BLOCKS and BLOCKS[name] is not cls:
        raise ValueError(f"block type {name!r} is already registered by {BLOCKS[name].__name__}")
    BLOCKS[name] = cls
    return cls


def odd_kernels(config: BaseModel, *options: str) -> list[Complaint]:
    """Complaints for kernel options that are even: "same" padding (k // 2) only centres odd kernels."""
    out = []
    for option in options:
        k = getattr(config, option)
        if k % 2 == 0:
            out.append(Complaint(option, f"kernel {k} is even; it must be odd for the padding to keep the grid",
                                 f"use {k - 1} or {k + 1}"))
    return out


def positive_width(option: str, channels: int, ratio: float, what: str) -> list[Complaint]:
    """A complaint when a width derived from a ratio (`int(channels * ratio)`) rounds down to 0."""
    if int(channels * ratio) >= 1:
        return []
    return [Complaint(option, f"{what} = {ratio:g} x {channels} channels rounds down to 0",
                      f"raise `{option}` to at least {1 / channels:.3g}, or widen the stage")]


def divisors_near(value: int, divisor: int) -> str:
    """`96 or 128` for value 100 and divisor 32: the nearest widths that divide."""
    low = (value // divisor) * divisor
    high = low + divisor
    return f"{low} or {high}" if low > 0 else f"{high}"
