"""MBConv, the inverted residual of MobileNetV2 (Sandler et al. 2018), EfficientNet (Tan & Le 2019)
and CoAtNet (Dai et al. 2021).

Data flow: 1x1 expand -> kxk depthwise -> SE -> 1x1 project, plus a shortcut.

Two norm placements:
- `pre` (CoAtNet): x + project(SE(dw(expand(BN(x))))); the project conv has a bias; a block that
  downsamples pools its shortcut, and one that changes width projects it: Proj(Pool(x)).
- `post` (MobileNetV2, EfficientNet): BN after every conv, no activation after the project conv
  (linear bottleneck); residual only when stride is 1 and widths match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...layers.names import PADDING_HELP, Activation, Gate, Padding
from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, odd_kernels, register_block

if TYPE_CHECKING:
    from torch import nn


def _hidden(config: "MBConvConfig", ctx: BlockContext) -> int:
    base = ctx.out_channels if config.expand_from == "out" else ctx.in_channels
    return max(1, round(base * config.expand))


def _se_width(config: "MBConvConfig", ctx: BlockContext, hidden: int) -> int:
    base = {"out": ctx.out_channels, "in": ctx.in_channels, "hidden": hidden}[config.se_from]
    return max(1, int(base * config.se))


@register_block
class MBConvConfig(BlockConfig):
    """Mobile inverted bottleneck (MBConv) with optional squeeze-excitation."""

    type: Literal["mbconv"] = Field("mbconv", description="Block family: MBConv / inverted residual.")
    expand: float = Field(4.0, gt=0, le=64, description="Expansion ratio t: hidden width = t x base width.")
    expand_from: Literal["in", "out"] = Field(
        "out", description="Base of the hidden width: the block's input (MobileNetV2) or output (CoAtNet) channels.")
    kernel: int = Field(3, ge=1, le=31, description="Kernel size of the depthwise conv (odd).")
    se: float = Field(0.25, ge=0, le=1, description="SE ratio; 0 switches squeeze-excitation off.")
    se_from: Literal["in", "out", "hidden"] = Field(
        "out", description="Base of the SE width: the block's input (EfficientNet), output (CoAtNet) or hidden "
                           "(timm's `_rw` CoAtNets) channels.")
    se_at: Literal["end", "before_norm"] = Field(
        "end", description="Where SE sits: after the depthwise conv's norm and act (papers), or between the "
                           "depthwise conv and its norm (timm's `coatnet_0_rw`, `coatnet_1_rw`).")
    se_act: Activation | None = Field(None, description="Activation inside SE; defaults to the block's `act`.")
    se_gate: Gate = Field("sigmoid", description="Gate of SE.")
    act: Activation = Field("gelu", description="Activation after the expand and depthwise convs.")
    norm: Literal["pre", "post"] = Field(
        "pre", description="`pre`: one BatchNorm before the block (CoAtNet); `post`: BatchNorm after each conv (MobileNetV2).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms (TF ports: 1e-3).")
    padding: Padding = Field("symmetric", description="Padding of the depthwise conv: " + PADDING_HELP)
    pre_norm_act: bool = Field(
        False, description="`pre` norm: an activation (`act`) after the pre-norm (timm's `_rw` CoAtNets).")
    stride_on: Literal["expand", "depthwise", "pool"] = Field(
        "expand", description="How a downsampling block strides: on the 1x1 expand (CoAtNet paper), on the depthwise "
                              "conv, or by pooling (`pool`) after the pre-norm (`pre` norm only).")
    pool: Literal["avg", "max"] = Field(
        "max", description="Pooling of the downsampling shortcut and of `stride_on: pool` (`pre` norm only); "
                           "kernel = stride.")
    project_bias: bool = Field(True, description="`pre` norm: bias on the 1x1 project conv.")
    shortcut_bias: bool = Field(
        True, description="`pre` norm: bias on the shortcut's 1x1 projection (used when the width changes).")

    @property
    def has_expand_conv(self) -> bool:
        """MobileNetV2 drops the expand conv when t = 1 (post norm); CoAtNet's pre-norm block keeps it."""
        return self.norm == "pre" or not (self.expand == 1 and self.expand_from == "in")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = odd_kernels(self, "kernel")
        if self.stride_on == "expand" and not self.has_expand_conv and ctx.stride > 1:
            out.append(Complaint("stride_on", "a block with expansion 1 has no expand conv to carry the stride",
                                 "use `stride_on: depthwise`"))
        if self.stride_on == "pool" and self.norm == "post":
            out.append(Complaint("stride_on", "`stride_on: pool` needs `norm: pre`", "use `stride_on: depthwise`"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        se = f" se{self.se:g}" if self.se else ""
        return f"mbconv k{self.kernel} e{self.expand:g}{se}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c_out = ctx.in_channels, ctx.out_channels
        (h, w), out = ctx.resolution, ctx.out_resolution
        pre = self.norm == "pre"
        hidden = _hidden(self, ctx) if self.has_expand_conv else c_in
        total = C.batchnorm(c_in, h * w) if pre else C.Cost()
        grid = out if self.stride_on == "pool" else (h, w)
        if self.has_expand_conv:
            if self.stride_on == "expand":
                grid = out
            total += C.conv(c_in, hidden, 1, grid) + C.batchnorm(hidden, grid[0] * grid[1])
        total += C.conv(hidden, hidden, self.kernel, out, groups=hidden) + C.batchnorm(hidden, out[0] * out[1])
        if self.se > 0:
            total += C.squeeze_excite(hidden, _se_width(self, ctx, hidden))
        total += C.conv(hidden, c_out, 1, out, bias=pre and self.project_bias)
        if not pre:
            total += C.batchnorm(c_out, out[0] * out[1])
        if pre and c_in != c_out:
            total += C.conv(c_in, c_out, 1, out, bias=self.shortcut_bias)
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import MBConv

        return MBConv(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """`post`: timm's EfficientNet/MobileNet blocks (DepthwiseSeparableConv when there is no expand
        conv, else InvertedResidual); `pre`: timm's MaxxVit MbConvBlock."""
        if self.norm == "post" and layout == "byob":  # ByobNet's `bottle` block (MobileViT's inverted residuals)
            return {"expand.0": "conv1_1x1.conv", "expand.1": "conv1_1x1.bn", "depthwise.0": "conv2_kxk.conv",
                    "depthwise.1": "conv2_kxk.bn", "project": "conv3_1x1.conv", "project_norm": "conv3_1x1.bn"}
        if self.norm == "post":
            if self.has_expand_conv:
                names = {"expand.0": "conv_pw", "expand.1": "bn1", "depthwise.0": "conv_dw", "depthwise.1": "bn2",
                         "project": "conv_pwl", "project_norm": "bn3"}
            else:
                names = {"depthwise.0": "conv_dw", "depthwise.1": "bn1", "project": "conv_pw", "project_norm": "bn2"}
            return names | {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}
        return {"pre_norm": "pre_norm", "expand.0": "conv1_1x1", "expand.1": "norm1", "depthwise.0": "conv2_kxk",
                "depthwise.1": "norm2", "se.reduce": "se.fc1", "se.expand": "se.fc2", "se_early.reduce": "se_early.fc1",
                "se_early.expand": "se_early.fc2", "project": "conv3_1x1", "shortcut.1": "shortcut.expand"}

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' TF ports: `MobileNetV2InvertedResidual` (`mobilenet_v2`; the first
        block, without an expand conv, sits in its `conv_stem`) and `EfficientNetBlock` (`efficientnet`)."""
        if self.norm != "post":
            return {}
        if layout == "mobilenet_v2":
            return {"expand.0": "expand_1x1.convolution", "expand.1": "expand_1x1.normalization",
                    "depthwise.0": "conv_3x3.convolution", "depthwise.1": "conv_3x3.normalization",
                    "project": "reduce_1x1.convolution", "project_norm": "reduce_1x1.normalization"}
        if layout == "efficientnet":
            return {"expand.0": "expansion.expand_conv", "expand.1": "expansion.expand_bn",
                    "depthwise.0": "depthwise_conv.depthwise_conv", "depthwise.1": "depthwise_conv.depthwise_norm",
                    "se.reduce": "squeeze_excite.reduce", "se.expand": "squeeze_excite.expand",
                    "project": "projection.project_conv", "project_norm": "projection.project_bn"}
        return {}


def __getattr__(name: str):
    """The nn.Module (`MBConv`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "MBConv":
        from .module import MBConv

        return MBConv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
