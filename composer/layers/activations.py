"""Activations by name. Blueprints name them; blocks resolve the name once, at construction."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the GELU approximation used by CvT."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SquaredReLU(nn.Module):
    """relu(x)^2 (So et al. 2021), the activation of the MetaFormers' MLP head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x).pow(2)


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "quick_gelu": QuickGELU,
    "silu": lambda: nn.SiLU(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": lambda: nn.Hardsigmoid(inplace=True),
    "tanh": nn.Tanh,
    "squared_relu": SquaredReLU,
    "none": nn.Identity,
}



def make_act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()
