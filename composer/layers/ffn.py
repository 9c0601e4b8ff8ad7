"""Feed-forward parts of a Transformer block.

- `Mlp`: Linear -> act -> Linear on every token (ViT).
- `ConvFeedForward`: LocalViT's convolutional FFN on the token map (Li et al. 2021):
  1x1 conv + BN + act -> kxk depthwise + BN + act -> SE (given built) -> 1x1 conv + BN.
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_act
from .attention import map_to_tokens, tokens_to_map


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvFeedForward(nn.Module):
    """Takes grid tokens (B, H*W, C) and returns the FFN's output for them (no residual)."""

    def __init__(self, dim: int, hidden: int, act: str, grid: tuple[int, int], kernel: int = 3,
                 se: nn.Module | None = None, bn_eps: float = 1e-5):
        super().__init__()
        self.grid = grid
        self.expand = nn.Sequential(nn.Conv2d(dim, hidden, 1, bias=False), nn.BatchNorm2d(hidden, eps=bn_eps),
                                    make_act(act))
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel, 1, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=bn_eps), make_act(act))
        self.se = se if se is not None else nn.Identity()
        self.project = nn.Sequential(nn.Conv2d(hidden, dim, 1, bias=False), nn.BatchNorm2d(dim, eps=bn_eps))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(self.expand(tokens_to_map(x, self.grid)))
        return map_to_tokens(self.project(self.se(y)))
