"""The stems' torch layers; their configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ...layers import conv2d, make_act, make_norm
from . import ConvStemConfig, NoStemConfig, PatchStemConfig


def conv_stem(config: ConvStemConfig, in_channels: int) -> nn.Module:
    """conv1, norm1, act1, conv2, ...[, pool]: named children, which the config's checkpoint names address."""
    layers: dict[str, nn.Module] = {}
    c = in_channels
    for i, width in enumerate(config.channels, 1):
        last = i == len(config.channels)
        layers[f"conv{i}"] = conv2d(c, width, config.kernel, config.stride if i == 1 else 1,
                                    bias=config.norm == "none", padding=config.padding)
        if not last or config.last_norm_act:
            if config.norm != "none":
                layers[f"norm{i}"] = make_norm(config.norm, width, eps=config.norm_eps)
            layers[f"act{i}"] = make_act(config.act)
        c = width
    if config.pool == "max":
        layers["pool"] = nn.MaxPool2d(3, 2, 1)
    return nn.Sequential(OrderedDict(layers))


def patch_stem(config: PatchStemConfig, in_channels: int) -> nn.Module:
    return nn.Sequential(OrderedDict(
        proj=nn.Conv2d(in_channels, config.channels, config.patch, config.patch, bias=True),
        norm=make_norm(config.norm, config.channels, eps=config.norm_eps),
    ))


def no_stem(config: NoStemConfig, in_channels: int) -> nn.Module:
    return nn.Identity()
