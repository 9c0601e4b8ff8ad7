"""CAFormer's token mixer (Yu et al. 2023): multi-head self-attention over the grid tokens, without
position information; heads of `head_dim` channels (32 in CAFormer), no biases by default."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint
from . import MIXERS
from .base import MixerConfig

if TYPE_CHECKING:
    from torch import nn


@MIXERS.register
class AttentionMixerConfig(MixerConfig):
    """Self-attention; heads x head_dim is the width of queries, keys and values."""

    on_map: ClassVar[bool] = False

    type: Literal["attention"] = Field("attention", description="Token mixer: self-attention (CAFormer).")
    head_dim: int = Field(32, ge=1, le=65536, description="Width of each head.")
    heads: int | None = Field(None, ge=1, le=65536, description="Number of heads; default channels / head_dim "
                                                                "(at least 1).")
    qkv_bias: bool = Field(False, description="Bias on the query/key/value projection.")
    proj_bias: bool = Field(False, description="Bias on the output projection.")

    def num_heads(self, ctx: BlockContext) -> int:
        return self.heads or max(1, ctx.out_channels // self.head_dim)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return []  # any width: the heads' width need not be the channels'

    def describe(self, ctx: BlockContext) -> str:
        return f"attention h{self.num_heads(ctx)}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, (h, w) = ctx.out_channels, ctx.out_resolution
        n, width = h * w, self.num_heads(ctx) * self.head_dim
        return (C.linear(c, 3 * width, n, self.qkv_bias) + C.linear(width, c, n, self.proj_bias)
                + C.Cost(macs=2 * n * n * width))  # QK^T and AV

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.metaformer import MixerAttention

        return MixerAttention(ctx.out_channels, self.num_heads(ctx), self.head_dim, self.qkv_bias, self.proj_bias)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        return {}  # timm's Attention names its projections as ours
