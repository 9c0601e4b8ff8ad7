"""The MobileViT block's nn.Module; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers.mobilevit import MobileViTBlock, conv_bn_act
from ..base import BlockContext
from . import MobileViTConfig


class InvertedResidualEntry(nn.Module):
    """1x1 expand -> kxk depthwise (strided) -> 1x1 linear projection, no shortcut (the shape changes)."""

    def __init__(self, c_in: int, hidden: int, c_out: int, kernel: int, stride: int, act: str, eps: float):
        super().__init__()
        self.expand = conv_bn_act(c_in, hidden, 1, act, eps)
        self.depthwise = conv_bn_act(hidden, hidden, kernel, act, eps, stride=stride, groups=hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out, eps=eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.depthwise(self.expand(x)))


class MobileViTStageBlock(nn.Module):
    def __init__(self, config: MobileViTConfig, ctx: BlockContext):
        super().__init__()
        c = ctx.out_channels
        self.entry = (InvertedResidualEntry(ctx.in_channels, config.entry_hidden(ctx), c, config.kernel, ctx.stride,
                                            config.act, config.bn_eps) if config.has_entry(ctx) else nn.Identity())
        d = config.width(ctx)
        self.vit = MobileViTBlock(c, d, config.layers, config.heads, int(d * config.mlp_ratio),
                                  config.patch, config.kernel, config.act, config.bn_eps, config.norm_eps, config.fusion,
                                  ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(self.entry(x))
