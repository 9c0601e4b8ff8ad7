"""The blueprint language as pydantic models.

Block legend entries are a discriminated union over the registered block families, so an error
names only the family that matched and an unknown `type` lists the registered ones. Per-stage
`block:` overrides are merged over the legend entry of the stage's letter and validated as a whole.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, Field, Strict, TypeAdapter, field_validator

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

    Sub-configs merge the same way when the override keeps their kind (`block: {attention: {heads: 3}}`
    over `attention: {type: conv, kernel: 5}`; a bare kind name counts as `{type: name}`); an override
    naming another kind replaces the sub-config. Options that exclude each other (`heads` /
    `head_dim`) are replaced as a group: a stage that sets `heads` drops the legend's `head_dim`.
    """
    return _merged(legend, override, BLOCKS)


def _merged(legend: Any, override: Any, registry: Any) -> Any:
    if isinstance(legend, str) and isinstance(override, dict):
        legend = {"type": legend}
    if not isinstance(legend, dict) or not isinstance(override, dict):
        return override
    if "type" in override and override.get("type") != legend.get("type"):
        return override
    kind = registry.get(legend.get("type") or registry.default) if registry is not None else None
    merged = dict(legend)
    for key, value in override.items():
        inner = _variant_registry(kind, key)
        merged[key] = _merged(legend[key], value, inner) if key in legend and inner is not None else value
    for group in getattr(kind, "exclusive_options", ()):
        if any(key in override for key in group):
            for key in group:
                if key not in override:
                    merged.pop(key, None)
    return merged


def _variant_registry(kind: Any, field: str) -> Any:
    """The registry of a kind's field typed `Variant(...)`, or None."""
    info = getattr(kind, "model_fields", {}).get(field)
    for meta in getattr(info, "metadata", ()):
        if isinstance(meta, Variant):
            return meta.registry
    return None


def resolve_block(raw: dict[str, Any]) -> BlockConfig:
    return block_adapter().validate_python(raw)
