"""MaxViT's block as an nn.Module; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers.attention import map_to_tokens, tokens_to_map
from ..base import BlockContext
from . import MaxViTConfig


class MaxViTBlock(nn.Module):
    def __init__(self, config: MaxViTConfig, ctx: BlockContext):
        super().__init__()
        inner = config.inner(ctx)
        self.grid = inner.resolution
        self.conv = config.conv.build(ctx)
        self.attn_block = config.layer("window").build(inner)
        self.attn_grid = config.layer("grid").build(inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = map_to_tokens(self.conv(x))
        return tokens_to_map(self.attn_grid(self.attn_block(x)), self.grid)
