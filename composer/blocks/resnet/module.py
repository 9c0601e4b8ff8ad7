"""The ResNet blocks' nn.Modules; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import DropPath, SqueezeExcite, make_act
from ..base import BlockContext
from . import BasicBlockConfig, BottleneckConfig, _ResNetOptions


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]


def _se(config: _ResNetOptions, channels: int) -> nn.Module:
    if not config.se:
        return nn.Identity()
    return SqueezeExcite(channels, max(1, int(channels * config.se)), config.se_act, config.se_gate)


def bottleneck(config: BottleneckConfig, ctx: BlockContext) -> nn.Module:
    width, stride = config.width(ctx), ctx.stride
    s_reduce, s_conv = (stride, 1) if config.stride_on == "reduce" else (1, stride)
    branch = [*_conv_bn(ctx.in_channels, width, 1, s_reduce), make_act(config.act),
              *_conv_bn(width, width, config.kernel, s_conv, config.groups), make_act(config.act),
              *_conv_bn(width, ctx.out_channels, 1), _se(config, ctx.out_channels)]
    return ResidualConv(nn.Sequential(*branch), ctx, config.act)


def basic(config: BasicBlockConfig, ctx: BlockContext) -> nn.Module:
    c = ctx.out_channels
    branch = [*_conv_bn(ctx.in_channels, c, config.kernel, ctx.stride), make_act(config.act),
              *_conv_bn(c, c, config.kernel), _se(config, c)]
    return ResidualConv(nn.Sequential(*branch), ctx, config.act)


class ResidualConv(nn.Module):
    """act(shortcut(x) + branch(x)); the shortcut projects when width or resolution changes."""

    def __init__(self, branch: nn.Module, ctx: BlockContext, act: str):
        super().__init__()
        self.branch = branch
        if ctx.stride > 1 or ctx.in_channels != ctx.out_channels:
            self.shortcut = nn.Sequential(*_conv_bn(ctx.in_channels, ctx.out_channels, 1, ctx.stride))
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.drop_path(self.branch(x)))
