"""`plain`: multi-head self-attention over every token (ViT, DeiT)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames
from . import ATTENTIONS
from .base import AttentionConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


@ATTENTIONS.register
class PlainAttention(AttentionConfig):
    """Multi-head self-attention; one qkv Linear, one output Linear."""

    type: Literal["plain"] = Field("plain", description="Attention kind: multi-head self-attention (ViT).")
    attn_width: Literal["out", "in"] = Field(
        "out", description="Width of queries, keys and values when the block changes width: the output width "
                           "(the paper: qkv widens) or the input width (timm's `_rw` CoAtNets: the output projection "
                           "widens). Heads = this width / head_dim.")

    def width(self, ctx: BlockContext) -> int:
        return ctx.in_channels if self.attn_width == "in" else ctx.out_channels

    def unused(self, ctx: BlockContext) -> set[str]:
        return {"attn_width"} if ctx.in_channels == ctx.out_channels else set()

    def relative_grid(self, ctx: BlockContext) -> tuple[int, int] | None:
        return None

    def cost(self, ctx: BlockContext) -> C.Cost:
        """Projections plus the two attention products, QK^T and AV (N x N x width MACs each)."""
        grid, width = ctx.out_resolution, self.width(ctx)
        n = ctx.prefix_tokens + grid[0] * grid[1]
        return (C.linear(ctx.in_channels, 3 * width, n, self.qkv_bias) + C.linear(width, ctx.out_channels, n)
                + C.Cost(macs=2 * n * n * width))

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.attention import Attention

        return Attention(ctx.in_channels, self.width(ctx), self.heads_in(ctx), self.qkv_bias, self.relative_grid(ctx),
                         out_dim=ctx.out_channels, scale=self.logit_scale(ctx))

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ViT attention, or (`stages` layout) MaxxVit's, whose qkv channels are ordered head first."""
        names: CheckpointNames = {"qkv": "attn.qkv", "proj": "attn.proj"}
        if layout == "stages":
            qkv = partial(_qkv_from_head_first, heads=self.heads_in(ctx))
            names |= {"qkv.weight": ("attn.qkv.weight", qkv), "qkv.bias": ("attn.qkv.bias", qkv)}
        return names

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `ViTLayer`, as published on the hub (`vit`: `attention.attention.query`,
        ...) and as transformers 5 names it (`vit_layers`: `attention.q_proj`, ...); the separate query,
        key and value Linears are joined into our qkv."""
        if layout == "vit":
            q, k, v = (f"attention.attention.{n}" for n in ("query", "key", "value"))
            names: CheckpointNames = {"proj": "attention.output.dense"}
        elif layout == "vit_layers":
            q, k, v = (f"attention.{n}_proj" for n in "qkv")
            names = {"proj": "attention.o_proj"}
        else:
            return {}
        for t in ("weight", "bias"):
            names[f"qkv.{t}"] = ((f"{q}.{t}", f"{k}.{t}", f"{v}.{t}"), _joined)
        return names


def _joined(*parts: torch.Tensor) -> torch.Tensor:
    """Separate query, key and value tensors -> one qkv tensor, in that order along the output channels."""
    import torch

    return torch.cat(parts, dim=0)


def _qkv_from_head_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """qkv output channels ordered (heads, 3, head_dim) -> ours, (3, heads, head_dim)."""
    return t.reshape(heads, 3, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)
