"""Stems: what turns the image into the first feature map.

- `conv`: a stack of conv -> norm -> act layers, the first strided (ResNet, MBConv nets, CoAtNet),
  optionally followed by a 3x3 stride-2 max-pool.
- `patch`: one conv whose kernel equals its stride, optionally followed by a norm (ViT, ConvNeXt).
- `none`: the image goes straight to the first stage (its `transition` then embeds it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, field_validator

from ...layers.names import PADDING_HELP, Activation, Padding
from .. import cost as C
from ..base import STEMS, BlockContext, Part, Variant, downsample

if TYPE_CHECKING:
    from torch import nn


class _Stem(Part):
    """Shared base: the strict scalar policy of every config model."""


@STEMS.register
class ConvStemConfig(_Stem):
    """Stack of conv-norm-act layers; the first conv carries the stride."""

    type: Literal["conv"] = Field("conv", description="Stem kind: stack of convolutions.")
    channels: list[Annotated[int, Field(ge=1, le=65536)]] = Field(
        min_length=1, max_length=16, description="Output width of each conv, e.g. [64, 64].")
    kernel: int = Field(3, ge=1, le=15, description="Kernel size of every conv (odd).")
    stride: int = Field(2, ge=1, le=8, description="Stride of the first conv.")
    norm: Literal["batchnorm", "none"] = Field("batchnorm", description="Norm after each conv.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms (TF ports: 1e-3).")
    padding: Padding = Field("symmetric", description="Padding of the convs: " + PADDING_HELP)
    act: Activation = Field("relu", description="Activation after each norm.")
    last_norm_act: bool = Field(True, description="Whether the last conv is also followed by norm and act (false in CoAtNet).")
    pool: Literal["none", "max"] = Field("none", description="`max`: a 3x3 stride-2 max-pool at the end (ResNet).")
    bias: bool | None = Field(None, description="Bias on the convs; unset: only where no norm follows (MaxViT: "
                                                   "true).")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"stem kernels must be odd (use {value - 1} or {value + 1})")
        return value

    @property
    def conv_bias(self) -> bool:
        return self.norm == "none" if self.bias is None else self.bias

    @property
    def out_channels(self) -> int:
        return self.channels[-1]

    @property
    def total_stride(self) -> int:
        return self.stride * (2 if self.pool == "max" else 1)

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """ceil(n / stride), then ceil(n / 2) for the pool ("same" padding: any size works)."""
        out = tuple(downsample(n, self.stride) for n in hw)
        return tuple(downsample(n, 2) for n in out) if self.pool == "max" else out

    def cost(self, ctx: BlockContext) -> C.Cost:
        total, c, hw = C.Cost(), ctx.in_channels, ctx.resolution
        grid = tuple(downsample(n, self.stride) for n in hw)
        for i, width in enumerate(self.channels):
            total += C.conv(c, width, self.kernel, grid, bias=self.conv_bias)
            if self.norm == "batchnorm" and (i < len(self.channels) - 1 or self.last_norm_act):
                total += C.batchnorm(width, grid[0] * grid[1])
            c = width
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import conv_stem

        return conv_stem(self, ctx.in_channels)

    def timm_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Spellings of this stem in timm: MaxxVit's `stem.conv1/norm1/conv2`, ResNet's `conv1/bn1`,
        EfficientNet's `conv_stem/bn1`, ByobNet's one-conv `stem.conv/bn` (keys relative to the network)."""
        maxxvit = {}
        for i in range(1, len(self.channels) + 1):
            maxxvit[f"conv{i}"], maxxvit[f"norm{i}"] = f"stem.conv{i}", f"stem.norm{i}"
        byob = {"conv1": "stem.conv", "norm1": "stem.bn"} if len(self.channels) == 1 else {}
        return [maxxvit, {"conv1": "conv1", "norm1": "bn1"}, {"conv1": "conv_stem", "norm1": "bn1"}, byob]

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Hugging Face transformers' ResNet embedder, MobileNetV2's first conv, EfficientNet's embeddings."""
        return [{"conv1": "resnet.embedder.embedder.convolution", "norm1": "resnet.embedder.embedder.normalization"},
                {"conv1": "mobilenet_v2.conv_stem.first_conv.convolution",
                 "norm1": "mobilenet_v2.conv_stem.first_conv.normalization"},
                {"conv1": "efficientnet.embeddings.convolution", "norm1": "efficientnet.embeddings.batchnorm"}]


@STEMS.register
class PatchStemConfig(_Stem):
    """Non-overlapping patch embedding: conv with kernel = stride = patch."""

    type: Literal["patch"] = Field("patch", description="Stem kind: patch embedding.")
    channels: int = Field(ge=1, le=65536, description="Embedding width.")
    patch: int = Field(16, ge=1, le=64, description="Patch size (kernel and stride of the conv).")
    norm: Literal["layernorm", "none"] = Field("none", description="Norm after the conv (ConvNeXt: layernorm).")
    norm_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the norm.")

    @property
    def out_channels(self) -> int:
        return self.channels

    @property
    def total_stride(self) -> int:
        return self.patch

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        """n / patch; the plan requires sizes divisible by the patch."""
        return hw[0] // self.patch, hw[1] // self.patch

    def cost(self, ctx: BlockContext) -> C.Cost:
        hw = ctx.resolution
        grid = (hw[0] // self.patch, hw[1] // self.patch)
        total = C.conv(ctx.in_channels, self.channels, self.patch, grid, bias=True)
        return total + (C.layernorm(self.channels, grid[0] * grid[1]) if self.norm == "layernorm" else C.Cost())

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import patch_stem

        return patch_stem(self, ctx.in_channels)

    def timm_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """ViT's `patch_embed.proj/norm`, ConvNeXt's `stem.0/1`."""
        return [{"proj": "patch_embed.proj", "norm": "patch_embed.norm"}, {"proj": "stem.0", "norm": "stem.1"}]

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        """Hugging Face transformers' ViT patch embedding, ConvNeXt's embeddings."""
        return [{"proj": "vit.embeddings.patch_embeddings.projection"},
                {"proj": "convnext.embeddings.patch_embeddings", "norm": "convnext.embeddings.layernorm"}]


@STEMS.register
class NoStemConfig(_Stem):
    """No stem: the first stage receives the image."""

    type: Literal["none"] = Field("none", description="Stem kind: none.")

    total_stride: int = 1

    def output_hw(self, hw: tuple[int, int]) -> tuple[int, int]:
        return hw

    def cost(self, ctx: BlockContext) -> C.Cost:
        return C.Cost()

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import no_stem

        return no_stem(self, ctx.in_channels)

    def timm_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        return [{}]

    def transformers_names(self, ctx: BlockContext, layout: str = "") -> list[dict[str, str]]:
        return [{}]


StemConfig = Annotated[_Stem, Variant(STEMS)]
