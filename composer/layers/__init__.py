"""Small pieces shared by the block families: activations, norms, squeeze-excitation, drop path."""

from .activations import ACTIVATIONS, Activation, make_act
from .drop_path import DropPath
from .norms import NORMS, LayerNorm2d, Norm, make_norm
from .se import Gate, SqueezeExcite

__all__ = [
    "ACTIVATIONS", "Activation", "make_act", "DropPath", "NORMS", "LayerNorm2d", "Norm",
    "make_norm", "Gate", "SqueezeExcite",
]
