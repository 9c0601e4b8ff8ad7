"""The ResNet blocks' nn.Modules; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import DropPath, SqueezeExcite, conv2d, make_act
from ..base import BlockContext
from . import BasicBlockConfig, BottleneckConfig, _ResNetOptions


def _conv_bn(config: _ResNetOptions, c_in: int, c_out: int, kernel: int, stride: int = 1,
             groups: int = 1) -> list[nn.Module]:
    return [conv2d(c_in, c_out, kernel, stride, groups=groups, padding=config.padding),
            nn.BatchNorm2d(c_out, eps=config.norm_eps)]


def _se(config: _ResNetOptions, channels: int) -> nn.Module:
    if not config.se:
        return nn.Identity()
    return SqueezeExcite(channels, max(1, int(channels * config.se)), config.se_act, config.se_gate)


def bottleneck(config: BottleneckConfig, ctx: BlockContext) -> nn.Module:
    width, stride = config.width(ctx), ctx.stride
    s_reduce, s_conv = (stride, 1) if config.stride_on == "reduce" else (1, stride)
    branch = [*_conv_bn(config, ctx.in_channels, width, 1, s_reduce), make_act(config.act),
              *_conv_bn(config, width, width, config.kernel, s_conv, config.groups), make_act(config.act),
              *_conv_bn(config, width, ctx.out_channels, 1), _se(config, ctx.out_channels)]
    return ResidualConv(nn.Sequential(*branch), ctx, config)


def basic(config: BasicBlockConfig, ctx: BlockContext) -> nn.Module:
    c = ctx.out_channels
    branch = [*_conv_bn(config, ctx.in_channels, c, config.kernel, ctx.stride), make_act(config.act),
              *_conv_bn(config, c, c, config.kernel), _se(config, c)]
    return ResidualConv(nn.Sequential(*branch), ctx, config)


class ResidualConv(nn.Module):
    """act(shortcut(x) + branch(x)); the shortcut projects when width or resolution changes."""

    def __init__(self, branch: nn.Module, ctx: BlockContext, config: _ResNetOptions):
        super().__init__()
        self.branch = branch
        if ctx.stride > 1 or ctx.in_channels != ctx.out_channels:
            self.shortcut = nn.Sequential(*_conv_bn(config, ctx.in_channels, ctx.out_channels, 1, ctx.stride))
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)
        self.act = make_act(config.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.drop_path(self.branch(x)))
