"""Squeeze-and-excitation (Hu et al. 2018): global pool -> reduce -> act -> expand -> gate -> scale."""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_act


class SqueezeExcite(nn.Module):
    """Channel gating of a (B, C, H, W) map; 1x1 convs with bias, as in the papers."""

    def __init__(self, channels: int, hidden: int, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.reduce = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = make_act(act)
        self.expand = nn.Conv2d(hidden, channels, 1, bias=True)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * self.gate(self.expand(self.act(self.reduce(s))))
