"""The Transformer block's nn.Modules; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...layers import DropPath
from ...layers.attention import map_to_tokens, tokens_to_map
from ..base import BlockContext
from . import TransformerConfig


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


class TransformerBlock(nn.Module):
    def __init__(self, config: TransformerConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        self.prefix = ctx.prefix_tokens
        self.norm1 = nn.LayerNorm(c_in, eps=config.norm_eps)
        self.pool = TokenPool(stride, ctx.resolution, config.pool) if stride > 1 else nn.Identity()
        self.attn = config.attention.build(ctx)
        if stride > 1 or c_in != c_out:  # pool to the new grid, project only to a new width
            self.shortcut = nn.Sequential(OrderedDict(
                pool=self.pool if stride > 1 else nn.Identity(),
                proj=nn.Linear(c_in, c_out, bias=config.shortcut_bias) if c_in != c_out else nn.Identity()))
        else:
            self.shortcut = nn.Identity()
        self.norm2 = nn.LayerNorm(c_out, eps=config.norm_eps) if config.ffn.pre_norm else nn.Identity()
        self.ffn = config.ffn.build(ctx)
        self.grid_ffn = config.ffn.grid_only
        scale = config.layer_scale
        self.ls1 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.ls2 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        x = self.shortcut(x) + self.drop_path(self.ls1(self.attn(self.pool(self.norm1(x)))))
        if not (self.grid_ffn and self.prefix):
            return x + self.drop_path(self.ls2(self.ffn(self.norm2(x))))
        cls, grid = x[:, :self.prefix], x[:, self.prefix:]  # class tokens bypass a grid-only FFN
        grid = grid + self.drop_path(self.ls2(self.ffn(self.norm2(grid))))
        return torch.cat([cls, grid], dim=1)
