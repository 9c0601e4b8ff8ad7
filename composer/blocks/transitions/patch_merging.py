"""`patch_merging`: Swin's downsampling between stages (Liu et al. 2021): every 2x2 block of positions
is concatenated into one position of 4C channels, then LayerNorm and a bias-free Linear to the
stage's width. An odd height or width is padded with zeros first."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import cost as C
from ..base import BlockContext, TRANSITIONS, downsample
from . import _Transition

if TYPE_CHECKING:
    from torch import nn


@TRANSITIONS.register
class PatchMergingTransitionConfig(_Transition):
    """2x2 space-to-depth, LayerNorm, Linear (no bias)."""

    type: Literal["patch_merging"] = Field("patch_merging", description="Transition kind: Swin's patch merging "
                                                                        "(stride 2).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorm.")

    kernel: ClassVar[int] = 2  # it merges 2x2 blocks

    def output_size(self, size: int, stride: int) -> int:
        return downsample(size, 2)

    def cost(self, ctx: BlockContext) -> C.Cost:
        in_channels, out_channels, hw = ctx.in_channels, ctx.out_channels, ctx.resolution
        n = downsample(hw[0], 2) * downsample(hw[1], 2)
        return C.layernorm(4 * in_channels, n) + C.linear(4 * in_channels, out_channels, n, bias=False)

    def build(self, ctx: BlockContext) -> nn.Module:
        in_channels, out_channels = ctx.in_channels, ctx.out_channels
        from ...layers.patch_merging import PatchMerging

        return PatchMerging(in_channels, out_channels, self.norm_eps)

    def timm_names(self, ctx: BlockContext, layout: str = "") -> dict[str, str]:
        """Swin's `layers.N.downsample` (keys relative to the network)."""
        stage = ctx.stage
        return {"norm": f"layers.{stage}.downsample.norm", "reduction": f"layers.{stage}.downsample.reduction"}

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        return [{}]
