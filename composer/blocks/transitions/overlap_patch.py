"""`overlap_patch`: PVTv2's overlapping patch embedding (Wang et al. 2022): a strided conv whose
kernel is larger than its stride (padding k // 2), then a LayerNorm; optionally a LayerNorm before
it (PVTv2 normalises the end of every stage). The stride is the stage's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .. import cost as C
from ..base import BlockContext, TRANSITIONS
from . import _Transition

if TYPE_CHECKING:
    from torch import nn


@TRANSITIONS.register
class OverlapPatchTransitionConfig(_Transition):
    """(LayerNorm ->) kxk conv with stride s and padding k // 2 -> LayerNorm."""

    type: Literal["overlap_patch"] = Field("overlap_patch", description="Transition kind: overlapping patch "
                                                                        "embedding (PVTv2).")
    kernel: int = Field(3, ge=1, le=31, description="Kernel size of the conv (odd; larger than the stride).")
    norm_before: bool = Field(False, description="A LayerNorm on the incoming map first (PVTv2: the previous "
                                                 "stage's final norm).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorm after the conv.")
    norm_before_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the LayerNorm before the conv.")

    def output_size(self, size: int, stride: int) -> int:
        return (size + 2 * (self.kernel // 2) - self.kernel) // stride + 1

    def cost(self, ctx: BlockContext) -> C.Cost:
        in_channels, out_channels, stride, hw = ctx.in_channels, ctx.out_channels, ctx.stride, ctx.resolution
        out = tuple(self.output_size(n, stride) for n in hw)
        total = C.conv(in_channels, out_channels, self.kernel, out, bias=True) + C.layernorm(out_channels,
                                                                                             out[0] * out[1])
        return total + (C.layernorm(in_channels, hw[0] * hw[1]) if self.norm_before else C.Cost())

    def build(self, ctx: BlockContext) -> nn.Module:
        in_channels, out_channels, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        from collections import OrderedDict

        from torch import nn

        from ...layers import LayerNorm2d

        return nn.Sequential(OrderedDict(
            norm_in=LayerNorm2d(in_channels, eps=self.norm_before_eps) if self.norm_before else nn.Identity(),
            conv=nn.Conv2d(in_channels, out_channels, self.kernel, stride, self.kernel // 2),
            norm_out=LayerNorm2d(out_channels, eps=self.norm_eps)))

    def timm_names(self, ctx: BlockContext, layout: str = "") -> dict[str, str]:
        """PVTv2's `patch_embed` (the first stage) or `stages.N.downsample`, and `stages.N-1.norm` before it."""
        stage = ctx.stage
        embed = "patch_embed" if stage == 0 else f"stages.{stage}.downsample"
        names = {"conv": f"{embed}.proj", "norm_out": f"{embed}.norm"}
        if stage > 0:
            names["norm_in"] = f"stages.{stage - 1}.norm"
        return names

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        return [{}]
