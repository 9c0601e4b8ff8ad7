"""Small pieces shared by the block families: activations, norms, squeeze-excitation, drop path.

The names blueprints use (`Activation`, `Norm`, `Gate`, `NORMS`) come from `names`, which imports no
torch; the torch modules load on first use of their names (PEP 562)."""

from __future__ import annotations

from importlib import import_module

from .names import NORMS, Activation, Gate, Norm, Padding

_LAZY = {"ACTIVATIONS": "activations", "make_act": "activations", "DropPath": "drop_path",
         "LayerNorm2d": "norms", "make_norm": "norms", "SqueezeExcite": "se",
         "conv2d": "padding", "Conv2dSame": "padding"}

__all__ = [
    "ACTIVATIONS", "Activation", "make_act", "DropPath", "NORMS", "LayerNorm2d", "Norm",
    "make_norm", "Gate", "SqueezeExcite", "Padding", "conv2d", "Conv2dSame",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
