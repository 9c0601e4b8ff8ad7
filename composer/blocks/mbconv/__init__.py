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

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from ...layers.names import PADDING_HELP, Activation, Padding
from .. import cost as C
from ..base import (BlockConfig, BlockContext, CheckpointNames, Complaint, Part, Registry, Variant, odd_kernels,
                    register_block)
from ..se import SE, SEConfig, SEDefaults

if TYPE_CHECKING:
    from torch import nn

# where MBConv's norms sit: `pre` (one BatchNorm before the block) or `post` (after each conv)
NORM_PLACEMENTS = Registry("mbconv norm placement", default="pre")


class NormPlacement(Part):
    """Base of MBConv's norm placements."""


@NORM_PLACEMENTS.register
class PreNorm(NormPlacement):
    """One BatchNorm before the block (CoAtNet); the project conv may have a bias; a block that
    downsamples pools its shortcut, one that changes width projects it."""

    type: Literal["pre"] = Field("pre", description="One BatchNorm before the block (CoAtNet).")
    act: bool = Field(False, description="An activation (the block's `act`) after the pre-norm (timm's `_rw` CoAtNets).")
    project_bias: bool = Field(True, description="Bias on the 1x1 project conv.")
    shortcut_bias: bool = Field(True, description="Bias on the shortcut's 1x1 projection (used when the width changes).")
    pool: Literal["avg", "max"] = Field(
        "max", description="Pooling of the downsampling shortcut and of `stride_on: pool`; kernel = stride.")


@NORM_PLACEMENTS.register
class PostNorm(NormPlacement):
    """BatchNorm after every conv, no activation after the project conv (MobileNetV2, EfficientNet);
    residual only when the stride is 1 and the widths match."""

    type: Literal["post"] = Field("post", description="BatchNorm after each conv (MobileNetV2, EfficientNet).")


def _hidden(config: "MBConvConfig", ctx: BlockContext) -> int:
    base = ctx.out_channels if config.expand_from == "out" else ctx.in_channels
    return max(1, round(base * config.expand))


_PRE = "norm: {type: pre, %s: %s}"


