"""Feature maps <-> token sequences: the one place their layouts are converted."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def tokens_to_map(x: torch.Tensor, grid: tuple[int, int], prefix: int = 0) -> torch.Tensor:
    """(B, prefix + H*W, C) -> (B, C, H, W), leaving out the `prefix` class tokens in front."""
    if prefix:
        x = x[:, prefix:]
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def square_grid(n: int) -> tuple[int, int]:
    """The side x side grid of `n` positions; ValueError when `n` is not a square."""
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} tokens are not a square grid")
    return side, side


def resize_pos_embed(t: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """(1, prefix + h*w, C) -> (1, prefix + H*W, C): the grid part (a square) resized bicubically,
    class tokens kept."""
    cls, pos = t[:, :prefix], t[:, prefix:]
    old = square_grid(pos.shape[1])
    pos = tokens_to_map(pos, old).float()  # (1, C, h, w)
    pos = F.interpolate(pos, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([cls, map_to_tokens(pos).to(t.dtype)], dim=1)
