"""The pieces of the MetaFormer baselines (Yu et al. 2022, 2023): token mixers, StarReLU, the
channel MLP, learned scales and the norms, on (B, C, H, W) maps or, for attention, (B, N, C) tokens.

- `PoolMixer`: PoolFormer's token mixer, pool(x) - x (average pooling, stride 1, padding excluded
  from the average; the block's residual adds x back).
- `SepConvMixer`: ConvFormer's, MobileNetV2's inverted separable conv: 1x1 -> act -> kxk depthwise
  -> act -> 1x1, no norms.
- `MixerAttention`: CAFormer's multi-head self-attention on grid tokens (no position information),
  whose heads of `head_dim` may be narrower or wider together than the channels.
- `StarReLU`: s * relu(x)^2 + b with a learned scalar scale s and bias b.
- `MetaFormerMlp`: 1x1 convs (maps) or Linears (tokens) C -> hidden -> C around an activation.
- `Scale`: a learned per-channel factor (layer scale on a branch, residual scale on the shortcut).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_act


class StarReLU(nn.Module):
    def __init__(self, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale)))
        self.bias = nn.Parameter(torch.full((1,), float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * F.relu(x).pow(2) + self.bias


def metaformer_act(name: str) -> nn.Module:
    """An activation by name: `starrelu`, or any of composer's activations."""
    return StarReLU() if name == "starrelu" else make_act(name)


class Scale(nn.Module):
    """x * scale, one learned factor per channel (channels first on a map, last on tokens)."""

    def __init__(self, channels: int, init: float, on_map: bool):
        super().__init__()
        self.shape = (channels, 1, 1) if on_map else (channels,)
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.view(self.shape)


class TokenGroupNorm(nn.GroupNorm):
    """GroupNorm with one group on (B, N, C) tokens: normalised over all of a sample's tokens and channels,
    as GroupNorm(1) normalises a map over (C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.transpose(1, 2), 1, self.weight, self.bias, self.eps).transpose(1, 2)


def metaformer_norm(kind: str, channels: int, eps: float, bias: bool, on_map: bool) -> nn.Module:
    """`layernorm` over the channels at each position, or `groupnorm` (one group: over everything of a
    sample); `bias: false` drops the additive term (the MetaFormer baselines' norms)."""
    from .norms import LayerNorm2d

    if kind == "layernorm":
        return (LayerNorm2d if on_map else nn.LayerNorm)(channels, eps=eps, bias=bias)
    norm = nn.GroupNorm(1, channels, eps=eps) if on_map else TokenGroupNorm(1, channels, eps=eps)
    if not bias:
        norm.bias = None
    return norm


class PoolMixer(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.pool = nn.AvgPool2d(size, stride=1, padding=size // 2, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return self.pool(x) - x


class SepConvMixer(nn.Module):
    def __init__(self, channels: int, hidden: int, kernel: int, act1: str, act2: str, bias: bool):
        super().__init__()
        self.pwconv1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.act1 = metaformer_act(act1)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=bias)
        self.act2 = metaformer_act(act2)
        self.pwconv2 = nn.Conv2d(hidden, channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        return self.pwconv2(self.act2(self.dwconv(self.act1(self.pwconv1(x)))))


class MixerAttention(nn.Module):
    def __init__(self, channels: int, heads: int, head_dim: int, qkv_bias: bool, proj_bias: bool):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(channels, 3 * heads * head_dim, bias=qkv_bias)
        self.proj = nn.Linear(heads * head_dim, channels, bias=proj_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, C)
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        return self.proj(y.transpose(1, 2).reshape(B, N, self.heads * self.head_dim))


class MetaFormerMlp(nn.Module):
    def __init__(self, channels: int, hidden: int, act: str, bias: bool, on_map: bool):
        super().__init__()
        layer = (lambda i, o: nn.Conv2d(i, o, 1, bias=bias)) if on_map else (lambda i, o: nn.Linear(i, o, bias=bias))
        self.fc1 = layer(channels, hidden)
        self.act = metaformer_act(act)
        self.fc2 = layer(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
