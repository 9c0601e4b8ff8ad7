"""MobileViT's local-global block (Mehta & Rastegari 2022), on (B, C, H, W) maps.

Data flow: kxk conv-BN-act (local) -> 1x1 conv C -> D -> unfold into p x p patches -> pre-norm
Transformer layers, each attending across the patches among the pixels at the same place in their
patch -> LayerNorm -> fold back -> 1x1 conv-BN-act D -> C -> concatenate with the block's input ->
kxk conv-BN-act 2C -> C (fusion).
"""

from __future__ import annotations

import torch
from torch import nn

from .activations import make_act
from .attention import Attention
from .drop_path import DropPath
from .ffn import Mlp


def conv_bn_act(c_in: int, c_out: int, kernel: int, act: str, eps: float, stride: int = 1, groups: int = 1
                ) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out, eps=eps), make_act(act))


class PatchTransformerLayer(nn.Module):
    """Pre-norm Transformer layer: x + Attn(LN(x)), x + MLP(LN(x)) on (B', N, D)."""

    def __init__(self, dim: int, heads: int, hidden: int, act: str, eps: float, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, dim, heads, qkv_bias=True)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, hidden, act)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def unfold(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, D, H, W) -> (B * p * p, H/p * W/p, D): one sequence per position inside a patch."""
    B, D, H, W = x.shape
    nh, nw = H // patch, W // patch
    x = x.reshape(B, D, nh, patch, nw, patch).permute(0, 3, 5, 2, 4, 1)  # (B, p, p, nh, nw, D)
    return x.reshape(B * patch * patch, nh * nw, D)


def fold(x: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """The inverse of `unfold`: (B * p * p, H/p * W/p, D) -> (B, D, H, W)."""
    H, W = size
    nh, nw = H // patch, W // patch
    D = x.shape[-1]
    x = x.reshape(-1, patch, patch, nh, nw, D).permute(0, 5, 3, 1, 4, 2)  # (B, D, nh, p, nw, p)
    return x.reshape(-1, D, H, W)


class MobileViTBlock(nn.Module):
    def __init__(self, channels: int, dim: int, depth: int, heads: int, mlp_hidden: int, patch: int, kernel: int,
                 act: str, bn_eps: float, norm_eps: float, fusion: bool, drop_path: float = 0.0):
        super().__init__()
        self.patch = patch
        self.conv_kxk = conv_bn_act(channels, channels, kernel, act, bn_eps)
        self.conv_1x1 = nn.Conv2d(channels, dim, 1, bias=False)
        # stochastic depth on the Transformer layers' branches (the block as a whole has no shortcut)
        self.transformer = nn.Sequential(*(PatchTransformerLayer(dim, heads, mlp_hidden, act, norm_eps, drop_path)
                                           for _ in range(depth)))
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.conv_proj = conv_bn_act(dim, channels, 1, act, bn_eps)
        self.conv_fusion = conv_bn_act(2 * channels, channels, kernel, act, bn_eps) if fusion else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.conv_1x1(self.conv_kxk(x))  # (B, D, H, W)
        size = (y.shape[2], y.shape[3])
        y = self.norm(self.transformer(unfold(y, self.patch)))
        y = self.conv_proj(fold(y, self.patch, size))
        if self.conv_fusion is None:
            return y
        return self.conv_fusion(torch.cat([x, y], dim=1))
