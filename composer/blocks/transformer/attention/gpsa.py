"""`gpsa`: ConViT's gated positional self-attention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint
from . import ATTENTIONS
from .base import AttentionConfig

if TYPE_CHECKING:
    from torch import nn


@ATTENTIONS.register
class GatedPositionalAttention(AttentionConfig):
    """Per head, a gated mix of content attention and attention from relative positions (d'Ascoli et al. 2021)."""

    type: Literal["gpsa"] = Field("gpsa", description="Attention kind: ConViT's gated positional self-attention.")
    locality_strength: float = Field(
        1.0, gt=0, le=100, description="How sharply each head attends around its offset at initialisation.")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return super().check(ctx) + self.grid_only(ctx)

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, grid = ctx.in_channels, ctx.out_channels, ctx.out_resolution
        n, heads = ctx.prefix_tokens + grid[0] * grid[1], self.heads_in(ctx)
        positional = C.linear(3, heads, n * n) + C.Cost(heads)  # scores from (dx, dy, d^2), and the gates
        return (C.linear(c_in, 2 * c, n, self.qkv_bias) + C.linear(c_in, c, n, self.qkv_bias) + C.linear(c, c, n)
                + positional + C.Cost(macs=2 * n * n * c))

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.attention import GatedPositionalAttention as Module

        return Module(ctx.in_channels, ctx.out_channels, self.heads_in(ctx), ctx.out_resolution, self.qkv_bias,
                      self.locality_strength, scale=self.logit_scale(ctx))

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ConViT GPSA."""
        return {"qk": "attn.qk", "v": "attn.v", "proj": "attn.proj", "pos_proj": "attn.pos_proj",
                "gate": "attn.gating_param"}
