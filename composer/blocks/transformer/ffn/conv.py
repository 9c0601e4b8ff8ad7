"""`conv`: LocalViT's convolutional FFN on the token map, with no LayerNorm before it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, Complaint, odd_kernels
from ...se import SE, SEDefaults
from . import FFNS
from .base import FfnConfig

if TYPE_CHECKING:
    from torch import nn

SE_DEFAULTS = SEDefaults(base="hidden", act="relu", gate="hardsigmoid")


@FFNS.register
class ConvFfn(FfnConfig):
    """1x1 conv + BN + act -> kxk depthwise + BN + act -> SE -> 1x1 conv + BN (Li et al. 2021)."""

    pre_norm = False
    grid_only = True

    type: Literal["conv"] = Field("conv", description="FFN kind: LocalViT's 1x1 -> depthwise -> SE -> 1x1 on the map.")
    kernel: int = Field(3, ge=1, le=15, description="Kernel of the depthwise conv (odd).")
    se: SE = Field(None, description="Squeeze-excitation after the depthwise conv (LocalViT: `{reduction: 192}`, "
                                     "on the hidden width, ReLU, h-sigmoid); off when unset.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms.")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return super().check(ctx) + odd_kernels(self, "kernel") + (self.se.check(SE_DEFAULTS) if self.se else [])

    def se_width(self, ctx: BlockContext) -> int:
        hidden = self.hidden(ctx)
        return self.se.width({"in": ctx.out_channels, "out": ctx.out_channels, "hidden": hidden}, SE_DEFAULTS)

    def describe(self, ctx: BlockContext) -> str:
        return "conv-ffn"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, hidden, grid = ctx.out_channels, self.hidden(ctx), ctx.out_resolution
        g = grid[0] * grid[1]
        total = (C.conv(c, hidden, 1, grid) + C.batchnorm(hidden, g)
                 + C.conv(hidden, hidden, self.kernel, grid, groups=hidden) + C.batchnorm(hidden, g)
                 + C.conv(hidden, c, 1, grid) + C.batchnorm(c, g))
        return total + (self.se.cost(hidden, self.se_width(ctx)) if self.se else C.Cost())

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.ffn import ConvFeedForward

        se = self.se.build(self.hidden(ctx), self.se_width(ctx), SE_DEFAULTS) if self.se else None
        return ConvFeedForward(ctx.out_channels, self.hidden(ctx), self.act, ctx.out_resolution, self.kernel, se,
                               bn_eps=self.norm_eps)
