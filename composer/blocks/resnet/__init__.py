"""ResNet blocks (He et al. 2016), with optional squeeze-excitation (Hu et al. 2018).

- `bottleneck`: 1x1 reduce -> kxk -> 1x1 expand, BatchNorm after each conv, act after the first two
  and after the residual add. The stride sits on the kxk conv ("v1.5") or on the first 1x1 (the
  paper's v1); parameters are the same, MACs are not.
- `basic`: two kxk convs (ResNet-18/34).

SE, when on, gates the residual branch before the add. A block that changes width or resolution
uses a projection shortcut (1x1 conv with the stride + BatchNorm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ...layers.names import PADDING_HELP, Activation, Padding
from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, divisors_near, odd_kernels, register_block
from ..se import SE, SEDefaults

SE_DEFAULTS = SEDefaults(base="out", act="relu", gate="sigmoid")

if TYPE_CHECKING:
    from torch import nn


class _ResNetOptions(BlockConfig):
    kernel: int = Field(3, ge=1, le=31, description="Kernel size of the spatial conv(s) (odd).")
    act: Activation = Field("relu", description="Activation after the inner convs and after the residual add.")
    se: SE = Field(None, description="Squeeze-excitation on the residual branch, from the output width (SE-ResNet: "
                                     "`se: 0.0625`, 1/16; ReLU, sigmoid gate); off when unset.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms (TF ports: 1e-3).")
    padding: Padding = Field("symmetric", description="Padding of the kxk convs: " + PADDING_HELP)

    moved_options = {"se_act": "se: {ratio: 0.0625, act: relu}", "se_gate": "se: {ratio: 0.0625, gate: sigmoid}"}

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return odd_kernels(self, "kernel") + (self.se.check(SE_DEFAULTS) if self.se else [])

    def se_width(self, channels: int) -> int:
        return self.se.width(dict.fromkeys(("in", "out", "hidden"), channels), SE_DEFAULTS)

    def _se_cost(self, channels: int) -> C.Cost:
        return self.se.cost(channels, self.se_width(channels)) if self.se else C.Cost()

    def _se_label(self) -> str:
        return f" {self.se.describe()}" if self.se else ""

    @staticmethod
    def _shortcut_cost(ctx: BlockContext) -> C.Cost:
        if ctx.stride == 1 and ctx.in_channels == ctx.out_channels:
            return C.Cost()
        out = ctx.out_resolution
        return C.conv(ctx.in_channels, ctx.out_channels, 1, out) + C.batchnorm(ctx.out_channels, out[0] * out[1])

    # how many kxk / 1x1 convs the branch has: `branch.conv1`, `branch.bn1`, ... (see module.py)
    convs: ClassVar[int] = 0

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ResNet blocks: conv1/bn1, conv2/bn2[, conv3/bn3], se.fc1/fc2, downsample.0/1."""
        names: CheckpointNames = {}
        for j in range(1, self.convs + 1):
            names[f"branch.conv{j}"], names[f"branch.bn{j}"] = f"conv{j}", f"bn{j}"
        return names | {"branch.se.reduce": "se.fc1", "branch.se.expand": "se.fc2", "shortcut.conv": "downsample.0",
                        "shortcut.bn": "downsample.1"}

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `ResNetBottleNeckLayer` / `ResNetBasicLayer`: `layer.J.convolution`
        and `.normalization` per conv, `shortcut.convolution/normalization` (no SE there)."""
        if layout != "resnet":
            return {}
        names: CheckpointNames = {"shortcut.conv": "shortcut.convolution", "shortcut.bn": "shortcut.normalization"}
        for j in range(self.convs):
            names[f"branch.conv{j + 1}"] = f"layer.{j}.convolution"
            names[f"branch.bn{j + 1}"] = f"layer.{j}.normalization"
        return names


@register_block
class BottleneckConfig(_ResNetOptions):
    """ResNet bottleneck: 1x1 reduce, kxk conv, 1x1 expand, projection shortcut, optional SE."""

    convs = 3

    type: Literal["bottleneck"] = Field("bottleneck", description="Block family: ResNet bottleneck.")
    reduction: int = Field(4, ge=1, le=65536, description="Bottleneck width = output channels / reduction (ResNet: 4).")
    groups: int = Field(1, ge=1, le=65536, description="Groups of the kxk conv (ResNeXt-style); 1 is a plain conv.")
    stride_on: Literal["conv", "reduce"] = Field(
        "conv", description="Which conv carries the stride: the kxk conv (v1.5) or the first 1x1 (the paper's v1).")

    def width(self, ctx: BlockContext) -> int:
        return max(1, ctx.out_channels // self.reduction)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = super().check(ctx)
        if ctx.out_channels % self.reduction:
            out.append(Complaint("channels", f"width {ctx.out_channels} is not divisible by reduction={self.reduction}",
                                 f"nearest valid widths: {divisors_near(ctx.out_channels, self.reduction)}"))
        elif self.width(ctx) % self.groups:
            out.append(Complaint("groups", f"bottleneck width {self.width(ctx)} is not divisible by groups={self.groups}"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        return f"bottleneck k{self.kernel} w{self.width(ctx)}{self._se_label()}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        width, (h, w), out = self.width(ctx), ctx.resolution, ctx.out_resolution
        mid = out if self.stride_on == "reduce" else (h, w)
        n_mid, n_out = mid[0] * mid[1], out[0] * out[1]
        return (C.conv(ctx.in_channels, width, 1, mid) + C.batchnorm(width, n_mid)
                + C.conv(width, width, self.kernel, out, groups=self.groups) + C.batchnorm(width, n_out)
                + C.conv(width, ctx.out_channels, 1, out) + C.batchnorm(ctx.out_channels, n_out)
                + self._se_cost(ctx.out_channels) + self._shortcut_cost(ctx))

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import bottleneck

        return bottleneck(self, ctx)


@register_block
class BasicBlockConfig(_ResNetOptions):
    """ResNet basic block: two kxk convs with BatchNorm, projection shortcut, optional SE."""

    convs = 2

    type: Literal["basic"] = Field("basic", description="Block family: ResNet basic block.")

    def describe(self, ctx: BlockContext) -> str:
        return f"basic k{self.kernel}{self._se_label()}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, out = ctx.out_channels, ctx.out_resolution
        n = out[0] * out[1]
        return (C.conv(ctx.in_channels, c, self.kernel, out) + C.batchnorm(c, n)
                + C.conv(c, c, self.kernel, out) + C.batchnorm(c, n)
                + self._se_cost(c) + self._shortcut_cost(ctx))

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import basic

        return basic(self, ctx)


def __getattr__(name: str):
    """The nn.Module (`ResidualConv`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "ResidualConv":
        from .module import ResidualConv

        return ResidualConv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
