"""ConvNeXt block (Liu et al. 2022).

Data flow: kxk depthwise conv -> LayerNorm -> Linear C->rC -> GELU -> Linear rC->C -> layer scale
-> drop path -> residual. Width and resolution change only between stages, through a
`transition` (LayerNorm + 2x2 conv stride 2 in ConvNeXt).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..layers import Activation, DropPath, Gate, SqueezeExcite, make_act
from . import cost as C
from .base import BlockConfig, BlockContext, CheckpointNames, Complaint, odd_kernels, positive_width, register_block


@register_block
class ConvNeXtConfig(BlockConfig):
    """ConvNeXt block: depthwise conv, LayerNorm, inverted MLP, layer scale."""

    can_downsample = False
    can_change_width = False

    type: Literal["convnext"] = Field("convnext", description="Block family: ConvNeXt.")
    kernel: int = Field(7, ge=1, le=31, description="Kernel size of the depthwise conv (odd).")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="Hidden width of the pointwise MLP = mlp_ratio x channels.")
    act: Activation = Field("gelu", description="Activation inside the MLP.")
    layer_scale: float | None = Field(1e-6, gt=0, le=1, description="Initial layer-scale value; null switches it off.")
    se: float = Field(0.0, ge=0, le=1, description="SE ratio applied after the block's MLP; 0 (default) is off.")
    se_act: Activation = Field("relu", description="Activation inside SE.")
    se_gate: Gate = Field("sigmoid", description="Gate of SE.")
    norm_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the LayerNorm.")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return odd_kernels(self, "kernel") + positive_width("mlp_ratio", ctx.out_channels, self.mlp_ratio, "the MLP width")

    def describe(self, ctx: BlockContext) -> str:
        return f"convnext k{self.kernel}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, (h, w) = ctx.out_channels, ctx.resolution
        hidden, n = int(c * self.mlp_ratio), h * w
        total = (C.conv(c, c, self.kernel, (h, w), groups=c, bias=True) + C.layernorm(c, n)
                 + C.linear(c, hidden, n) + C.linear(hidden, c, n) + C.Cost(c if self.layer_scale else 0))
        if self.se:
            total += C.squeeze_excite(c, max(1, int(c * self.se)))
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        return ConvNeXtBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ConvNeXtBlock (its `conv_mlp` 1x1 convs load as our Linears)."""
        return {"dwconv": "conv_dw", "norm": "norm", "fc1": "mlp.fc1", "fc2": "mlp.fc2", "gamma": "gamma",
                "se.reduce": "se.fc1", "se.expand": "se.fc2"}


class ConvNeXtBlock(nn.Module):
    def __init__(self, config: ConvNeXtConfig, ctx: BlockContext):
        super().__init__()
        c = ctx.out_channels
        hidden = int(c * config.mlp_ratio)
        self.dwconv = nn.Conv2d(c, c, config.kernel, padding=config.kernel // 2, groups=c)
        self.norm = nn.LayerNorm(c, eps=config.norm_eps)
        self.fc1 = nn.Linear(c, hidden)
        self.act = make_act(config.act)
        self.fc2 = nn.Linear(hidden, c)
        scale = config.layer_scale
        self.gamma = nn.Parameter(torch.full((c,), scale)) if scale else None
        self.se = (SqueezeExcite(c, max(1, int(c * config.se)), config.se_act, config.se_gate)
                   if config.se else nn.Identity())
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.fc2(self.act(self.fc1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        y = self.se(y.permute(0, 3, 1, 2))
        return x + self.drop_path(y)