@register_block
class MBConvConfig(BlockConfig):
    """Mobile inverted bottleneck (MBConv) with optional squeeze-excitation."""

    moved_options = {
        "se_from": "se: {ratio: 0.25, from: hidden}", "se_at": "se: {ratio: 0.25, at: before_norm}",
        "se_act": "se: {ratio: 0.25, act: relu}", "se_gate": "se: {ratio: 0.25, gate: hardsigmoid}",
        "pre_norm_act": _PRE % ("act", "true"), "project_bias": _PRE % ("project_bias", "false"),
        "shortcut_bias": _PRE % ("shortcut_bias", "false"), "pool": _PRE % ("pool", "avg"),
    }

    type: Literal["mbconv"] = Field("mbconv", description="Block family: MBConv / inverted residual.")
    expand: float = Field(4.0, gt=0, le=64, description="Expansion ratio t: hidden width = t x base width.")
    expand_from: Literal["in", "out"] = Field(
        "out", description="Base of the hidden width: the block's input (MobileNetV2) or output (CoAtNet) channels.")
    kernel: int = Field(3, ge=1, le=31, description="Kernel size of the depthwise conv (odd).")
    se: SE = Field(
        default_factory=lambda: SEConfig(), description="Squeeze-excitation after the depthwise conv (default "
        "`{ratio: 0.25}` of the output width, the block's `act`, sigmoid gate); `se: 0` switches it off.")
    act: Activation = Field("gelu", description="Activation after the expand and depthwise convs.")
    norm: Annotated[NormPlacement, Variant(NORM_PLACEMENTS)] = Field(
        default_factory=lambda: PreNorm(), description="`pre`: one BatchNorm before the block (CoAtNet), with its "
                                                       "options; `post`: BatchNorm after each conv (MobileNetV2).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms (TF ports: 1e-3).")
    padding: Padding = Field("symmetric", description="Padding of the depthwise conv: " + PADDING_HELP)
    stride_on: Literal["expand", "depthwise", "pool"] = Field(
        "expand", description="How a downsampling block strides: on the 1x1 expand (CoAtNet paper), on the depthwise "
                              "conv, or by pooling (`pool`) after the pre-norm (`pre` norm only).")

    @property
    def pre(self) -> bool:
        return isinstance(self.norm, PreNorm)

    @property
    def se_defaults(self) -> SEDefaults:
        return SEDefaults(base="out", act=self.act, gate="sigmoid", places=("end", "before_norm"))

    def se_width(self, ctx: BlockContext, hidden: int) -> int:
        return self.se.width({"in": ctx.in_channels, "out": ctx.out_channels, "hidden": hidden}, self.se_defaults)

    @property
    def has_expand_conv(self) -> bool:
        """MobileNetV2 drops the expand conv when t = 1 (post norm); CoAtNet's pre-norm block keeps it."""
        return self.pre or not (self.expand == 1 and self.expand_from == "in")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = odd_kernels(self, "kernel")
        if self.stride_on == "expand" and not self.has_expand_conv and ctx.stride > 1:
            out.append(Complaint("stride_on", "a block with expansion 1 has no expand conv to carry the stride",
                                 "use `stride_on: depthwise`"))
        if self.stride_on == "pool" and not self.pre:
            out.append(Complaint("stride_on", "`stride_on: pool` needs `norm: pre`", "use `stride_on: depthwise`"))
        return out + (self.se.check(self.se_defaults) if self.se else [])

    def unused(self, ctx: BlockContext) -> set[str]:
        out = set()
        if ctx.stride == 1 and self.stride_on != "pool":
            out.add("norm.pool")
        if ctx.in_channels == ctx.out_channels:
            out.add("norm.shortcut_bias")
        return out

    def describe(self, ctx: BlockContext) -> str:
        se = f" {self.se.describe()}" if self.se else ""
        return f"mbconv k{self.kernel} e{self.expand:g}{se}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c_out = ctx.in_channels, ctx.out_channels
        (h, w), out = ctx.resolution, ctx.out_resolution
        pre = self.pre
        hidden = _hidden(self, ctx) if self.has_expand_conv else c_in
        total = C.batchnorm(c_in, h * w) if pre else C.Cost()
        grid = out if self.stride_on == "pool" else (h, w)
        if self.has_expand_conv:
            if self.stride_on == "expand":
                grid = out
            total += C.conv(c_in, hidden, 1, grid) + C.batchnorm(hidden, grid[0] * grid[1])
        total += C.conv(hidden, hidden, self.kernel, out, groups=hidden) + C.batchnorm(hidden, out[0] * out[1])
        if self.se:
            total += self.se.cost(hidden, self.se_width(ctx, hidden))
        total += C.conv(hidden, c_out, 1, out, bias=pre and self.norm.project_bias)
        if not pre:
            total += C.batchnorm(c_out, out[0] * out[1])
        if pre and c_in != c_out:
            total += C.conv(c_in, c_out, 1, out, bias=self.norm.shortcut_bias)
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import MBConv

        return MBConv(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """`post`: timm's EfficientNet/MobileNet blocks (DepthwiseSeparableConv when there is no expand
        conv, else InvertedResidual); `pre`: timm's MaxxVit MbConvBlock."""
        if not self.pre and layout == "byob":  # ByobNet's `bottle` block (MobileViT's inverted residuals)
            return {"expand.conv": "conv1_1x1.conv", "expand.norm": "conv1_1x1.bn", "depthwise.conv": "conv2_kxk.conv",
                    "depthwise.norm": "conv2_kxk.bn", "project": "conv3_1x1.conv", "project_norm": "conv3_1x1.bn"}
        if not self.pre:
            if self.has_expand_conv:
                names = {"expand.conv": "conv_pw", "expand.norm": "bn1", "depthwise.conv": "conv_dw",
                         "depthwise.norm": "bn2", "project": "conv_pwl", "project_norm": "bn3"}
            else:
                names = {"depthwise.conv": "conv_dw", "depthwise.norm": "bn1", "project": "conv_pw",
                         "project_norm": "bn2"}
            return names | {"se.reduce": "se.conv_reduce", "se.expand": "se.conv_expand"}
        return {"pre_norm": "pre_norm", "expand.conv": "conv1_1x1", "expand.norm": "norm1",
                "depthwise.conv": "conv2_kxk", "depthwise.norm": "norm2", "se.reduce": "se.fc1", "se.expand": "se.fc2",
                "se_early.reduce": "se_early.fc1", "se_early.expand": "se_early.fc2", "project": "conv3_1x1",
                "shortcut.proj": "shortcut.expand"}

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' TF ports: `MobileNetV2InvertedResidual` (`mobilenet_v2`; the first
        block, without an expand conv, sits in its `conv_stem`) and `EfficientNetBlock` (`efficientnet`)."""
        if self.pre:
            return {}
        if layout == "mobilenet_v2":
            return {"expand.conv": "expand_1x1.convolution", "expand.norm": "expand_1x1.normalization",
                    "depthwise.conv": "conv_3x3.convolution", "depthwise.norm": "conv_3x3.normalization",
                    "project": "reduce_1x1.convolution", "project_norm": "reduce_1x1.normalization"}
        if layout == "efficientnet":
            return {"expand.conv": "expansion.expand_conv", "expand.norm": "expansion.expand_bn",
                    "depthwise.conv": "depthwise_conv.depthwise_conv", "depthwise.norm": "depthwise_conv.depthwise_norm",
                    "se.reduce": "squeeze_excite.reduce", "se.expand": "squeeze_excite.expand",
                    "project": "projection.project_conv", "project_norm": "projection.project_bn"}
        return {}


def __getattr__(name: str):
    """The nn.Module (`MBConv`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "MBConv":
        from .module import MBConv

        return MBConv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
