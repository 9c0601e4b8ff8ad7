"""Heads: features -> logits.

- `pool`: optional 1x1 feature conv + BN + act (MobileNetV2, EfficientNet) -> global average pool
  over the grid -> norm -> optional pre-logits Linear + act -> Linear. With `norm_on: map` the norm
  (LayerNorm over channels) comes before the pooling, at every position (timm's `_rw` CoAtNets).
- `token`: the class token -> norm -> optional pre-logits Linear + act -> Linear.
"""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import BeforeValidator, Field, model_validator

from ...layers.names import Activation
from .. import cost as C
from ..base import HEADS, BlockContext, Part, StrictModel, Variant


class HeadConv(StrictModel):
    """A 1x1 feature conv + BatchNorm + act before pooling (MobileNetV2, EfficientNet)."""

    channels: int = Field(ge=1, le=65536, description="Width of the feature conv (MobileNetV2: 1280).")
    act: Activation = Field("relu", description="Activation after the feature conv.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of its BatchNorm (TF ports: 1e-3).")


def _conv_shorthand(value):
    """`conv: 1280` -> `{channels: 1280}`."""
    return {"channels": value} if isinstance(value, int) and not isinstance(value, bool) else value


class _Head(Part):
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

    def cost(self, ctx: BlockContext) -> C.Cost:
        """Parameters and MACs for one sample whose features are `in_channels` wide on the `resolution`
        grid, for `out_channels` classes."""
        total, channels, hw, classes = C.Cost(), ctx.in_channels, ctx.resolution, ctx.out_channels
        conv = getattr(self, "conv", None)
        if conv:
            total += C.conv(channels, conv.channels, 1, hw) + C.batchnorm(conv.channels, hw[0] * hw[1])
            channels = conv.channels
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

    def build(self, ctx: BlockContext):
        from .module import Head

        head = Head(self, ctx.in_channels, ctx.out_channels)
        head.prefix = ctx.prefix_tokens
        return head

    def timm_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Spellings of the head in timm (keys relative to the network): ResNet's `fc`; EfficientNet's
        `conv_head/bn2/classifier`; ViT's `norm/head`; ConvNeXt's, MaxxVit's and Swin's `head.*` (the
        map norm is `norm`); ByobNet's `final_conv` and `head.fc`; the MetaFormers' MLP head `head.fc.*`;
        PVTv2's `head`, whose map norm ends the last of the `stages`."""
        names = [{"fc": "fc"},
                 {"conv.conv": "final_conv.conv", "conv.norm": "final_conv.bn", "fc": "head.fc"},
                 {"norm": "head.norm", "pre_logits.fc": "head.fc.fc1", "pre_logits.norm": "head.fc.norm",
                  "fc": "head.fc.fc2"},
                 {"conv.conv": "conv_head", "conv.norm": "bn2", "fc": "classifier"},
                 {"norm": "norm", "fc": "head"},
                 {"norm": "head.norm", "pre_logits.fc": "head.pre_logits.fc", "fc": "head.fc", "map_norm": "norm"}]
        return names + [{"map_norm": f"stages.{ctx.stage}.norm", "fc": "head"}]  # ctx.stage: the last stage

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Spellings of the head in Hugging Face transformers: CvT's, ViT's and ConvNeXt's final
        LayerNorm and `classifier`; ResNet's `classifier.1`; MobileNetV2's and EfficientNet's feature
        conv before the classifier."""
        return [{"norm": "layernorm", "fc": "classifier"},
                {"norm": "vit.layernorm", "fc": "classifier"},
                {"norm": "convnext.layernorm", "fc": "classifier"},
                {"fc": "classifier.1"},
                {"conv.conv": "mobilenet_v2.conv_1x1.convolution", "conv.norm": "mobilenet_v2.conv_1x1.normalization",
                 "fc": "classifier"},
                {"conv.conv": "efficientnet.encoder.top_conv", "conv.norm": "efficientnet.encoder.top_bn",
                 "fc": "classifier"}]


@HEADS.register
class PoolHeadConfig(_Head):
    """Global average pooling over the grid, then norm, optional pre-logits and the classifier."""

    moved_options = {"conv_act": "conv: {channels: 1280, act: relu6}",
                     "conv_norm_eps": "conv: {channels: 1280, norm_eps: 1e-3}"}

    type: Literal["pool"] = Field("pool", description="Head kind: global average pooling.")
    conv: Annotated[Optional[HeadConv], BeforeValidator(_conv_shorthand, json_schema_input_type=Union[Annotated[int, Field(ge=1, le=65536)], HeadConv, None])] = Field(
        None, description="A 1x1 conv + BatchNorm + act before pooling: `{channels, act, norm_eps}`, or its width "
                          "alone (MobileNetV2: `conv: 1280`); none when unset.")
    norm_on: Literal["pooled", "map"] = Field(
        "pooled", description="Where the norm applies: to the pooled features, or (`layernorm` only) to the map at "
                              "every position before pooling.")

    def features(self, channels: int) -> int:
        """Width reaching the classifier."""
        return self.hidden or (self.conv.channels if self.conv else channels)


@HEADS.register
class TokenHeadConfig(_Head):
    """The class token, then norm, optional pre-logits and the classifier."""

    type: Literal["token"] = Field("token", description="Head kind: class token.")

    def features(self, channels: int) -> int:
        """Width reaching the classifier."""
        return self.hidden or channels


HeadConfig = Annotated[_Head, Variant(HEADS)]


def __getattr__(name: str):
    """The nn.Module (`Head`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "Head":
        from .module import Head

        return Head
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
