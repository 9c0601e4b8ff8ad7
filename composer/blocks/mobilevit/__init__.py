"""MobileViT block (Mehta & Rastegari 2022): convolutions for local features, a Transformer across
patches for global ones, on the feature map.

Data flow: [entry: MobileNetV2's inverted residual, 1x1 expand -> kxk depthwise (stride) -> 1x1
project, when the block downsamples or widens] -> kxk conv (local) -> 1x1 conv C -> D -> unfold into
p x p patches -> Transformer layers -> LayerNorm -> fold -> 1x1 conv D -> C -> fusion kxk conv of
[input, output] -> C. Every conv has BatchNorm and the activation, but the entry's projection (linear).
The grid must be a multiple of the patch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...layers.names import Activation
from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, odd_kernels, register_block

if TYPE_CHECKING:
    from torch import nn


@register_block
class MobileViTConfig(BlockConfig):
    """MobileViT block, with an inverted-residual entry where it downsamples or changes width."""

    type: Literal["mobilevit"] = Field("mobilevit", description="Block family: MobileViT.")
    dim: int | None = Field(None, ge=1, le=65536, description="Width D of the Transformer layers; default the "
                                                              "block's channels.")
    layers: int = Field(2, ge=1, le=64, description="Transformer layers per block.")
    heads: int = Field(4, ge=1, le=1024, description="Attention heads (D must divide by them).")
    mlp_ratio: float = Field(2.0, gt=0, le=64, description="Transformer MLP width = mlp_ratio x D.")
    patch: int = Field(2, ge=1, le=32, description="Patch side p: attention runs across the patches, among the "
                                                   "pixels at the same place in theirs.")
    kernel: int = Field(3, ge=1, le=15, description="Kernel of the local and fusion convs and of the entry's "
                                                    "depthwise conv (odd).")
    expand: float = Field(4.0, gt=0, le=16, description="Entry's hidden width = expand x input channels.")
    fusion: bool = Field(True, description="Fuse the block's input with its output by a kxk conv of both.")
    act: Activation = Field("silu", description="Activation of the convs and the Transformer MLP.")
    bn_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorms.")

    def width(self, ctx: BlockContext) -> int:
        return self.dim or ctx.out_channels

    def has_entry(self, ctx: BlockContext) -> bool:
        return ctx.stride > 1 or ctx.in_channels != ctx.out_channels

    def entry_hidden(self, ctx: BlockContext) -> int:
        return max(1, round(ctx.in_channels * self.expand))

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = odd_kernels(self, "kernel")
        if self.width(ctx) % self.heads:
            out.append(Complaint("heads", f"the Transformer width {self.width(ctx)} does not divide by {self.heads} heads",
                                 f"use a `dim` that is a multiple of {self.heads}"))
        h, w = ctx.out_resolution
        if h % self.patch or w % self.patch:
            out.append(Complaint("patch", f"the {h}x{w} grid of this block is not a multiple of the {self.patch}x"
                                 f"{self.patch} patches", f"choose an input size that makes the grid a multiple of "
                                 f"{self.patch}, or `patch: 1`"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        return f"mobilevit d{self.width(ctx)} x{self.layers} p{self.patch}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, k = ctx.in_channels, ctx.out_channels, self.kernel
        (hi, wi), (h, w) = ctx.resolution, ctx.out_resolution
        g = h * w
        total = C.Cost()
        if self.has_entry(ctx):
            e = self.entry_hidden(ctx)
            total += (C.conv(c_in, e, 1, (hi, wi)) + C.batchnorm(e, hi * wi)
                      + C.conv(e, e, k, (h, w), groups=e) + C.batchnorm(e, g) + C.conv(e, c, 1, (h, w)) + C.batchnorm(c, g))
        d = self.width(ctx)
        hidden = int(d * self.mlp_ratio)
        sequences, length = self.patch * self.patch, g // (self.patch * self.patch)
        layer = (C.layernorm(d, g) + C.linear(d, 3 * d, g) + C.linear(d, d, g)
                 + C.Cost(macs=2 * sequences * length * length * d)  # QK^T and AV within each sequence
                 + C.layernorm(d, g) + C.linear(d, hidden, g) + C.linear(hidden, d, g))
        total += (C.conv(c, c, k, (h, w)) + C.batchnorm(c, g) + C.conv(c, d, 1, (h, w)) + layer * self.layers
                  + C.layernorm(d, g) + C.conv(d, c, 1, (h, w)) + C.batchnorm(c, g))
        if self.fusion:
            total += C.conv(2 * c, c, k, (h, w)) + C.batchnorm(c, g)
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import MobileViTStageBlock

        return MobileViTStageBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ByobNet (`byob` layout): the entry is the stage's `bottle` block before the MobileViT block
        (`../1.`: the next block of timm's stage)."""
        if layout != "byob":
            return {}
        vit = "../1." if self.has_entry(ctx) else ""
        names: CheckpointNames = {
            "entry.expand.0": "conv1_1x1.conv", "entry.expand.1": "conv1_1x1.bn",
            "entry.depthwise.0": "conv2_kxk.conv", "entry.depthwise.1": "conv2_kxk.bn",
            "entry.project.0": "conv3_1x1.conv", "entry.project.1": "conv3_1x1.bn"}
        for ours, theirs in (("conv_kxk.0", "conv_kxk.conv"), ("conv_kxk.1", "conv_kxk.bn"), ("conv_1x1", "conv_1x1"),
                             ("transformer", "transformer"), ("norm", "norm"), ("conv_proj.0", "conv_proj.conv"),
                             ("conv_proj.1", "conv_proj.bn"), ("conv_fusion.0", "conv_fusion.conv"),
                             ("conv_fusion.1", "conv_fusion.bn")):
            names[f"vit.{ours}"] = vit + theirs
        return names


def __getattr__(name: str):
    """The nn.Module (`MobileViTStageBlock`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "MobileViTStageBlock":
        from .module import MobileViTStageBlock

        return MobileViTStageBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
