"""Pre-norm Transformer block: ViT (Dosovitskiy et al. 2021) and CoAtNet's relative attention
(Dai et al. 2021).

Data flow: x + Attn(Norm(x)), then x + MLP(Norm(x)), on tokens (B, N, C).
A block that downsamples (the first of a CoAtNet stage) computes Proj(Pool(x)) + Attn(Pool(Norm(x))).
Attention runs through `scaled_dot_product_attention`; a relative position bias enters as its
additive mask.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..layers import Activation, DropPath, make_act
from .base import BlockConfig, BlockContext, Complaint, divisors_near, register_block


def relative_position_index(height: int, width: int) -> torch.Tensor:
    """(H*W, H*W) index into a (2H-1)*(2W-1) table of relative offsets between grid positions."""
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N), offsets in [-(H-1), H-1]
    return (rel[0] + height - 1) * (2 * width - 1) + (rel[1] + width - 1)


class RelativePositionBias(nn.Module):
    """A learned scalar per head and relative offset, gathered into an (heads, N, N) logit bias."""

    def __init__(self, num_heads: int, grid: tuple[int, int]):
        super().__init__()
        h, w = grid
        self.table = nn.Parameter(torch.zeros(num_heads, (2 * h - 1) * (2 * w - 1)))
        self.register_buffer("index", relative_position_index(h, w), persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table[:, self.index]  # (heads, N, N)


class Attention(nn.Module):
    """Multi-head self-attention; qkv may map the input width to a different output width."""

    def __init__(self, in_dim: int, dim: int, num_heads: int, qkv_bias: bool = True,
                 relative_grid: tuple[int, int] | None = None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(in_dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative = RelativePositionBias(num_heads, relative_grid) if relative_grid else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        bias = self.relative().to(q.dtype) if self.relative is not None else None
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, heads, N, head_dim)
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class TokenPool(nn.Module):
    """Strided pooling of grid tokens: (B, H*W, C) -> (B, H/s * W/s, C)."""

    def __init__(self, stride: int, grid: tuple[int, int], kind: str):
        super().__init__()
        self.grid = grid
        self.pool = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        x = x.transpose(1, 2).reshape(B, C, *self.grid)
        return self.pool(x).flatten(2).transpose(1, 2)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def num_heads(heads: int | None, head_dim: int | None, channels: int) -> int:
    if heads is not None:
        return heads
    return max(1, channels // (head_dim or 64))


def check_heads(heads: int | None, head_dim: int | None, channels: int) -> list[Complaint]:
    if heads is not None and head_dim is not None:
        return [Complaint("heads", "give either `heads` or `head_dim`, not both")]
    if heads is not None and channels % heads:
        return [Complaint("channels", f"width {channels} is not divisible by heads={heads}",
                          f"nearest valid widths: {divisors_near(channels, heads)}")]
    if heads is None:
        hd = head_dim or 64
        if channels % hd:
            return [Complaint("channels", f"width {channels} is not divisible by head_dim={hd}",
                              f"nearest valid widths: {divisors_near(channels, hd)}")]
    return []


@register_block
class TransformerConfig(BlockConfig):
    """Pre-norm Transformer block with plain or relative-position multi-head attention."""

    data_format = "tokens"
    exclusive_options = (("heads", "head_dim"),)

    type: Literal["transformer"] = Field("transformer", description="Block family: pre-norm Transformer.")
    attention: Literal["plain", "relative"] = Field(
        "plain", description="`plain`: ViT attention; `relative`: CoAtNet's per-head relative position bias.")
    heads: int | None = Field(None, ge=1, description="Number of attention heads (or give `head_dim`).")
    head_dim: int | None = Field(None, ge=1, description="Width per head; heads = channels / head_dim. Default 64.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width = mlp_ratio x channels.")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projection.")
    act: Activation = Field("gelu", description="Activation inside the MLP.")
    norm_eps: float = Field(1e-5, gt=0, description="Epsilon of the LayerNorms.")
    layer_scale: float | None = Field(None, gt=0, description="Initial value of a per-channel layer scale; none when unset.")
    pool: Literal["avg", "max"] = Field("max", description="Pooling used by a downsampling block (CoAtNet).")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = check_heads(self.heads, self.head_dim, ctx.out_channels)
        if self.attention == "relative" and ctx.prefix_tokens:
            out.append(Complaint("attention", "relative attention works on the token grid and cannot take a class token",
                                 "insert the class token in a later stage, or use `attention: plain`"))
        if ctx.stride > 1 and ctx.prefix_tokens:
            out.append(Complaint("stride", "a transformer stage cannot downsample while it carries a class token",
                                 "downsample in an earlier stage, or with a `transition`"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        h = num_heads(self.heads, self.head_dim, ctx.out_channels)
        return f"transformer {self.attention} h{h}"

    def build(self, ctx: BlockContext) -> nn.Module:
        return TransformerBlock(self, ctx)


class TransformerBlock(nn.Module):
    def __init__(self, config: TransformerConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        heads = num_heads(config.heads, config.head_dim, c_out)
        grid = ctx.out_resolution if config.attention == "relative" else None
        self.norm1 = nn.LayerNorm(c_in, eps=config.norm_eps)
        self.pool = TokenPool(stride, ctx.resolution, config.pool) if stride > 1 else nn.Identity()
        self.attn = Attention(c_in, c_out, heads, config.qkv_bias, grid)
        if stride > 1 or c_in != c_out:
            self.shortcut = nn.Sequential(self.pool if stride > 1 else nn.Identity(), nn.Linear(c_in, c_out))
        else:
            self.shortcut = nn.Identity()
        self.norm2 = nn.LayerNorm(c_out, eps=config.norm_eps)
        self.mlp = Mlp(c_out, int(c_out * config.mlp_ratio), config.act)
        scale = config.layer_scale
        self.ls1 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.ls2 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        x = self.shortcut(x) + self.drop_path(self.ls1(self.attn(self.pool(self.norm1(x)))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
