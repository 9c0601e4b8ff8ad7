"""Convolution padding: symmetric (k // 2 on every side, PyTorch's ports) or TensorFlow's "SAME".

TF "SAME" pads so that out = ceil(in / stride): a total of max((out - 1) * stride + k - in, 0),
half of it before and the rest (one more when the total is odd) after, at the bottom and right.
With stride 1 and an odd kernel that is k // 2 on every side, an ordinary padded conv; otherwise
it depends on the input size, so `Conv2dSame` pads each input for its own size (any input size
works, as for the other conv layers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) of one dimension of `size`."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


@torch.fx.wrap
def pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad a (B, C, H, W) map as TF "SAME" does for this kernel and stride (a leaf for torch.fx)."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, [left, right, top, bottom])


class Conv2dSame(nn.Conv2d):
    """A square-kernel conv with TF "SAME" padding for every input size (the weights of an nn.Conv2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def conv2d(in_channels: int, out_channels: int, kernel: int, stride: int = 1, *, groups: int = 1, bias: bool = False,
           padding: str = "symmetric") -> nn.Conv2d:
    """A kxk conv with `padding` `symmetric` (k // 2) or `same` (TF's; symmetric where that is the same)."""
    if padding == "same" and (stride > 1 or kernel % 2 == 0):
        return Conv2dSame(in_channels, out_channels, kernel, stride, 0, groups=groups, bias=bias)
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=bias)
