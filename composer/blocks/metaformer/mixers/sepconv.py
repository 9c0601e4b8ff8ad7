"""ConvFormer's token mixer (Yu et al. 2023): MobileNetV2's inverted separable convolution,
1x1 C -> rC -> act -> k x k depthwise -> act -> 1x1 rC -> C, with no norms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint, positive_width
from . import MIXERS
from .base import MetaFormerActivation, MixerConfig, act_params

if TYPE_CHECKING:
    from torch import nn


@MIXERS.register
class SepConvMixerConfig(MixerConfig):
    """Inverted separable convolution."""

    type: Literal["sepconv"] = Field("sepconv", description="Token mixer: inverted separable conv (ConvFormer).")
    kernel: int = Field(7, ge=1, le=31, description="Kernel of the depthwise conv (odd).")
    expand: float = Field(2.0, gt=0, le=16, description="Hidden width = expand x channels.")
    act: MetaFormerActivation = Field("starrelu", description="Activation after the first 1x1 conv.")
    act2: MetaFormerActivation = Field("none", description="Activation after the depthwise conv.")
    bias: bool = Field(False, description="Biases on the three convs.")

    def hidden(self, ctx: BlockContext) -> int:
        return int(ctx.out_channels * self.expand)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = [Complaint("mixer.kernel", f"kernel {self.kernel} is even; it must be odd for the padding to keep the grid",
                         f"use `kernel: {self.kernel - 1}` or `kernel: {self.kernel + 1}`")] if self.kernel % 2 == 0 else []
        return out + [Complaint("mixer.expand", c.message, c.hint)
                      for c in positive_width("expand", ctx.out_channels, self.expand, "the separable conv's width")]

    def describe(self, ctx: BlockContext) -> str:
        return f"sepconv k{self.kernel}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, hidden, grid = ctx.out_channels, self.hidden(ctx), ctx.out_resolution
        return (C.conv(c, hidden, 1, grid, bias=self.bias) + C.conv(hidden, hidden, self.kernel, grid, groups=hidden,
                                                                     bias=self.bias)
                + C.conv(hidden, c, 1, grid, bias=self.bias) + C.Cost(act_params(self.act) + act_params(self.act2)))

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.metaformer import SepConvMixer

        return SepConvMixer(ctx.out_channels, self.hidden(ctx), self.kernel, self.act, self.act2, self.bias)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        return {}  # timm's SepConv names its layers as ours
