"""The Transformer block's nn.Modules; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import DropPath
from ...layers.attention import (Attention, ConvProjectionAttention, GatedPositionalAttention, map_to_tokens,
                                 tokens_to_map)
from ...layers.ffn import ConvFeedForward, Mlp
from ..base import BlockContext
from . import TransformerConfig, num_heads


class TokenPool(nn.Module):
    """Strided pooling of grid tokens: (B, H*W, C) -> (B, ceil(H/s) * ceil(W/s), C)."""

    def __init__(self, stride: int, grid: tuple[int, int], kind: str):
        super().__init__()
        self.grid = grid
        self.pool = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(stride, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return map_to_tokens(self.pool(tokens_to_map(x, self.grid)))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _attention(config: TransformerConfig, ctx: BlockContext, heads: int) -> nn.Module:
    c_in, c_out, grid = ctx.in_channels, ctx.out_channels, ctx.out_resolution
    scale = config.attention_scale(ctx)
    if config.attention == "gpsa":
        return GatedPositionalAttention(c_in, c_out, heads, grid, config.qkv_bias, config.locality_strength,
                                        scale=scale)
    if config.attention == "conv":
        return ConvProjectionAttention(c_in, c_out, heads, grid, ctx.prefix_tokens, config.proj_kernel,
                                       config.kv_stride, config.qkv_bias, scale=scale, bn_eps=config.bn_eps)
    return Attention(c_in, config.width(ctx), heads, config.qkv_bias, grid if config.attention == "relative" else None,
                     out_dim=c_out, scale=scale)


class TransformerBlock(nn.Module):
    def __init__(self, config: TransformerConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        heads = num_heads(config.heads, config.head_dim, config.width(ctx))
        self.prefix = ctx.prefix_tokens
        self.norm1 = nn.LayerNorm(c_in, eps=config.norm_eps)
        self.pool = TokenPool(stride, ctx.resolution, config.pool) if stride > 1 else nn.Identity()
        self.attn = _attention(config, ctx, heads)
        if stride > 1 or c_in != c_out:  # pool to the new grid, project only to a new width
            self.shortcut = nn.Sequential(self.pool if stride > 1 else nn.Identity(),
                                          nn.Linear(c_in, c_out, bias=config.shortcut_bias) if c_in != c_out
                                          else nn.Identity())
        else:
            self.shortcut = nn.Identity()
        hidden = int(c_out * config.mlp_ratio)
        self.conv_ffn = config.ffn == "conv"
        if self.conv_ffn:
            self.norm2 = nn.Identity()
            self.ffn = ConvFeedForward(c_out, hidden, config.act, ctx.out_resolution, config.ffn_kernel,
                                       config.ffn_se_reduction, bn_eps=config.bn_eps)
        else:
            self.norm2 = nn.LayerNorm(c_out, eps=config.norm_eps)
            self.ffn = Mlp(c_out, hidden, config.act)
        scale = config.layer_scale
        self.ls1 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.ls2 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        x = self.shortcut(x) + self.drop_path(self.ls1(self.attn(self.pool(self.norm1(x)))))
        if not self.conv_ffn:
            return x + self.drop_path(self.ls2(self.ffn(self.norm2(x))))
        cls, grid = x[:, :self.prefix], x[:, self.prefix:]  # the class token bypasses the conv FFN
        grid = grid + self.drop_path(self.ls2(self.ffn(grid)))
        return torch.cat([cls, grid], dim=1) if self.prefix else grid
