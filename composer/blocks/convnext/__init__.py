"""ConvNeXt block (Liu et al. 2022).

Data flow: kxk depthwise conv -> LayerNorm -> Linear C->rC -> GELU -> [GRN] -> Linear rC->C -> layer
scale -> drop path -> residual. `grn: true` is ConvNeXt V2's block (Woo et al. 2023): a global response
norm on the MLP's hidden features, usually without layer scale. Width and resolution change only between stages, through a
`transition` (LayerNorm + 2x2 conv stride 2 in ConvNeXt).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from ...layers.names import Activation
from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, odd_kernels, positive_width, register_block
from ..se import SE, SEDefaults

SE_DEFAULTS = SEDefaults(base="out", act="relu", gate="sigmoid")

if TYPE_CHECKING:
    from torch import nn


@register_block
class ConvNeXtConfig(BlockConfig):
    """ConvNeXt block: depthwise conv, LayerNorm, inverted MLP, layer scale."""

    can_downsample = False
    can_change_width = False

    type: Literal["convnext"] = Field("convnext", description="Block family: ConvNeXt.")
    kernel: int = Field(7, ge=1, le=31, description="Kernel size of the depthwise conv (odd).")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="Hidden width of the pointwise MLP = mlp_ratio x channels.")
    act: Activation = Field("gelu", description="Activation inside the MLP.")
    grn: bool = Field(False, description="Global response norm after the MLP's activation (ConvNeXt V2).")
    layer_scale: float | None = Field(1e-6, gt=0, le=1, description="Initial layer-scale value; null switches it off.")
    se: SE = Field(None, description="Squeeze-excitation after the block's MLP (ReLU, sigmoid gate); off when unset.")
    norm_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the LayerNorm.")

    moved_options = {"se_act": "se: {ratio: 0.25, act: relu}", "se_gate": "se: {ratio: 0.25, gate: sigmoid}"}

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = odd_kernels(self, "kernel") + positive_width("mlp_ratio", ctx.out_channels, self.mlp_ratio, "the MLP width")
        return out + (self.se.check(SE_DEFAULTS) if self.se else [])

    def se_width(self, ctx: BlockContext) -> int:
        return self.se.width(dict.fromkeys(("in", "out", "hidden"), ctx.out_channels), SE_DEFAULTS)

    def describe(self, ctx: BlockContext) -> str:
        return f"convnext k{self.kernel}" + (" grn" if self.grn else "")

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, (h, w) = ctx.out_channels, ctx.resolution
        hidden, n = int(c * self.mlp_ratio), h * w
        total = (C.conv(c, c, self.kernel, (h, w), groups=c, bias=True) + C.layernorm(c, n)
                 + C.linear(c, hidden, n) + C.linear(hidden, c, n) + C.Cost(c if self.layer_scale else 0)
                 + C.Cost(2 * hidden if self.grn else 0))
        return total + (self.se.cost(c, self.se_width(ctx)) if self.se else C.Cost())

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import ConvNeXtBlock

        return ConvNeXtBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ConvNeXtBlock (its `conv_mlp` 1x1 convs load as our Linears)."""
        return {"dwconv": "conv_dw", "norm": "norm", "fc1": "mlp.fc1", "fc2": "mlp.fc2", "gamma": "gamma",
                "grn": "mlp.grn",
                "se.reduce": "se.fc1", "se.expand": "se.fc2"}

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `ConvNextLayer` (its pointwise Linears are ours)."""
        if layout != "convnext":
            return {}
        return {"dwconv": "dwconv", "norm": "layernorm", "fc1": "pwconv1", "fc2": "pwconv2",
                "gamma": "layer_scale_parameter"}


def __getattr__(name: str):
    """The nn.Module (`ConvNeXtBlock`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "ConvNeXtBlock":
        from .module import ConvNeXtBlock

        return ConvNeXtBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
