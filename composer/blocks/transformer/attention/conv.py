"""`conv`: CvT's convolutional projection attention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint, odd_kernels
from . import ATTENTIONS
from .base import AttentionConfig

if TYPE_CHECKING:
    from torch import nn


@ATTENTIONS.register
class ConvProjectionAttention(AttentionConfig):
    """Queries, keys and values from a depthwise conv + BatchNorm over the token map (keys and values
    strided), then Linears (Wu et al. 2021). Class tokens bypass the convs."""

    type: Literal["conv"] = Field("conv", description="Attention kind: CvT's convolutional projection.")
    kernel: int = Field(3, ge=1, le=15, description="Kernel of the depthwise Q/K/V projection convs (odd).")
    kv_stride: int = Field(2, ge=1, le=8, description="Stride of the key and value projection convs.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the projections' BatchNorms.")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return super().check(ctx) + odd_kernels(self, "kernel")

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, grid, prefix = ctx.in_channels, ctx.out_channels, ctx.out_resolution, ctx.prefix_tokens
        k, pad = self.kernel, self.kernel // 2
        kv_grid = tuple(C.conv_out(g, k, self.kv_stride, pad) for g in grid)
        n, n_kv = prefix + grid[0] * grid[1], prefix + kv_grid[0] * kv_grid[1]
        total = C.linear(c, c, n) + C.Cost(macs=2 * n * n_kv * c)
        for g, tokens in ((grid, n), (kv_grid, n_kv), (kv_grid, n_kv)):
            total += (C.conv(c_in, c_in, k, g, groups=c_in) + C.batchnorm(c_in, g[0] * g[1])
                      + C.linear(c_in, c, tokens, self.qkv_bias))
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.attention import ConvProjectionAttention as Module

        return Module(ctx.in_channels, ctx.out_channels, self.heads_in(ctx), ctx.out_resolution, ctx.prefix_tokens,
                      self.kernel, self.kv_stride, self.qkv_bias, scale=self.logit_scale(ctx), bn_eps=self.norm_eps)

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `CvtAttention`."""
        if layout != "cvt":
            return {}
        names: CheckpointNames = {"proj": "attention.output.dense"}
        for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
            conv = f"attention.attention.convolution_projection_{theirs}.convolution_projection"
            names |= {f"conv_{ours}.conv": f"{conv}.convolution", f"conv_{ours}.norm": f"{conv}.normalization",
                      ours: f"attention.attention.projection_{theirs}"}
        return names
