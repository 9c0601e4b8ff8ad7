"""Squeeze-and-excitation as one sub-config for every block family: `se: {ratio, from, act, gate, at}`.

`se: 0.25` is shorthand for `{ratio: 0.25}`; `se: 0` or `se: null` switches it off. Options left
unset take the family's defaults (`SEDefaults`): MBConv's SE uses the block's activation, ResNet's
ReLU, LocalViT's FFN an h-sigmoid gate. The SE width is computed here only (`SEConfig.width`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from ..layers.names import Activation, Gate
from . import cost as C
from .base import Complaint, StrictModel

if TYPE_CHECKING:
    from torch import nn

Base = Literal["in", "out", "hidden"]


@dataclass(frozen=True)
class SEDefaults:
    """A family's choices for the SE options a blueprint leaves unset."""

    base: Base = "out"
    act: str = "relu"
    gate: str = "sigmoid"
    places: tuple[str, ...] = ("end",)  # where the family can put SE


class SEConfig(StrictModel):
    """Squeeze-and-excitation: global pool -> reduce -> act -> expand -> gate -> scale."""

    ratio: float = Field(0.25, gt=0, le=1, description="SE width = ratio x the base width (`from`).")
    reduction: Optional[int] = Field(
        None, ge=1, le=65536, description="Instead of `ratio`: SE width = base width // reduction (LocalViT: 192).")
    from_: Optional[Base] = Field(
        None, alias="from", description="Base of the SE width: the block's input (EfficientNet), output (CoAtNet, "
                                        "SE-ResNet) or hidden (timm's `_rw` CoAtNets, LocalViT) width; unset: the "
                                        "family's default.")
    act: Optional[Activation] = Field(None, description="Activation inside SE; unset: the family's default (MBConv: "
                                                        "the block's `act`; others: relu).")
    gate: Optional[Gate] = Field(None, description="Gate of SE; unset: the family's default (sigmoid; LocalViT: "
                                                   "hardsigmoid).")
    at: Literal["end", "before_norm"] = Field(
        "end", description="Where SE sits: after the depthwise conv's norm and act (papers), or (MBConv only) between "
                           "the depthwise conv and its norm (timm's `coatnet_0_rw`, `coatnet_1_rw`).")

    @model_validator(mode="after")
    def _one_width_rule(self) -> "SEConfig":
        if "ratio" in self.model_fields_set and self.reduction is not None:
            raise ValueError("give either `ratio` or `reduction`, not both")
        return self

    def width(self, bases: dict[str, int], defaults: SEDefaults) -> int:
        """The SE hidden width, from the block's widths by name (`in`, `out`, `hidden`)."""
        base = bases[self.from_ or defaults.base]
        if self.reduction is not None:
            return max(1, base // self.reduction)
        return max(1, int(base * self.ratio))

    def check(self, defaults: SEDefaults) -> list[Complaint]:
        if self.at not in defaults.places:
            return [Complaint("se.at", f"this family puts SE at {', '.join(f'`{p}`' for p in defaults.places)} only",
                              "remove `at`")]
        return []

    def describe(self) -> str:
        return f"se1/{self.reduction}" if self.reduction is not None else f"se{self.ratio:g}"

    def cost(self, channels: int, hidden: int) -> C.Cost:
        return C.squeeze_excite(channels, hidden)

    def build(self, channels: int, hidden: int, defaults: SEDefaults) -> nn.Module:
        from ..layers.se import SqueezeExcite

        return SqueezeExcite(channels, hidden, self.act or defaults.act, self.gate or defaults.gate)


def _shorthand(value):
    """`se: 0.25` -> `{ratio: 0.25}`; `se: 0` -> off."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None if value == 0 else {"ratio": value}
    return value


SE = Annotated[Optional[SEConfig], BeforeValidator(_shorthand, json_schema_input_type=Union[float, SEConfig, None])]
