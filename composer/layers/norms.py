"""Norm layers by name, for feature maps (B, C, H, W) and for tokens (B, N, C)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map (ConvNeXt's "channels_first" norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_norm(name: str, channels: int, *, tokens: bool = False, eps: float | None = None) -> nn.Module:
    """A norm over `channels`: of a (B, C, H, W) map, or of (B, N, C) tokens when `tokens`."""
    if name == "none":
        return nn.Identity()
    if name == "layernorm":
        eps = 1e-5 if eps is None else eps
        return nn.LayerNorm(channels, eps=eps) if tokens else LayerNorm2d(channels, eps=eps)
    if name == "batchnorm":
        if tokens:
            raise ValueError("batchnorm over tokens is not supported")
        return nn.BatchNorm2d(channels, eps=1e-5 if eps is None else eps)
    raise ValueError(f"unknown norm {name!r}")
