"""Heads: features -> logits.

- `pool`: optional 1x1 feature conv + BN + act (MobileNetV2, EfficientNet) -> global average pool
  over the grid -> norm -> optional pre-logits Linear + act -> Linear. With `norm_on: map` the norm
  (LayerNorm over channels) comes before the pooling, at every position (timm's `_rw` CoAtNets).
- `token`: the class token -> norm -> optional pre-logits Linear + act -> Linear.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from ...layers.names import Activation
from .. import cost as C
from ..base import StrictModel


class _Head(StrictModel):
    """Shared base: the strict scalar policy of every config model."""

    norm: Literal["layernorm", "batchnorm", "none"] = Field(
        "layernorm", description="Norm on the pooled features.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the norm.")
    hidden: int | None = Field(None, ge=1, le=65536, description="Width of a pre-logits Linear + act (CoAtNet); none when unset.")
    act: Activation = Field("tanh", description="Activation after the pre-logits Linear.")
    hidden_norm: bool = Field(False, description="A LayerNorm (epsilon `norm_eps`) after the pre-logits activation "
                                                 "(the MetaFormer baselines' MLP head).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout before the classifier.")

    @model_validator(mode="after")
    def _hidden_norm_needs_hidden(self):
        if self.hidden_norm and not self.hidden:
            raise ValueError("`hidden_norm` norms the pre-logits Linear's output, and there is none: give `hidden` "
                             "too, or drop `hidden_norm`")
        return self

    def cost(self, channels: int, hw: tuple[int, int], classes: int) -> C.Cost:
        """Parameters and MACs for one sample whose features are `channels` wide on an `hw` grid."""
        total = C.Cost()
        conv = getattr(self, "conv", None)
        if conv:
            total += C.conv(channels, conv, 1, hw) + C.batchnorm(conv, hw[0] * hw[1])
            channels = conv
        if self.norm == "layernorm":
            total += C.layernorm(channels, hw[0] * hw[1] if getattr(self, "norm_on", "pooled") == "map" else 1)
        elif self.norm == "batchnorm":
            total += C.batchnorm(channels, 1)
        if self.hidden:
            total += C.linear(channels, self.hidden)
            channels = self.hidden
            if self.hidden_norm:
                total += C.layernorm(channels, 1)
        return total + (C.linear(channels, classes) if classes > 0 else C.Cost())

    def timm_names(self) -> list[dict[str, str]]:
        """Spellings of the head in timm (keys relative to the network): ResNet's `fc`; EfficientNet's
        `conv_head/bn2/classifier`; ViT's `norm/head`; ConvNeXt's and MaxxVit's `head.*` (MaxxVit's
        map norm is `norm`); ByobNet's `final_conv` and `head.fc`; the MetaFormers' MLP head `head.fc.*`."""
        return [{"fc": "fc"},
                {"conv.0": "final_conv.conv", "conv.1": "final_conv.bn", "fc": "head.fc"},
                {"norm": "head.norm", "pre_logits.0": "head.fc.fc1", "pre_logits.2": "head.fc.norm", "fc": "head.fc.fc2"},
                {"conv.0": "conv_head", "conv.1": "bn2", "fc": "classifier"},
                {"norm": "norm", "fc": "head"},
                {"norm": "head.norm", "pre_logits.0": "head.pre_logits.fc", "fc": "head.fc", "map_norm": "norm"}]

    def transformers_names(self) -> list[dict[str, str]]:
        """Spellings of the head in Hugging Face transformers: CvT's, ViT's and ConvNeXt's final
        LayerNorm and `classifier`; ResNet's `classifier.1`; MobileNetV2's and EfficientNet's feature
        conv before the classifier."""
        return [{"norm": "layernorm", "fc": "classifier"},
                {"norm": "vit.layernorm", "fc": "classifier"},
                {"norm": "convnext.layernorm", "fc": "classifier"},
                {"fc": "classifier.1"},
                {"conv.0": "mobilenet_v2.conv_1x1.convolution", "conv.1": "mobilenet_v2.conv_1x1.normalization",
                 "fc": "classifier"},
                {"conv.0": "efficientnet.encoder.top_conv", "conv.1": "efficientnet.encoder.top_bn",
                 "fc": "classifier"}]


class PoolHeadConfig(_Head):
    type: Literal["pool"] = Field("pool", description="Head kind: global average pooling.")
    conv: int | None = Field(None, ge=1, le=65536, description="Width of a 1x1 conv + BatchNorm + act before pooling (MobileNetV2: 1280); none when unset.")
    conv_act: Activation = Field("relu", description="Activation after the feature conv.")
    conv_norm_eps: float = Field(
        1e-5, ge=1e-12, le=1, description="Epsilon of the feature conv's BatchNorm (TF ports: 1e-3).")
    norm_on: Literal["pooled", "map"] = Field(
        "pooled", description="Where the norm applies: to the pooled features, or (`layernorm` only) to the map at "
                              "every position before pooling.")

    def features(self, channels: int) -> int:
        """Width reaching the classifier."""
        return self.hidden or self.conv or channels


class TokenHeadConfig(_Head):
    type: Literal["token"] = Field("token", description="Head kind: class token.")

    def features(self, channels: int) -> int:
        """Width reaching the classifier."""
        return self.hidden or channels


HeadConfig = Annotated[Union[PoolHeadConfig, TokenHeadConfig], Field(discriminator="type")]


def __getattr__(name: str):
    """The nn.Module (`Head`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "Head":
        from .module import Head

        return Head
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
