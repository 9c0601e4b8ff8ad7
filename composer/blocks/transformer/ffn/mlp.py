"""`mlp`: Linear -> act -> Linear on every token, after a LayerNorm (ViT)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames
from . import FFNS
from .base import FfnConfig

if TYPE_CHECKING:
    from torch import nn


@FFNS.register
class MlpFfn(FfnConfig):
    """Two Linears with an activation between them."""

    type: Literal["mlp"] = Field("mlp", description="FFN kind: LayerNorm + MLP (ViT).")

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, (h, w) = ctx.out_channels, ctx.out_resolution
        n = ctx.prefix_tokens + h * w
        return C.linear(c, self.hidden(ctx), n) + C.linear(self.hidden(ctx), c, n)

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.ffn import Mlp

        return Mlp(ctx.out_channels, self.hidden(ctx), self.act)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        return {"fc1": "mlp.fc1", "fc2": "mlp.fc2"}

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """`CvtLayer` and the hub's `ViTLayer` (`intermediate.dense`, `output.dense`), transformers 5's `mlp.*`."""
        if layout in ("cvt", "vit"):
            return {"fc1": "intermediate.dense", "fc2": "output.dense"}
        if layout == "vit_layers":
            return {"fc1": "mlp.fc1", "fc2": "mlp.fc2"}
        return {}
