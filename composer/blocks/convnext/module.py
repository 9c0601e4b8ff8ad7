"""The ConvNeXt block's nn.Module; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import DropPath, make_act
from ...layers.grn import GlobalResponseNorm
from ..base import BlockContext
from . import SE_DEFAULTS, ConvNeXtConfig


class ConvNeXtBlock(nn.Module):
    def __init__(self, config: ConvNeXtConfig, ctx: BlockContext):
        super().__init__()
        c = ctx.out_channels
        hidden = int(c * config.mlp_ratio)
        self.dwconv = nn.Conv2d(c, c, config.kernel, padding=config.kernel // 2, groups=c)
        self.norm = nn.LayerNorm(c, eps=config.norm_eps)
        self.fc1 = nn.Linear(c, hidden)
        self.act = make_act(config.act)
        self.grn = GlobalResponseNorm(hidden) if config.grn else nn.Identity()
        self.fc2 = nn.Linear(hidden, c)
        scale = config.layer_scale
        self.gamma = nn.Parameter(torch.full((c,), scale)) if scale else None
        self.se = config.se.build(c, config.se_width(ctx), SE_DEFAULTS) if config.se else nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.fc2(self.grn(self.act(self.fc1(self.norm(y)))))
        if self.gamma is not None:
            y = y * self.gamma
        y = self.se(y.permute(0, 3, 1, 2))
        return x + self.drop_path(y)
