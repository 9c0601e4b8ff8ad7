"""`spatial_reduction`: PVTv2's attention (Wang et al. 2022): every token queries keys and values
taken from a coarser grid, made by a conv of kernel = stride = `reduction` and a LayerNorm; or, with
`pooled: P`, by average pooling to a P x P grid, a 1x1 conv, a LayerNorm and GELU (PVTv2's linear
variant). Cost then grows with the tokens, not with their square.
"""

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
class SpatialReductionAttention(AttentionConfig):
    """Queries from every token; keys and values from a reduced grid (strided conv + LayerNorm, or pooling)."""

    type: Literal["spatial_reduction"] = Field(
        "spatial_reduction", description="Attention kind: PVTv2's spatial-reduction attention.")
    reduction: int = Field(1, ge=1, le=64, description="Kernel and stride of the conv that makes the key/value grid "
                                                      "(1: keys and values from every token).")
    pooled: int | None = Field(None, ge=1, le=64, description="PVTv2's linear variant: pool the keys and values to "
                                                             "this grid size (then a 1x1 conv, LayerNorm, GELU); "
                                                             "none when unset.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorm on the reduced grid.")

    def kv_grid(self, ctx: BlockContext) -> tuple[int, int]:
        if self.pooled:
            return self.pooled, self.pooled
        return tuple(g // self.reduction for g in ctx.out_resolution)

    def unused(self, ctx: BlockContext) -> set[str]:
        return {"reduction"} if self.pooled else set()

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = super().check(ctx) + self.grid_only(ctx)
        h, w = ctx.out_resolution
        if not self.pooled and self.reduction > min(h, w):
            out.append(Complaint("reduction", f"a reduction of {self.reduction} leaves nothing of this stage's "
                                 f"{h}x{w} grid", f"use a reduction of at most {min(h, w)}, or a larger input"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        how = f" pooled{self.pooled}" if self.pooled else (f" sr{self.reduction}" if self.reduction > 1 else "")
        return f"spatial_reduction{how} h{self.heads_in(ctx)}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, (h, w) = ctx.in_channels, ctx.out_channels, ctx.out_resolution
        n = h * w
        kh, kw = self.kv_grid(ctx)
        m = kh * kw if (self.pooled or self.reduction > 1) else n
        total = C.linear(c_in, c, n, self.qkv_bias) + C.linear(c_in, 2 * c, m, self.qkv_bias) + C.linear(c, c, n)
        if self.pooled:
            total += C.conv(c_in, c_in, 1, (kh, kw), bias=True) + C.layernorm(c_in, m)
        elif self.reduction > 1:
            total += C.conv(c_in, c_in, self.reduction, (kh, kw), bias=True) + C.layernorm(c_in, m)
        return total + C.Cost(macs=2 * n * m * c)

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.spatial_reduction_attention import SpatialReductionAttention as Module

        return Module(ctx.out_channels, self.heads_in(ctx), ctx.out_resolution, self.reduction, self.pooled,
                      self.qkv_bias, self.norm_eps, self.logit_scale(ctx), in_dim=ctx.in_channels)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's PVTv2 `Attention`."""
        return {name: f"attn.{name}" for name in ("q", "kv", "proj", "sr", "norm")}
