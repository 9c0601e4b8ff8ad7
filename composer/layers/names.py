"""The names blueprints use for layers (activations, norms, SE gates), kept apart from the torch
modules that implement them so that configs validate without importing torch."""

from __future__ import annotations

from typing import Literal

Activation = Literal[
    "relu", "relu6", "gelu", "gelu_tanh", "quick_gelu", "silu", "hardswish", "sigmoid",
    "hardsigmoid", "tanh", "none",
]

Norm = Literal["batchnorm", "layernorm", "none"]
NORMS = ("batchnorm", "layernorm", "none")

Gate = Literal["sigmoid", "hardsigmoid"]  # gates SE may use
