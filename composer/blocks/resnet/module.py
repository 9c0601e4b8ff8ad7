"""The ResNet blocks' nn.Modules; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...layers import DropPath, conv2d, make_act
from ..base import BlockContext
from . import SE_DEFAULTS, BasicBlockConfig, BottleneckConfig, _ResNetOptions


def _branch(config: _ResNetOptions, convs: list[tuple[int, int, int, int, int]], channels: int) -> nn.Sequential:
    """conv1, bn1, act1, conv2, ... (the last conv without act), then SE: named children, which the
    checkpoint names of the config address."""
    layers: dict[str, nn.Module] = {}
    for j, (c_in, c_out, kernel, stride, groups) in enumerate(convs, 1):
        layers[f"conv{j}"] = conv2d(c_in, c_out, kernel, stride, groups=groups, padding=config.padding)
        layers[f"bn{j}"] = nn.BatchNorm2d(c_out, eps=config.norm_eps)
        if j < len(convs):
            layers[f"act{j}"] = make_act(config.act)
    layers["se"] = (config.se.build(channels, config.se_width(channels), SE_DEFAULTS) if config.se
                    else nn.Identity())
    return nn.Sequential(OrderedDict(layers))


def bottleneck(config: BottleneckConfig, ctx: BlockContext) -> nn.Module:
    width, stride, c_out = config.width(ctx), ctx.stride, ctx.out_channels
    s_reduce, s_conv = (stride, 1) if config.stride_on == "reduce" else (1, stride)
    convs = [(ctx.in_channels, width, 1, s_reduce, 1), (width, width, config.kernel, s_conv, config.groups),
             (width, c_out, 1, 1, 1)]
    return ResidualConv(_branch(config, convs, c_out), ctx, config)


def basic(config: BasicBlockConfig, ctx: BlockContext) -> nn.Module:
    c = ctx.out_channels
    convs = [(ctx.in_channels, c, config.kernel, ctx.stride, 1), (c, c, config.kernel, 1, 1)]
    return ResidualConv(_branch(config, convs, c), ctx, config)


class ResidualConv(nn.Module):
    """act(shortcut(x) + branch(x)); the shortcut projects when width or resolution changes."""

    def __init__(self, branch: nn.Module, ctx: BlockContext, config: _ResNetOptions):
        super().__init__()
        self.branch = branch
        if ctx.stride > 1 or ctx.in_channels != ctx.out_channels:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=conv2d(ctx.in_channels, ctx.out_channels, 1, ctx.stride, padding=config.padding),
                bn=nn.BatchNorm2d(ctx.out_channels, eps=config.norm_eps)))
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)
        self.act = make_act(config.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shortcut(x) + self.drop_path(self.branch(x)))
