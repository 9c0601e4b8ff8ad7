"""What every part provides, and the registries that name the kinds of each sort of part.

A part (a block family, a stem, a head, a transition, or a variant inside one of them such as an
attention kind) is a frozen pydantic config model whose options each carry a description. It
checks itself against the context the plan gives it, describes, costs and builds itself, and names
its tensors in other libraries' checkpoints: one protocol (`Part`) for every sort. Kinds are
registered by their `type` in a `Registry`; blueprints can name registered kinds only, and a field
typed `Variant(REGISTRY)` accepts any of them (`attention: gpsa` is shorthand for `{type: gpsa}`).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Callable, ClassVar, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import core_schema

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


# No number in a blueprint needs to be larger; every derived width and tensor size then stays far
# from overflowing (a width times a ratio times a kernel area fits in 64 bits many times over).
MAX_NUMBER = 1 << 20


class StrictModel(BaseModel):
    """Base of every model of the blueprint language (blocks, stems, heads, transitions, stages).

    One scalar policy for all of them, so options added later are covered too: a bool or a string
    never passes as a number (`depth: true`, `classes: "10"`), an integer option takes no float,
    floats are finite, and no number exceeds MAX_NUMBER in size. Unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _bounded(cls, value):
        for number in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(number, (int, float)) and not isinstance(number, bool) and abs(number) > MAX_NUMBER:
                raise ValueError(f"input should be at most {MAX_NUMBER:,} in size")
        return value


class Part(StrictModel):
    """Base of every part. Each method takes the one context object the plan computes for it."""

    # groups of options that exclude each other; a stage override of one replaces the others
    exclusive_options: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # options of earlier versions that now live elsewhere -> how to write them now
    moved_options: ClassVar[dict[str, str]] = {}
    # the registry this kind is in (set by `Registry.register`)
    registry: ClassVar["Registry | None"] = None

    @classmethod
    def type_name(cls) -> str:
        return get_args(cls.model_fields["type"].annotation)[0]

    def check(self, ctx: BlockContext) -> list[Complaint]:
        """Shape problems of this part in `ctx`; the plan reports them with locations. A complaint's
        option may be a dotted path into a sub-config (`attention.kernel`)."""
        return []

    def unused(self, ctx: BlockContext) -> set[str]:
        """Options that have no effect in `ctx` (a pooling option of a block that does not downsample);
        the plan refuses them when a blueprint sets them for a stage where they never apply."""
        return set()

    def describe(self, ctx: BlockContext) -> str:
        """A short label for summaries, e.g. `mbconv k3 e4 se0.25`."""
        return self.type_name()

    def cost(self, ctx: BlockContext) -> "Cost":
        """Parameters and MACs of the part in `ctx` for one sample, from the config alone
        (conventions in composer/blocks/cost.py). `profile --check` compares it with the trace."""
        raise NotImplementedError(f"`{self.type_name()}` states no analytic cost")

    def build(self, ctx: BlockContext) -> nn.Module:
        raise NotImplementedError

    def timm_names(self, ctx: BlockContext, layout: str) -> "CheckpointNames":
        """How timm names this part's tensors: our key or module prefix -> timm's, or (timm's, convert)
        where `convert` turns timm's tensor into ours. `layout` is timm's numbering of the network
        (`resnet`, `efficientnet`, `stages`, `vit`). Empty: the part has no timm counterpart."""
        return {}

    def transformers_names(self, ctx: BlockContext, layout: str) -> "CheckpointNames":
        """How Hugging Face transformers names this part's tensors, as `timm_names` does for timm."""
        return {}


