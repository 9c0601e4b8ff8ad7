"""Feature maps <-> token sequences: the one place their layouts are converted."""

from __future__ import annotations

import torch


def tokens_to_map(x: torch.Tensor, grid: tuple[int, int], prefix: int = 0) -> torch.Tensor:
    """(B, prefix + H*W, C) -> (B, C, H, W), leaving out the `prefix` class tokens in front."""
    if prefix:
        x = x[:, prefix:]
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)
