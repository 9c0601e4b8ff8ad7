"""`relative`: self-attention with a learned bias per head and relative offset (CoAtNet)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint
from . import ATTENTIONS
from .plain import PlainAttention

if TYPE_CHECKING:
    import torch


@ATTENTIONS.register
class RelativeAttention(PlainAttention):
    """Plain attention plus a (heads, (2H-1)(2W-1)) table of logit biases, one per relative offset."""

    type: Literal["relative"] = Field("relative", description="Attention kind: CoAtNet's relative position bias.")

    def relative_grid(self, ctx: BlockContext) -> tuple[int, int]:
        return ctx.out_resolution

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return super().check(ctx) + self.grid_only(ctx)

    def cost(self, ctx: BlockContext) -> C.Cost:
        h, w = ctx.out_resolution
        return super().cost(ctx) + C.Cost((2 * h - 1) * (2 * w - 1) * self.heads_in(ctx))

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        names = super().timm_names(ctx, layout)
        if layout == "stages":
            names["relative.table"] = ("attn.rel_pos.relative_position_bias_table", _transposed)
        return names


def _transposed(t: torch.Tensor) -> torch.Tensor:
    """timm's relative table is (offsets, heads); ours is (heads, offsets)."""
    return t.t()
