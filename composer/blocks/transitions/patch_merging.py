"""`patch_merging`: Swin's downsampling between stages (Liu et al. 2021): every 2x2 block of positions
is concatenated into one position of 4C channels, then LayerNorm and a bias-free Linear to the
stage's width. An odd height or width is padded with zeros first."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from .. import cost as C
from ..base import TRANSITIONS, downsample
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

    def cost(self, in_channels: int, out_channels: int, stride: int, hw: tuple[int, int]) -> C.Cost:
        n = downsample(hw[0], 2) * downsample(hw[1], 2)
        return C.layernorm(4 * in_channels, n) + C.linear(4 * in_channels, out_channels, n, bias=False)

    def build(self, in_channels: int, out_channels: int, stride: int) -> nn.Module:
        from ...layers.patch_merging import PatchMerging

        return PatchMerging(in_channels, out_channels, self.norm_eps)

    def timm_names(self, stage: int) -> dict[str, str]:
        """Swin's `layers.N.downsample` (keys relative to the network)."""
        return {"norm": f"layers.{stage}.downsample.norm", "reduction": f"layers.{stage}.downsample.reduction"}

    def transformers_names(self, stage: int) -> list[dict[str, str]]:
        return [{}]
