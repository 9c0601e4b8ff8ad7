"""The transitions' torch layers; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ...layers import Conv2dSame, LayerNorm2d
from . import ConvTransitionConfig


def conv_transition(config: ConvTransitionConfig, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if config.padding == "same":
        conv = Conv2dSame(in_channels, out_channels, config.kernel, stride, 0, bias=config.bias)
    else:
        conv = nn.Conv2d(in_channels, out_channels, config.kernel, stride, config.pad(stride), bias=config.bias)
    def norm(where: str, channels: int) -> nn.Module:
        if config.norm != where:
            return nn.Identity()
        return LayerNorm2d(channels, eps=config.norm_eps, bias=config.norm_bias)

    return nn.Sequential(OrderedDict(norm_in=norm("before", in_channels), conv=conv, norm_out=norm("after", out_channels)))
