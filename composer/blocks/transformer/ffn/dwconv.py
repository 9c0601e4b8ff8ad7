"""`dwconv`: PVTv2's feed-forward (Wang et al. 2022): Linear -> 3x3 depthwise conv on the token map
-> act -> Linear, after a LayerNorm; the depthwise conv gives the tokens their positions, so the
network needs no position embedding. `relu: true` adds the ReLU of PVTv2's linear variant."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint, odd_kernels
from . import FFNS
from .base import FfnConfig

if TYPE_CHECKING:
    from torch import nn


@FFNS.register
class DepthwiseConvFfn(FfnConfig):
    """Linear -> depthwise conv (with bias) -> act -> Linear, on the grid tokens."""

    grid_only: ClassVar[bool] = True

    type: Literal["dwconv"] = Field("dwconv", description="FFN kind: PVTv2's MLP with a depthwise conv.")
    kernel: int = Field(3, ge=1, le=15, description="Kernel of the depthwise conv (odd).")
    relu: bool = Field(False, description="A ReLU before the depthwise conv (PVTv2's linear variant).")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return super().check(ctx) + odd_kernels(self, "kernel")

    def describe(self, ctx: BlockContext) -> str:
        return f"dwconv-ffn k{self.kernel}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, grid, hidden = ctx.out_channels, ctx.out_resolution, self.hidden(ctx)
        n = ctx.prefix_tokens + grid[0] * grid[1]
        return (C.linear(c, hidden, n) + C.conv(hidden, hidden, self.kernel, grid, groups=hidden, bias=True)
                + C.linear(hidden, c, n))

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.spatial_reduction_attention import DepthwiseConvMlp

        return DepthwiseConvMlp(ctx.out_channels, self.hidden(ctx), ctx.out_resolution, self.act, self.kernel,
                                self.relu)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's PVTv2 `MlpWithDepthwiseConv`."""
        return {"fc1": "mlp.fc1", "dwconv": "mlp.dwconv", "fc2": "mlp.fc2"}
