"""Transitions: what happens at the start of a stage, before its blocks.

- `none`: nothing; the stage's first block carries the stride and the width change itself.
- `conv`: a strided conv with a norm before it (ConvNeXt's downsample layer) or after it (CvT's
  convolutional token embedding). Its stride is the stage's `stride`; padding is (k - s + 1) // 2,
  or TF's "SAME" (`padding: same`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .. import cost as C
from ...layers.names import Padding
from ..base import TRANSITIONS, BlockContext, Part, Variant, downsample

if TYPE_CHECKING:
    from torch import nn


class _Transition(Part):
    """Shared base: the strict scalar policy of every config model."""


@TRANSITIONS.register
class NoTransitionConfig(_Transition):
    """No layer: the stage's first block carries the stride and the width change."""

    type: Literal["none"] = Field("none", description="No transition layer.")

    def cost(self, ctx: BlockContext) -> C.Cost:
        return C.Cost()

    def build(self, ctx: BlockContext) -> nn.Module | None:
        return None


@TRANSITIONS.register
class ConvTransitionConfig(_Transition):
    """Strided conv with an optional LayerNorm before or after it."""

    type: Literal["conv"] = Field("conv", description="Transition kind: strided convolution.")
    kernel: int = Field(2, ge=1, le=31, description="Kernel size of the conv.")
    norm: Literal["before", "after", "none"] = Field(
        "before", description="Where the LayerNorm sits: before the conv (ConvNeXt) or after it (CvT).")
    norm_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the LayerNorm.")
    norm_bias: bool = Field(True, description="Additive term of the LayerNorm (the MetaFormer baselines: false).")
    bias: bool = Field(True, description="Bias on the conv.")
    padding: Padding = Field(
        "symmetric", description="`symmetric`: (k - stride + 1) // 2 on every side; `same`: TensorFlow's \"SAME\", "
                                 "out = ceil(in / stride), the odd pixel of padding at the bottom and right.")

    def pad(self, stride: int) -> int:
        """The symmetric padding on every side."""
        return max(0, (self.kernel - stride + 1) // 2)

    def output_size(self, size: int, stride: int) -> int:
        if self.padding == "same":
            return downsample(size, stride)
        return (size + 2 * self.pad(stride) - self.kernel) // stride + 1

    def cost(self, ctx: BlockContext) -> C.Cost:
        in_channels, out_channels, stride, hw = ctx.in_channels, ctx.out_channels, ctx.stride, ctx.resolution
        out = tuple(self.output_size(n, stride) for n in hw)
        total = C.conv(in_channels, out_channels, self.kernel, out, bias=self.bias)
        if self.norm != "none":
            channels, grid = (in_channels, hw) if self.norm == "before" else (out_channels, out)
            norm = C.layernorm(channels, grid[0] * grid[1])
            total += norm if self.norm_bias else C.Cost(channels, norm.macs)  # a weight and no bias
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import conv_transition

        return conv_transition(self, ctx.in_channels, ctx.out_channels, ctx.stride)

    def timm_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """ConvNeXt's `stages.N.downsample` (norm, conv); the MetaFormers' `stem` (conv, norm) before the
        first stage and `stages.N.downsample` (norm, conv) before the others; keys relative to the network."""
        stage = ctx.stage
        metaformer = ({"conv": "stem.conv", "norm_out": "stem.norm"} if stage == 0 else
                      {"norm_in": f"stages.{stage}.downsample.norm", "conv": f"stages.{stage}.downsample.conv"})
        return [{"norm_in": f"stages.{stage}.downsample.0", "conv": f"stages.{stage}.downsample.1"}, metaformer]

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Hugging Face transformers' CvT token embedding (conv, then LayerNorm) and ConvNeXt's
        `downsampling_layer` (LayerNorm, then conv); keys relative to the network."""
        stage = ctx.stage
        embedding = f"cvt.encoder.stages.{stage}.embedding.convolution_embeddings"
        down = f"convnext.encoder.stages.{stage}.downsampling_layer"
        return [{"conv": f"{embedding}.projection", "norm_out": f"{embedding}.normalization"},
                {"norm_in": f"{down}.0", "conv": f"{down}.1"}]


TransitionConfig = Annotated[_Transition, Variant(TRANSITIONS)]
