"""PVTv2's spatial-reduction attention and convolutional FFN (Wang et al. 2022), on grid tokens (B, H*W, C).

- `SpatialReductionAttention`: queries from every token; keys and values from a coarser grid, made by
  a conv of kernel = stride = r and a LayerNorm (r = 1: the tokens themselves), or, in the `linear`
  variant, by average pooling to a fixed p x p grid, a 1x1 conv, a LayerNorm and GELU.
  Data flow: q = Wq x; kv = Wkv Norm(Reduce(x)); proj(softmax(q k^T / sqrt(d)) v).
- `DepthwiseConvMlp`: Linear -> (ReLU, linear variant) -> 3x3 depthwise conv on the map -> act -> Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_act
from .attention import map_to_tokens, tokens_to_map


class SpatialReductionAttention(nn.Module):
    def __init__(self, dim: int, heads: int, grid: tuple[int, int], reduction: int = 1, pooled: int | None = None,
                 qkv_bias: bool = True, norm_eps: float = 1e-5, scale: float | None = None, in_dim: int | None = None):
        super().__init__()
        c_in = in_dim or dim
        self.grid, self.heads, self.head_dim = tuple(grid), heads, dim // heads
        self.scale = scale if scale is not None else self.head_dim ** -0.5
        self.q = nn.Linear(c_in, dim, bias=qkv_bias)
        self.kv = nn.Linear(c_in, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        if pooled:
            self.pool = nn.AdaptiveAvgPool2d(pooled)
            self.sr, self.norm, self.act = nn.Conv2d(c_in, c_in, 1), nn.LayerNorm(c_in, eps=norm_eps), nn.GELU()
        elif reduction > 1:
            self.pool = nn.Identity()
            self.sr, self.norm = nn.Conv2d(c_in, c_in, reduction, reduction), nn.LayerNorm(c_in, eps=norm_eps)
            self.act = nn.Identity()
        else:
            self.pool, self.sr, self.norm, self.act = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
        self.reduce = bool(pooled) or reduction > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q = self.q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)  # (B, h, N, d)
        if self.reduce:
            x = self.act(self.norm(map_to_tokens(self.sr(self.pool(tokens_to_map(x, self.grid))))))
        k, v = self.kv(x).view(B, -1, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)  # (B, h, M, d)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, N, self.heads * self.head_dim))


class DepthwiseConvMlp(nn.Module):
    def __init__(self, dim: int, hidden: int, grid: tuple[int, int], act: str = "gelu", kernel: int = 3,
                 extra_relu: bool = False):
        super().__init__()
        self.grid = tuple(grid)
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU() if extra_relu else nn.Identity()
        self.dwconv = nn.Conv2d(hidden, hidden, kernel, 1, kernel // 2, groups=hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # grid tokens (B, H*W, C)
        x = map_to_tokens(self.dwconv(self.relu(tokens_to_map(self.fc1(x), self.grid))))
        return self.fc2(self.act(x))
