"""What every feed-forward kind shares: the hidden width and the activation."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from ....layers.names import Activation
from ...base import BlockContext, Complaint, Part, positive_width


class FfnConfig(Part):
    """Base of every FFN kind. Methods take the block's context; the FFN works at the output width
    on the output grid."""

    # whether the block puts a LayerNorm before the FFN
    pre_norm: ClassVar[bool] = True
    # whether class tokens pass the FFN untouched (a conv FFN works on the grid only)
    grid_only: ClassVar[bool] = False

    ratio: float = Field(4.0, gt=0, le=64, description="Hidden width = ratio x channels.")
    act: Activation = Field("gelu", description="Activation inside the FFN.")

    def hidden(self, ctx: BlockContext) -> int:
        return int(ctx.out_channels * self.ratio)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return positive_width("ratio", ctx.out_channels, self.ratio, "the FFN width")