class Registry:
    """The kinds of one sort of part, by their `type`. Every module of `package` is imported on first
    use, so a new kind is a new file there; a plugin may also register kinds of its own at any time."""

    def __init__(self, sort: str, package: str | None = None, default: str | None = None):
        self.sort, self.package, self.default = sort, package, default
        self._kinds: dict[str, type[Part]] = {}
        self._loaded = package is None
        self._used = False  # a model's schema was built over the kinds
        _REGISTRIES.append(self)

    def register(self, cls: type[Part]) -> type[Part]:
        """Class decorator: make a kind nameable in blueprints by its `type`."""
        name = cls.type_name()
        if name in self._kinds and self._kinds[name] is not cls:
            raise ValueError(f"{self.sort} type {name!r} is already registered by {self._kinds[name].__name__}")
        cls.registry = self
        self._kinds[name] = cls
        if self._used:
            _STALE[0] = True
        return cls

    def unregister(self, name: str) -> None:
        """Remove a kind (a plugin that is unloaded, or a test's own kind)."""
        self._kinds.pop(name, None)
        if self._used:
            _STALE[0] = True

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            if not info.name.startswith("_") and info.name not in ("base", "module", "cost"):
                importlib.import_module(f"{self.package}.{info.name}")

    def kinds(self) -> dict[str, type[Part]]:
        self._load()
        return dict(self._kinds)

    def __getitem__(self, name: str) -> type[Part]:
        return self.kinds()[name]

    def __contains__(self, name: object) -> bool:
        return name in self.kinds()

    def __iter__(self):
        return iter(self.kinds())

    def __len__(self) -> int:
        return len(self.kinds())

    def items(self):
        return self.kinds().items()

    def values(self):
        return self.kinds().values()

    def keys(self):
        return self.kinds().keys()

    def get(self, name: Any, default=None):
        return self.kinds().get(name, default) if isinstance(name, str) else default

    def union(self) -> Any:
        """The discriminated union of the registered kinds (the type a `Variant` field validates)."""
        kinds = tuple(self.kinds().values())
        self._used = True
        return Annotated[Union[kinds], Field(discriminator="type")] if len(kinds) > 1 else kinds[0]

    def owners(self, option: str) -> list[str]:
        """The kinds that have `option`."""
        return [name for name, cls in self.kinds().items() if option in cls.model_fields]


_REGISTRIES: list[Registry] = []
_STALE = [False]  # a kind was registered after a schema was built over its registry


class Variant:
    """Field annotation: any registered kind of `registry`, validated as a discriminated union on
    `type`. A bare string is shorthand for a kind with its defaults (`attention: relative`), and a
    mapping without `type` is the registry's default kind (`ffn: {ratio: 3}` when the default is
    `mlp`). Use as `Annotated[BaseOfTheKinds, Variant(REGISTRY)]`."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def shorthand(self, value: Any) -> Any:
        if isinstance(value, str):
            return {"type": value}
        if isinstance(value, dict) and "type" not in value and self.registry.default:
            return {"type": self.registry.default, **value}
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self.shorthand, handler.generate_schema(self.registry.union()))

    def __get_pydantic_json_schema__(self, schema: core_schema.CoreSchema, handler) -> dict:
        kinds = sorted(self.registry.kinds())
        name = {"enum": kinds, "description": f"A {self.registry.sort} kind with its defaults."}
        union = handler(schema)
        refs = union.get("discriminator", {}).get("mapping", {})
        if self.registry.default in refs:  # a mapping without `type` is the default kind
            union = {"if": {"required": ["type"]}, "then": union, "else": {"$ref": refs[self.registry.default]}}
        return {"anyOf": [name, union]}


def refresh_parts() -> bool:
    """After a kind was registered late (a plugin, once blueprints were read), rebuild the models of
    every registered kind, innermost registries first, so that fields typed `Variant(...)` accept it.
    Returns whether anything was rebuilt (then models built over the parts must be built anew)."""
    if not _STALE[0]:
        return False
    _STALE[0] = False
    for registry in reversed(_REGISTRIES):  # the block-level registries come first in this file
        for cls in registry.kinds().values():
            cls.model_rebuild(force=True)
    return True


class BlockConfig(Part):
    """Base of every block family's config."""

    # "map": works on (B, C, H, W); "tokens": works on (B, N, C) with N = prefix + H*W
    data_format: ClassVar[Literal["map", "tokens"]] = "map"
    # whether the family can change width/resolution in its first block
    can_downsample: ClassVar[bool] = True
    can_change_width: ClassVar[bool] = True


BLOCKS = Registry("block", package="composer.blocks")
STEMS = Registry("stem", package="composer.blocks.stems")
HEADS = Registry("head", package="composer.blocks.heads")
TRANSITIONS = Registry("transition", package="composer.blocks.transitions")


def register_block(cls: type[BlockConfig]) -> type[BlockConfig]:
    """Class decorator: make a block family nameable in blueprints by its `type`."""
    return BLOCKS.register(cls)


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
