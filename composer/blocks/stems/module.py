"""The stems' torch layers; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

from torch import nn

from ...layers import conv2d, make_act, make_norm
from . import ConvStemConfig, NoStemConfig, PatchStemConfig


def conv_stem(config: ConvStemConfig, in_channels: int) -> nn.Module:
    layers: list[nn.Module] = []
    c = in_channels
    for i, width in enumerate(config.channels):
        last = i == len(config.channels) - 1
        layers.append(conv2d(c, width, config.kernel, config.stride if i == 0 else 1, bias=config.norm == "none",
                             padding=config.padding))
        if not last or config.last_norm_act:
            layers += [make_norm(config.norm, width, eps=config.norm_eps), make_act(config.act)]
        c = width
    if config.pool == "max":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


def patch_stem(config: PatchStemConfig, in_channels: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, config.channels, config.patch, config.patch, bias=True),
        make_norm(config.norm, config.channels, eps=config.norm_eps),
    )


def no_stem(config: NoStemConfig, in_channels: int) -> nn.Module:
    return nn.Identity()
