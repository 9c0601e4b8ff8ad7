"""PoolFormer's token mixer (Yu et al. 2022): average pooling minus the input, no parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint
from . import MIXERS
from .base import MixerConfig

if TYPE_CHECKING:
    from torch import nn


@MIXERS.register
class PoolMixerConfig(MixerConfig):
    """pool(x) - x: k x k average pooling, stride 1, the padding left out of each average."""

    type: Literal["pool"] = Field("pool", description="Token mixer: average pooling minus the input (PoolFormer).")
    size: int = Field(3, ge=1, le=31, description="Pooling window (odd).")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        if self.size % 2 == 0:
            return [Complaint("mixer.size", f"pooling window {self.size} is even; it must be odd for the padding to keep "
                              "the grid", f"use `size: {self.size - 1}` or `size: {self.size + 1}`")]
        return []

    def describe(self, ctx: BlockContext) -> str:
        return f"pool{self.size}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        return C.Cost()  # pooling and the difference are elementwise: free by the counter's conventions

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.metaformer import PoolMixer

        return PoolMixer(self.size)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        return {}
