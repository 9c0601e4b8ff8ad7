"""The head's nn.Module; its configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import LayerNorm2d, make_act
from . import PoolHeadConfig, TokenHeadConfig


class Head(nn.Module):
    """Takes a (B, C, H, W) map (pool head) or (B, N, C) tokens with the class token first."""

    def __init__(self, config: PoolHeadConfig | TokenHeadConfig, channels: int, classes: int):
        super().__init__()
        self.use_token = config.type == "token"
        conv = getattr(config, "conv", None)
        if conv:
            self.conv = nn.Sequential(nn.Conv2d(channels, conv, 1, bias=False),
                                      nn.BatchNorm2d(conv, eps=config.conv_norm_eps),
                                      make_act(config.conv_act))
            channels = conv
        else:
            self.conv = nn.Identity()
        self.map_norm = nn.Identity()
        if config.norm == "layernorm" and getattr(config, "norm_on", "pooled") == "map":
            self.map_norm, self.norm = LayerNorm2d(channels, eps=config.norm_eps), nn.Identity()
        elif config.norm == "layernorm":
            self.norm = nn.LayerNorm(channels, eps=config.norm_eps)
        elif config.norm == "batchnorm":
            self.norm = nn.BatchNorm1d(channels, eps=config.norm_eps)
        else:
            self.norm = nn.Identity()
        if config.hidden:
            self.pre_logits = nn.Sequential(nn.Linear(channels, config.hidden), make_act(config.act))
            channels = config.hidden
        else:
            self.pre_logits = nn.Identity()
        self.num_features = channels
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(channels, classes) if classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0] if self.use_token else self.map_norm(self.conv(x)).mean((2, 3))  # (B, C)
        x = self.pre_logits(self.norm(x))
        return x if pre_logits else self.fc(self.dropout(x))
