"""The blueprint language as pydantic models.

Block legend entries are a discriminated union over the registered block families, so an error
names only the family that matched and an unknown `type` lists the registered ones. Per-stage
`block:` overrides are merged over the legend entry of the stage's letter and validated as a whole.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional, Union, get_args

from pydantic import BaseModel, BeforeValidator, Field, Strict, TypeAdapter, field_validator

from ..blocks import BLOCKS
from ..blocks.base import BlockConfig, StrictModel, Variant, refresh_parts
from ..blocks.heads import HeadConfig, PoolHeadConfig
from ..blocks.stems import NoStemConfig, StemConfig
from ..blocks.transitions import NoTransitionConfig, TransitionConfig

LETTER = r"[A-Za-z][A-Za-z0-9_]*"
LAYOUT_RE = re.compile(rf"^\s*{LETTER}(\s*-\s*{LETTER})*\s*$")


def parse_layout(layout: str) -> list[str]:
    """`C-C-T-T` -> ["C", "C", "T", "T"]."""
    return [part.strip() for part in layout.split("-")]


class _Model(StrictModel):
    """Blueprint sections: the strict scalar policy of every config model."""


_Side = Annotated[int, Field(ge=1, le=16384), Strict()]


class InputSpec(_Model):
    channels: int = Field(3, ge=1, le=4096, description="Image channels.")
    # a YAML list is read as [height, width]: the one place where a non-tuple may become a tuple
    size: Union[_Side, Annotated[tuple[_Side, _Side], Strict(False)]] = Field(
        224, description="Image size: one number for square images, or [height, width].")

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)


class StageSpec(_Model):
    depth: int = Field(ge=1, le=1000, description="Number of blocks in the stage.")
    channels: int = Field(ge=1, le=65536, description="Output width of the stage.")
    stride: int = Field(1, ge=1, le=64, description="Downsampling of the stage: by its transition if it has one, else by its first block.")
    transition: TransitionConfig = Field(
        default_factory=NoTransitionConfig, description="Layer at the start of the stage (downsampling or token embedding).")
    class_token: bool = Field(False, description="Insert a learned class token at the start of this stage.")
    pos_embed: bool = Field(False, description="Add a learned absolute position embedding at the start of this stage.")
    block: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of this stage's block options, merged over its `blocks` entry.")


class PretrainedSpec(_Model):
    """Parts of this network initialised from a checkpoint of another (or the same) architecture."""

    checkpoint: str = Field(description="Checkpoint file (.safetensors, or a .pt/.pth/.bin torch pickle), relative to "
                                        "this blueprint's folder.")
    blueprint: Optional[str] = Field(
        None, description="Blueprint of the checkpoint's architecture, relative to this blueprint's folder; needed "
                          "for a checkpoint in timm's layout (a composer model carries its own).")
    layout: Literal["auto", "composer", "timm", "transformers"] = Field(
        "auto", description="Layout of the checkpoint's tensor names.")
    parts: list[Union[Literal["stem", "head"], Annotated[int, Field(ge=0)]]] = Field(
        min_length=1, description="What to take: `stem`, `head`, and stage indices (stage N from the checkpoint's "
                                  "stage N), e.g. [stem, 0, 1].")


class BlueprintBase(_Model):
    name: str = Field("", description="Name of the network (defaults to the file name).")
    input: InputSpec = Field(default_factory=InputSpec, description="Input image shape.")
    classes: int = Field(1000, ge=0, le=1_000_000, description="Number of classes; 0 builds a feature extractor.")
    stem: StemConfig = Field(default_factory=NoStemConfig, description="The stem.")
    layout: str = Field(description="Stage grammar: one letter per stage, joined by `-`, e.g. `C-C-T-T`.")
    stages: list[StageSpec] = Field(min_length=1, description="One entry per letter of the layout.")
    head: HeadConfig = Field(default_factory=PoolHeadConfig, description="The classification head.")
    drop_path: float = Field(0.0, ge=0, lt=1, description="Stochastic depth rate, rising linearly to this value over all blocks.")
    pretrained: list[PretrainedSpec] = Field(
        default_factory=list, description="Parts initialised from checkpoints when the network is built with weights "
                                          "(a transplant), e.g. a hybrid's stem and conv stages from ConvNeXt.")

    @field_validator("layout")
    @classmethod
    def _layout_grammar(cls, value: str) -> str:
        if not LAYOUT_RE.match(value):
            raise ValueError("expected block letters joined by `-`, e.g. `C-C-T-T`")
        return value


Block = Annotated[BlockConfig, Variant(BLOCKS)]


@lru_cache(maxsize=1)
def _cached_models() -> tuple[type[BaseModel], TypeAdapter]:
    class Blueprint(BlueprintBase):
        blocks: dict[str, Block] = Field(description="Legend: block options for each layout letter.")

    return Blueprint, TypeAdapter(Block)


def _models() -> tuple[type[BaseModel], TypeAdapter]:
    """The models over the registered kinds of every part; built anew after a late registration."""
    if refresh_parts():
        _cached_models.cache_clear()
        BlueprintBase.model_rebuild(force=True)
        for model in (InputSpec, StageSpec, PretrainedSpec):
            model.model_rebuild(force=True)
    return _cached_models()


def blueprint_model() -> type[BaseModel]:
    """The Blueprint pydantic model over the currently registered kinds."""
    return _models()[0]


def block_adapter() -> TypeAdapter:
    """Validator of one block config (any registered family)."""
    return _models()[1]


def block_union() -> Any:
    """The type of a block config (any registered family), for locating errors."""
    return Block


def merged_block(legend: Any, override: Any) -> Any:
    """A stage's block options: its legend entry with the stage's overrides on top.

    Sub-configs merge the same way: `block: {attention: {heads: 3}}` over `attention: {type: conv,
    kernel: 5}` keeps the conv attention and its kernel; `block: {se: {gate: hardsigmoid}}` keeps the
    legend's SE ratio. Shorthands count as what they stand for (`attention: plain` is `{type: plain}`,
    `se: 0.25` is `{ratio: 0.25}`, a mapping without `type` the default kind). An override naming
    another kind switches to it, keeping the legend's options that the new kind has too (its heads,
    say). Options that exclude each other (`heads` / `head_dim`, `ratio` / `reduction`) are replaced
    as a group: a stage that sets `heads` drops the legend's `head_dim`.
    """
    return _merged(legend, override, _Field(registry=BLOCKS))


def merged_options(current: Any, override: Any, family: Any) -> Any:
    """Two sets of options of one block family (a stage's override and more on top), merged as
    `merged_block` merges an override into a legend entry."""
    return _merged(current, override, _Field(model=family))


class _Field:
    """What a field's value may be: a kind of a registry (`Variant`), one model (SE), or anything."""

    def __init__(self, registry: Any = None, model: Any = None, shorthands: tuple = ()):
        self.registry, self.model, self.shorthands = registry, model, shorthands

    @classmethod
    def of(cls, model: Any, name: str) -> "_Field":
        info = getattr(model, "model_fields", {}).get(name)
        if info is None:
            return cls()
        registry = next((m.registry for m in info.metadata if isinstance(m, Variant)), None)
        shorthands = tuple(m.shorthand if isinstance(m, Variant) else m.func for m in info.metadata
                           if isinstance(m, (Variant, BeforeValidator)))
        models = [t for t in (info.annotation, *get_args(info.annotation))
                  if isinstance(t, type) and issubclass(t, BaseModel)]
        return cls(registry, models[0] if models and registry is None else None, shorthands)

    def expand(self, value: Any) -> Any:
        """A shorthand as what it stands for (`attention: plain`, `se: 0.25`); a mapping stays as
        written (a stage's `{heads: 3}` names no kind: it keeps the legend's)."""
        if self.registry is not None:
            return {"type": value} if isinstance(value, str) else value
        for shorthand in self.shorthands:
            try:
                value = shorthand(value)
            except ValueError:  # not a shorthand: validation reports it
                return value
        return value

    def kind(self, value: dict) -> Any:
        if self.registry is not None:
            return self.registry.get(value.get("type") or self.registry.default)
        return self.model


def _merged(legend: Any, override: Any, field: _Field) -> Any:
    legend, override = field.expand(legend), field.expand(override)
    if not isinstance(legend, dict) or not isinstance(override, dict) or field.kind(legend) is None:
        return override
    kind, new = field.kind(legend), field.kind(override)
    if "type" in override and new is not kind:  # another kind: what both kinds have carries over
        fields = getattr(new, "model_fields", {})
        legend = {k: v for k, v in legend.items() if k in fields and k != "type"}
        kind = new
    merged = dict(legend)
    for key, value in override.items():
        inner = _Field.of(kind, key)
        merged[key] = _merged(legend[key], value, inner) if key in legend else value
    for group in getattr(kind, "exclusive_options", ()):
        if any(key in override for key in group):
            for key in group:
                if key not in override:
                    merged.pop(key, None)
    return merged


def resolve_block(raw: dict[str, Any]) -> BlockConfig:
    return block_adapter().validate_python(raw)
