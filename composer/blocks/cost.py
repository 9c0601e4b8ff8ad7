"""Analytic costs: parameters and MACs from a config and an input shape, with no tensor at all.

Each block family states its cost with these helpers; `composer profile --check` compares the sums
with the traced count. The conventions are the counter's (see composer/analysis/tracing.py): a conv or
Linear costs one MAC per weight use and nothing for its bias; BatchNorm at inference costs 2 per
element, LayerNorm 5 per element; activations, softmax, pooling and residual adds are free.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.macs + other.macs)

    def __mul__(self, n: int) -> "Cost":
        return Cost(self.params * n, self.macs * n)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv(c_in: int, c_out: int, kernel: int, out_hw: tuple[int, int], groups: int = 1, bias: bool = False) -> Cost:
    """A kxk conv producing an (out_hw) map."""
    weights = c_out * (c_in // groups) * kernel * kernel
    return Cost(weights + (c_out if bias else 0), weights * out_hw[0] * out_hw[1])


def linear(c_in: int, c_out: int, tokens: int = 1, bias: bool = True) -> Cost:
    return Cost(c_in * c_out + (c_out if bias else 0), tokens * c_in * c_out)


def batchnorm(channels: int, elements_per_channel: int) -> Cost:
    return Cost(2 * channels, 2 * channels * elements_per_channel)


def layernorm(channels: int, tokens: int) -> Cost:
    return Cost(2 * channels, 5 * channels * tokens)


def squeeze_excite(channels: int, hidden: int) -> Cost:
    """Global pool (free) -> 1x1 conv with bias -> act -> 1x1 conv with bias -> gate -> scale (free)."""
    return linear(channels, hidden) + linear(hidden, channels)
