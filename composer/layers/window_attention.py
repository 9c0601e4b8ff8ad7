"""Attention inside windows of the token grid, on tokens (B, H*W, C).

- `window` partition (Swin, Liu et al. 2021; MaxViT's block attention, Tu et al. 2022): the grid is
  cut into non-overlapping wh x ww windows of neighbours. With a shift (Swin's alternate blocks) the
  grid is first rolled by (-sh, -sw), so windows straddle the previous ones' borders, and a mask
  keeps tokens that were not neighbours before the roll from attending to each other.
- `grid` partition (MaxViT's grid attention): the grid is cut into a gh x gw lattice, and each
  "window" gathers the tokens that sit at the same place in every lattice cell: a sparse, global mix.

Inside each window: multi-head attention with a learned relative position bias, one scalar per head
and relative offset (a (2wh-1)(2ww-1) table), added to the logits.

Data flow: roll -> partition -> qkv -> softmax(QK^T * scale + bias + mask) V -> merge -> unroll -> proj.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import RelativePositionBias, _shapes_only


def partition(x: torch.Tensor, window: tuple[int, int], kind: str) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, wh * ww, C): `window` cuts neighbours, `grid` strided tokens."""
    B, H, W, C = x.shape
    wh, ww = window
    if kind == "window":
        x = x.view(B, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 2, 4, 5)
    else:  # a wh x ww lattice: window (i, j) holds the tokens at offset (i, j) of every cell
        x = x.view(B, wh, H // wh, ww, W // ww, C).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(-1, wh * ww, C)


def merge(windows: torch.Tensor, window: tuple[int, int], grid: tuple[int, int], kind: str) -> torch.Tensor:
    """The inverse of `partition`: (B * windows, wh * ww, C) -> (B, H, W, C)."""
    (H, W), (wh, ww), C = grid, window, windows.shape[-1]
    if kind == "window":
        x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 1, 3, 2, 4, 5)
    else:
        x = windows.view(-1, H // wh, W // ww, wh, ww, C).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(-1, H, W, C)


def shift_mask(grid: tuple[int, int], window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """(windows, n, n) additive mask for shifted windows: 0 between tokens of the same region before the
    roll, -inf between tokens that the roll brought together from opposite borders."""
    (H, W), (wh, ww), (sh, sw) = grid, window, shift
    n = wh * ww
    if _shapes_only():
        return torch.empty((H // wh) * (W // ww), n, n)
    region = torch.zeros(1, H, W, 1)
    label = 0
    for rows in (slice(0, H - wh), slice(H - wh, H - sh), slice(H - sh, H)):
        for cols in (slice(0, W - ww), slice(W - ww, W - sw), slice(W - sw, W)):
            region[:, rows, cols] = label
            label += 1
    labels = partition(region, window, "window").squeeze(-1)  # (windows, n)
    apart = labels[:, None, :] != labels[:, :, None]
    return torch.zeros(apart.shape).masked_fill(apart, float("-inf"))


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows (or grid cells) of an H x W token grid, with a relative
    position bias table; tokens (B, H*W, C) in and out."""

    def __init__(self, in_dim: int, dim: int, heads: int, grid: tuple[int, int], window: tuple[int, int],
                 shift: tuple[int, int] = (0, 0), partition: str = "window", qkv_bias: bool = True,
                 scale: float | None = None, out_dim: int | None = None):
        super().__init__()
        self.grid, self.window, self.shift, self.kind = tuple(grid), tuple(window), tuple(shift), partition
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = scale if scale is not None else self.head_dim ** -0.5
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=qkv_bias)
        self.relative = RelativePositionBias(heads, self.window)
        self.proj = nn.Linear(dim, out_dim or dim)
        self.shifted = any(self.shift)
        mask = shift_mask(self.grid, self.window, self.shift) if self.shifted else torch.zeros(0)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        (H, W), (sh, sw) = self.grid, self.shift
        dim = self.heads * self.head_dim
        x = x.view(B, H, W, C)
        if sh or sw:
            x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        windows = partition(x, self.window, self.kind)  # (B * nW, n, C)
        Bw, n, _ = windows.shape
        qkv = self.qkv(windows).view(Bw, n, 3, self.heads, self.head_dim)
        bias = self.relative()  # (heads, n, n)
        if not self.shifted:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (Bw, heads, n, d)
        else:  # windows x heads as one axis, so one (nW * heads, n, n) bias serves every image
            nw = self.mask.shape[0]
            q, k, v = qkv.view(B, nw, n, 3, self.heads, self.head_dim).permute(3, 0, 1, 4, 2, 5).reshape(
                3, B, nw * self.heads, n, self.head_dim).unbind(0)
            bias = (bias.unsqueeze(0) + self.mask.unsqueeze(1)).reshape(nw * self.heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
        out = out.reshape(Bw, self.heads, n, self.head_dim)
        out = merge(out.transpose(1, 2).reshape(Bw, n, dim), self.window, self.grid, self.kind)
        if sh or sw:
            out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
        return self.proj(out.reshape(B, N, dim))
