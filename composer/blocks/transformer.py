"""Pre-norm Transformer block, with the attention and feed-forward variants of the lecture's hybrids.

Data flow: x + Attn(Norm(x)), then x + FFN(Norm(x)), on tokens (B, N, C).
A block that downsamples (the first of a CoAtNet stage) computes Proj(Pool(x)) + Attn(Pool(Norm(x)));
the shortcut projects only when the width changes.

Attention (`attention`): `plain` (ViT), `relative` (CoAtNet: a learned bias per relative offset),
`gpsa` (ConViT: gated positional self-attention), `conv` (CvT: depthwise conv + BN projections,
keys and values strided). FFN (`ffn`): `mlp` (ViT), or `conv` (LocalViT: 1x1 -> depthwise -> SE ->
1x1 on the token map, with no LayerNorm before it). Class tokens bypass every convolution.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..layers import Activation, DropPath
from ..layers.attention import (Attention, ConvProjectionAttention, GatedPositionalAttention, map_to_tokens,
                                tokens_to_map)
from ..layers.ffn import ConvFeedForward, Mlp
from . import cost as C
from .base import (BlockConfig, BlockContext, CheckpointNames, Complaint, divisors_near, odd_kernels, positive_width,
                   register_block)


class TokenPool(nn.Module):
    """Strided pooling of grid tokens: (B, H*W, C) -> (B, ceil(H/s) * ceil(W/s), C)."""

    def __init__(self, stride: int, grid: tuple[int, int], kind: str):
        super().__init__()
        self.grid = grid
        self.pool = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(stride, stride, ceil_mode=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return map_to_tokens(self.pool(tokens_to_map(x, self.grid)))


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
    """Pre-norm Transformer block: plain, relative, gated positional (GPSA) or conv-projection attention."""

    data_format = "tokens"
    exclusive_options = (("heads", "head_dim"),)

    type: Literal["transformer"] = Field("transformer", description="Block family: pre-norm Transformer.")
    attention: Literal["plain", "relative", "gpsa", "conv"] = Field(
        "plain", description="`plain`: ViT; `relative`: CoAtNet's relative position bias; `gpsa`: ConViT's gated "
                             "positional attention; `conv`: CvT's convolutional projection.")
    heads: int | None = Field(None, ge=1, le=65536, description="Number of attention heads (or give `head_dim`).")
    head_dim: int | None = Field(None, ge=1, le=65536, description="Width per head; heads = channels / head_dim. Default 64.")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projections.")
    attn_width: Literal["out", "in"] = Field(
        "out", description="Width of queries, keys and values when the block changes width: the output width "
                           "(the paper: qkv widens) or the input width (timm's `_rw` CoAtNets: the output projection "
                           "widens). Heads = this width / head_dim.")
    shortcut_bias: bool = Field(True, description="Bias on the shortcut's projection (used when the width changes).")
    locality_strength: float = Field(
        1.0, gt=0, le=100, description="`gpsa`: how sharply each head attends around its offset at initialisation.")
    proj_kernel: int = Field(3, ge=1, le=15, description="`conv`: kernel of the depthwise Q/K/V projection convs (odd).")
    kv_stride: int = Field(2, ge=1, le=8, description="`conv`: stride of the key and value projection convs.")
    ffn: Literal["mlp", "conv"] = Field(
        "mlp", description="`mlp`: LayerNorm + MLP (ViT); `conv`: LocalViT's 1x1 -> depthwise -> SE -> 1x1 on the map.")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="FFN hidden width = mlp_ratio x channels.")
    act: Activation = Field("gelu", description="Activation inside the FFN.")
    ffn_kernel: int = Field(3, ge=1, le=15, description="`ffn: conv`: kernel of the depthwise conv (odd).")
    ffn_se_reduction: int | None = Field(
        None, ge=1, description="`ffn: conv`: SE hidden width = FFN width / this (LocalViT: 192); none when unset.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorms.")
    layer_scale: float | None = Field(None, gt=0, le=1, description="Initial value of a per-channel layer scale; none when unset.")
    pool: Literal["avg", "max"] = Field("max", description="Pooling used by a downsampling block (CoAtNet).")

    def width(self, ctx: BlockContext) -> int:
        """Width of queries, keys and values."""
        return ctx.in_channels if self.attn_width == "in" else ctx.out_channels

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = check_heads(self.heads, self.head_dim, self.width(ctx))
        if self.attn_width == "in" and self.attention not in ("plain", "relative"):
            out.append(Complaint("attn_width", "`attn_width: in` is available for `plain` and `relative` attention only",
                                 "use `attn_width: out`"))
        if self.attention in ("relative", "gpsa") and ctx.prefix_tokens:
            out.append(Complaint("attention", f"`{self.attention}` attention works on the token grid and cannot take "
                                 "a class token", "insert the class token in a later stage, or use `attention: plain`"))
        if ctx.stride > 1 and ctx.prefix_tokens:
            out.append(Complaint("stride", "a transformer stage cannot downsample while it carries a class token",
                                 "downsample in an earlier stage, or with a `transition`"))
        out += positive_width("mlp_ratio", ctx.out_channels, self.mlp_ratio, "the FFN width")
        return out + odd_kernels(self, "proj_kernel", "ffn_kernel")

    def describe(self, ctx: BlockContext) -> str:
        h = num_heads(self.heads, self.head_dim, self.width(ctx))
        ffn = " conv-ffn" if self.ffn == "conv" else ""
        return f"transformer {self.attention} h{h}{ffn}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, p = ctx.in_channels, ctx.out_channels, ctx.prefix_tokens
        (h, w), (ho, wo) = ctx.resolution, ctx.out_resolution
        heads = num_heads(self.heads, self.head_dim, self.width(ctx))
        n_in, n = p + h * w, p + ho * wo
        total = C.layernorm(c_in, n_in) + self._attention_cost(c_in, c, heads, p, (ho, wo), self.width(ctx))
        if c_in != c:
            total += C.linear(c_in, c, n, self.shortcut_bias)
        hidden = int(c * self.mlp_ratio)
        if self.ffn == "mlp":
            total += C.layernorm(c, n) + C.linear(c, hidden, n) + C.linear(hidden, c, n)
        else:
            g = ho * wo
            total += (C.conv(c, hidden, 1, (ho, wo)) + C.batchnorm(hidden, g)
                      + C.conv(hidden, hidden, self.ffn_kernel, (ho, wo), groups=hidden) + C.batchnorm(hidden, g)
                      + C.conv(hidden, c, 1, (ho, wo)) + C.batchnorm(c, g))
            if self.ffn_se_reduction:
                total += C.squeeze_excite(hidden, max(1, hidden // self.ffn_se_reduction))
        if self.layer_scale:
            total += C.Cost(2 * c)
        return total

    def _attention_cost(self, c_in: int, c: int, heads: int, prefix: int, grid: tuple[int, int],
                        width: int) -> C.Cost:
        """Projections plus the two attention products, QK^T and AV (N_q x N_k x width MACs each)."""
        n = prefix + grid[0] * grid[1]
        proj = C.linear(c, c, n)
        if self.attention in ("plain", "relative"):
            total = C.linear(c_in, 3 * width, n, self.qkv_bias) + C.linear(width, c, n) + C.Cost(macs=2 * n * n * width)
            if self.attention == "relative":
                total += C.Cost((2 * grid[0] - 1) * (2 * grid[1] - 1) * heads)
            return total
        if self.attention == "gpsa":
            positional = C.linear(3, heads, n * n) + C.Cost(heads)  # scores from (dx, dy, d^2), and the gates
            return (C.linear(c_in, 2 * c, n, self.qkv_bias) + C.linear(c_in, c, n, self.qkv_bias) + proj
                    + positional + C.Cost(macs=2 * n * n * c))
        k, pad = self.proj_kernel, self.proj_kernel // 2
        kv_grid = tuple(C.conv_out(g, k, self.kv_stride, pad) for g in grid)
        n_kv = prefix + kv_grid[0] * kv_grid[1]
        total = proj + C.Cost(macs=2 * n * n_kv * c)
        for g, tokens in ((grid, n), (kv_grid, n_kv), (kv_grid, n_kv)):
            total += (C.conv(c_in, c_in, k, g, groups=c_in) + C.batchnorm(c_in, g[0] * g[1])
                      + C.linear(c_in, c, tokens, self.qkv_bias))
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        return TransformerBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ViT / ConViT blocks, or (`stages` layout) MaxxVit's TransformerBlock2d, whose qkv
        channels are ordered head first and whose relative table is (offsets, heads)."""
        names: CheckpointNames = {
            "norm1": "norm1", "norm2": "norm2", "ffn.fc1": "mlp.fc1", "ffn.fc2": "mlp.fc2", "attn.proj": "attn.proj",
            "attn.qkv": "attn.qkv", "attn.qk": "attn.qk", "attn.v": "attn.v", "attn.pos_proj": "attn.pos_proj",
            "attn.gate": "attn.gating_param", "ls1.gamma": "ls1.gamma", "ls2.gamma": "ls2.gamma"}
        if layout == "stages":
            heads = num_heads(self.heads, self.head_dim, self.width(ctx))
            qkv = partial(_qkv_from_head_first, heads=heads)
            names |= {"norm1": "norm1.norm" if ctx.stride > 1 else "norm1", "shortcut.1": "shortcut.expand",
                      "attn.qkv.weight": ("attn.qkv.weight", qkv), "attn.qkv.bias": ("attn.qkv.bias", qkv),
                      "attn.relative.table": ("attn.rel_pos.relative_position_bias_table", torch.t)}
        return names


