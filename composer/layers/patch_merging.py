"""Swin's patch merging (Liu et al. 2021): each 2x2 block of positions becomes one position with 4C
channels, which a LayerNorm and a bias-free Linear reduce to C_out.

Data flow on the map: (B, C, H, W) -> pad to even -> (B, H/2, W/2, 4C) -> LayerNorm -> Linear -> (B, C_out, H/2, W/2).
The 4C channels are ordered (column offset, row offset, channel), as the published checkpoints expect.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchMerging(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(4 * in_channels, eps=eps)
        self.reduction = nn.Linear(4 * in_channels, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        B, C, H, W = x.shape
        x = F.pad(x, (0, W % 2, 0, H % 2))  # an odd row or column meets zeros
        h, w = x.shape[2] // 2, x.shape[3] // 2
        x = x.view(B, C, h, 2, w, 2).permute(0, 2, 4, 5, 3, 1).reshape(B, h, w, 4 * C)  # (B, h, w, [dx, dy, C])
        return self.reduction(self.norm(x)).permute(0, 3, 1, 2)
