"""The names blueprints use for layers (activations, norms, SE gates), kept apart from the torch
modules that implement them so that configs validate without importing torch."""

from __future__ import annotations

from typing import Literal

Activation = Literal[
    "relu", "relu6", "gelu", "gelu_tanh", "quick_gelu", "silu", "hardswish", "sigmoid",
    "hardsigmoid", "tanh", "squared_relu", "none",
]

Norm = Literal["batchnorm", "layernorm", "none"]
NORMS = ("batchnorm", "layernorm", "none")

Gate = Literal["sigmoid", "hardsigmoid"]  # gates SE may use

# how convs pad: k // 2 on every side (PyTorch ports), or TensorFlow's "SAME" (TF ports)
Padding = Literal["symmetric", "same"]
PADDING_HELP = ("`symmetric`: k // 2 on every side; `same`: TensorFlow's \"SAME\", out = ceil(in / stride), "
                "the odd pixel of padding at the bottom and right (Google's TF-trained checkpoints).")