def _qkv_from_head_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """qkv output channels ordered (heads, 3, head_dim) -> ours, (3, heads, head_dim)."""
    return t.reshape(heads, 3, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def _attention(config: TransformerConfig, ctx: BlockContext, heads: int) -> nn.Module:
    c_in, c_out, grid = ctx.in_channels, ctx.out_channels, ctx.out_resolution
    if config.attention == "gpsa":
        return GatedPositionalAttention(c_in, c_out, heads, grid, config.qkv_bias, config.locality_strength)
    if config.attention == "conv":
        return ConvProjectionAttention(c_in, c_out, heads, grid, ctx.prefix_tokens, config.proj_kernel,
                                       config.kv_stride, config.qkv_bias)
    return Attention(c_in, config.width(ctx), heads, config.qkv_bias, grid if config.attention == "relative" else None,
                     out_dim=c_out)


class TransformerBlock(nn.Module):
    def __init__(self, config: TransformerConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        heads = num_heads(config.heads, config.head_dim, config.width(ctx))
        self.prefix = ctx.prefix_tokens
        self.norm1 = nn.LayerNorm(c_in, eps=config.norm_eps)
        self.pool = TokenPool(stride, ctx.resolution, config.pool) if stride > 1 else nn.Identity()
        self.attn = _attention(config, ctx, heads)
        if stride > 1 or c_in != c_out:  # pool to the new grid, project only to a new width
            self.shortcut = nn.Sequential(self.pool if stride > 1 else nn.Identity(),
                                          nn.Linear(c_in, c_out, bias=config.shortcut_bias) if c_in != c_out
                                          else nn.Identity())
        else:
            self.shortcut = nn.Identity()
        hidden = int(c_out * config.mlp_ratio)
        self.conv_ffn = config.ffn == "conv"
        if self.conv_ffn:
            self.norm2 = nn.Identity()
            self.ffn = ConvFeedForward(c_out, hidden, config.act, ctx.out_resolution, config.ffn_kernel,
                                       config.ffn_se_reduction)
        else:
            self.norm2 = nn.LayerNorm(c_out, eps=config.norm_eps)
            self.ffn = Mlp(c_out, hidden, config.act)
        scale = config.layer_scale
        self.ls1 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.ls2 = LayerScale(c_out, scale) if scale else nn.Identity()
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        x = self.shortcut(x) + self.drop_path(self.ls1(self.attn(self.pool(self.norm1(x)))))
        if not self.conv_ffn:
            return x + self.drop_path(self.ls2(self.ffn(self.norm2(x))))
        cls, grid = x[:, :self.prefix], x[:, self.prefix:]  # the class token bypasses the conv FFN
        grid = grid + self.drop_path(self.ls2(self.ffn(grid)))
        return torch.cat([cls, grid], dim=1) if self.prefix else grid
