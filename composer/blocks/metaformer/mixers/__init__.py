"""Token mixers of the MetaFormer block, one file each: `pool` (PoolFormer), `sepconv` (ConvFormer),
`attention` (CAFormer). A mixer says whether it works on the map (B, C, H, W) or on tokens (B, N, C);
the block then runs on that format, as timm's MetaFormer stages do."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Union

from pydantic import Field

from ...base import StrictModel
from ....layers.names import Activation

# the activations a MetaFormer may use: composer's, and StarReLU (with a learned scale and bias, so
# it is not one of composer's parameter-free activations)
MetaFormerActivation = Literal[Activation, "starrelu"]


def act_params(name: str) -> int:
    """Parameters of an activation: StarReLU's scale and bias."""
    return 2 if name == "starrelu" else 0


class MixerConfig(StrictModel):
    """Base of the token mixers."""

    on_map: ClassVar[bool] = True  # works on (B, C, H, W) maps; False: on (B, N, C) tokens


from .attention import AttentionMixerConfig  # noqa: E402
from .pool import PoolMixerConfig  # noqa: E402
from .sepconv import SepConvMixerConfig  # noqa: E402

MIXERS = {cls.model_fields["type"].default: cls for cls in (PoolMixerConfig, SepConvMixerConfig, AttentionMixerConfig)}
Mixer = Annotated[Union[PoolMixerConfig, SepConvMixerConfig, AttentionMixerConfig], Field(discriminator="type")]
