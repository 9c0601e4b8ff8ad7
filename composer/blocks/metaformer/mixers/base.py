"""What every token mixer shares, and the activations a MetaFormer may use."""

from __future__ import annotations

from typing import ClassVar, Literal

from ...base import Part
from ....layers.names import Activation

# composer's activations, and StarReLU (with a learned scale and bias, so it is not one of composer's
# parameter-free activations)
MetaFormerActivation = Literal[Activation, "starrelu"]


def act_params(name: str) -> int:
    """Parameters of an activation: StarReLU's scale and bias."""
    return 2 if name == "starrelu" else 0


class MixerConfig(Part):
    """Base of the token mixers; methods take the block's context (the mixer works at its width and grid)."""

    on_map: ClassVar[bool] = True  # works on (B, C, H, W) maps; False: on (B, N, C) tokens
