"""Self-attention variants on tokens (B, N, C), N = prefix class tokens + H*W grid tokens.

- `Attention`: multi-head attention through `scaled_dot_product_attention`, optionally with a
  learned relative position bias (CoAtNet) added to the logits.
- `GatedPositionalAttention`: ConViT's GPSA, a per-head gated mix of content attention and
  attention from the relative positions of query and key, with the local initialisation.
- `ConvProjectionAttention`: CvT's attention, where queries, keys and values come from a depthwise
  conv + BatchNorm over the token map (keys and values strided), then a Linear.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .tokens import map_to_tokens, tokens_to_map  # noqa: F401  (also imported from here by the blocks)


def _shapes_only() -> bool:
    """Building on the meta device (profiling): tensors have shapes but no values to compute."""
    return torch.get_default_device().type == "meta"


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(H*W, H*W) index into a (2H-1)*(2W-1) table of relative offsets between grid positions."""
    if _shapes_only():
        return torch.empty(height * width, height * width, dtype=torch.long)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), offsets in [-(H-1), H-1]
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


class RelativePositionBias(nn.Module):
    """A learned scalar per head and relative offset, gathered into an (heads, N, N) logit bias."""

    def __init__(self, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        h, w = self.grid = grid
        self.table = nn.Parameter(torch.zeros(num_heads, (2 * h - 1) * (2 * w - 1)))
        self.register_buffer("index", relative_position_index(h, w), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table[:, self.index]  # (heads, N, N)

    def fit_tensor(self, name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        """A checkpoint's table for another grid, resized to this one (loading weights trained at
        another input size); None when it is no such table."""
        if name != "table" or tensor.ndim != 2 or tensor.shape[0] != self.table.shape[0]:
            return None
        return resize_relative_table(tensor, self.grid)


def resize_relative_table(t: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(heads, (2h-1)(2w-1)) -> (heads, (2H-1)(2W-1)), resized bicubically as a (2h-1) x (2w-1) image."""
    heads, n = t.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"a table of {n} offsets is not a square grid")
    table = t.reshape(1, heads, side, side).float()
    table = F.interpolate(table, size=(2 * grid[0] - 1, 2 * grid[1] - 1), mode="bicubic", align_corners=False)
    return table.reshape(heads, -1).to(t.dtype)


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, N, heads * d) -> (B, heads, N, d)."""
    B, N, _ = x.shape
    return x.view(B, N, heads, -1).transpose(1, 2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, d) -> (B, N, heads * d)."""
    B, _, N, _ = x.shape
    return x.transpose(1, 2).reshape(B, N, -1)


class Attention(nn.Module):
    """Multi-head self-attention; the qkv projection or the output projection may change the width."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, qkv_bias: bool = True,
                 relative_grid: tuple[int, int] | None = None, out_dim: int | None = None,
                 scale: float | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5 if scale is None else scale  # on QK^T
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, out_dim or dim)
        self.relative = RelativePositionBias(num_heads, relative_grid) if relative_grid else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        bias = self.relative().to(q.dtype) if self.relative is not None else None
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, heads, N, head_dim)
        return self.proj(_merge_heads(x))


def relative_offsets(height: int, width: int) -> torch.Tensor:
    """(N, N, 3): for query i and key j the offsets (dx, dy, dx^2 + dy^2) of j from i."""
    if _shapes_only():
        return torch.empty(height * width, height * width, 3)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ys, xs = ys.flatten().float(), xs.flatten().float()
    dx = xs[None, :] - xs[:, None]
    dy = ys[None, :] - ys[:, None]
    return torch.stack([dx, dy, dx * dx + dy * dy], dim=-1)


class GatedPositionalAttention(nn.Module):
    """ConViT's gated positional self-attention (d'Ascoli et al. 2021), on grid tokens only.

    Per head: A = (1 - g) softmax(s QK^T) + g softmax(r W_pos), g = sigmoid(gate), each row
    renormalised to sum 1; r = (dx, dy, dx^2 + dy^2) is the key's offset from the query; s is
    1/sqrt(head_dim) unless given.
    """

    def __init__(self, in_dim: int, dim: int, num_heads: int, grid: tuple[int, int], qkv_bias: bool = False,
                 locality_strength: float = 1.0, scale: float | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5 if scale is None else scale
        self.locality_strength = locality_strength
        self.qk = nn.Linear(in_dim, 2 * dim, bias=qkv_bias)
        self.v = nn.Linear(in_dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.pos_proj = nn.Linear(3, num_heads)
        self.gate = nn.Parameter(torch.ones(num_heads))
        self.register_buffer("offsets", relative_offsets(*grid), persistent=False)

    @torch.no_grad()
    def local_init(self) -> None:
        """Values pass tokens through, and head h attends around its own offset (ConViT's local init).

        Heads are laid out on a sqrt(heads) x sqrt(heads) square of offsets around the query; the
        positional score -s ((dx - ox)^2 + (dy - oy)^2) expands to weights (2 s ox, 2 s oy, -s).
        """
        if self.v.in_features == self.v.out_features:
            self.v.weight.copy_(torch.eye(self.v.out_features))
        side = max(1, int(math.sqrt(self.num_heads)))
        center = (side - 1) / 2
        s = self.locality_strength
        self.pos_proj.weight.zero_()
        self.pos_proj.bias.zero_()
        for h in range(self.num_heads):
            oy, ox = divmod(h % (side * side), side)
            self.pos_proj.weight[h] = torch.tensor([2 * s * (ox - center), 2 * s * (oy - center), -s])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k = self.qk(x).view(B, N, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        v = _split_heads(self.v(x), self.num_heads)
        content = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, N, N)
        position = self.pos_proj(self.offsets.to(x.dtype)).permute(2, 0, 1).softmax(dim=-1)  # (heads, N, N)
        g = torch.sigmoid(self.gate).view(-1, 1, 1).to(x.dtype)
        attn = (1 - g) * content + g * position
        attn = attn / attn.sum(dim=-1, keepdim=True)
        return self.proj(_merge_heads(attn @ v))


class ConvProjection(nn.Module):
    """Depthwise kxk conv (no bias) + BatchNorm over the token map; prefix tokens pass by it."""

    def __init__(self, dim: int, kernel: int, stride: int, grid: tuple[int, int], prefix: int, eps: float = 1e-5):
        super().__init__()
        self.grid, self.prefix = grid, prefix
        self.conv = nn.Conv2d(dim, dim, kernel, stride, kernel // 2, groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls, grid = x[:, :self.prefix], x[:, self.prefix:]
        grid = map_to_tokens(self.norm(self.conv(tokens_to_map(grid, self.grid))))
        return torch.cat([cls, grid], dim=1) if self.prefix else grid


class ConvProjectionAttention(nn.Module):
    """CvT's convolutional projection attention (Wu et al. 2021): conv projections, then Linears."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, grid: tuple[int, int], prefix: int,
                 kernel: int = 3, kv_stride: int = 2, qkv_bias: bool = True, scale: float | None = None,
                 bn_eps: float = 1e-5):
        super().__init__()
        self.num_heads = num_heads
        # on QK^T; CvT's published code scales by 1/sqrt(dim), all heads together
        self.scale = (dim // num_heads) ** -0.5 if scale is None else scale
        self.conv_q = ConvProjection(in_dim, kernel, 1, grid, prefix, bn_eps)
        self.conv_k = ConvProjection(in_dim, kernel, kv_stride, grid, prefix, bn_eps)
        self.conv_v = ConvProjection(in_dim, kernel, kv_stride, grid, prefix, bn_eps)
        self.q = nn.Linear(in_dim, dim, bias=qkv_bias)
        self.k = nn.Linear(in_dim, dim, bias=qkv_bias)
        self.v = nn.Linear(in_dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = _split_heads(self.q(self.conv_q(x)), self.num_heads)
        k = _split_heads(self.k(self.conv_k(x)), self.num_heads)
        v = _split_heads(self.v(self.conv_v(x)), self.num_heads)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v, scale=self.scale)))
