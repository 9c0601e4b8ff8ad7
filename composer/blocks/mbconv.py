"""MBConv, the inverted residual of MobileNetV2 (Sandler et al. 2018), EfficientNet (Tan & Le 2019)
and CoAtNet (Dai et al. 2021).

Data flow: 1x1 expand -> kxk depthwise -> SE -> 1x1 project, plus a shortcut.

Two norm placements:
- `pre` (CoAtNet): x + project(SE(dw(expand(BN(x))))); the project conv has a bias; a block that
  downsamples or changes width adds Proj(Pool(x)) as its shortcut.
- `post` (MobileNetV2, EfficientNet): BN after every conv, no activation after the project conv
  (linear bottleneck); residual only when stride is 1 and widths match.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..layers import Activation, DropPath, Gate, SqueezeExcite, make_act
from . import cost as C
from .base import BlockConfig, BlockContext, Complaint, odd_kernels, register_block


def _hidden(config: "MBConvConfig", ctx: BlockContext) -> int:
    base = ctx.out_channels if config.expand_from == "out" else ctx.in_channels
    return max(1, round(base * config.expand))


@register_block
class MBConvConfig(BlockConfig):
    """Mobile inverted bottleneck (MBConv) with optional squeeze-excitation."""

    type: Literal["mbconv"] = Field("mbconv", description="Block family: MBConv / inverted residual.")
    expand: float = Field(4.0, gt=0, le=64, description="Expansion ratio t: hidden width = t x base width.")
    expand_from: Literal["in", "out"] = Field(
        "out", description="Base of the hidden width: the block's input (MobileNetV2) or output (CoAtNet) channels.")
    kernel: int = Field(3, ge=1, le=31, description="Kernel size of the depthwise conv (odd).")
    se: float = Field(0.25, ge=0, le=1, description="SE ratio; 0 switches squeeze-excitation off.")
    se_from: Literal["in", "out"] = Field(
        "out", description="Base of the SE width: the block's input (EfficientNet) or output (CoAtNet) channels.")
    se_act: Activation | None = Field(None, description="Activation inside SE; defaults to the block's `act`.")
    se_gate: Gate = Field("sigmoid", description="Gate of SE.")
    act: Activation = Field("gelu", description="Activation after the expand and depthwise convs.")
    norm: Literal["pre", "post"] = Field(
        "pre", description="`pre`: one BatchNorm before the block (CoAtNet); `post`: BatchNorm after each conv (MobileNetV2).")
    stride_on: Literal["expand", "depthwise"] = Field(
        "expand", description="Which conv of a downsampling block carries the stride: the 1x1 expand (CoAtNet paper) or the depthwise conv.")
    pool: Literal["avg", "max"] = Field("max", description="Pooling of the downsampling shortcut (`pre` norm only).")

    @property
    def has_expand_conv(self) -> bool:
        """MobileNetV2 drops the expand conv when t = 1 (post norm); CoAtNet's pre-norm block keeps it."""
        return self.norm == "pre" or not (self.expand == 1 and self.expand_from == "in")

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = odd_kernels(self, "kernel")
        if self.stride_on == "expand" and not self.has_expand_conv and ctx.stride > 1:
            out.append(Complaint("stride_on", "a block with expansion 1 has no expand conv to carry the stride",
                                 "use `stride_on: depthwise`"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        se = f" se{self.se:g}" if self.se else ""
        return f"mbconv k{self.kernel} e{self.expand:g}{se}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c_out, s = ctx.in_channels, ctx.out_channels, ctx.stride
        (h, w), out = ctx.resolution, ctx.out_resolution
        pre = self.norm == "pre"
        hidden = _hidden(self, ctx) if self.has_expand_conv else c_in
        total = C.batchnorm(c_in, h * w) if pre else C.Cost()
        grid = (h, w)
        if self.has_expand_conv:
            if self.stride_on == "expand":
                grid = out
            total += C.conv(c_in, hidden, 1, grid) + C.batchnorm(hidden, grid[0] * grid[1])
        total += C.conv(hidden, hidden, self.kernel, out, groups=hidden) + C.batchnorm(hidden, out[0] * out[1])
        if self.se > 0:
            se_base = c_out if self.se_from == "out" else c_in
            total += C.squeeze_excite(hidden, max(1, int(se_base * self.se)))
        total += C.conv(hidden, c_out, 1, out, bias=pre)
        if not pre:
            total += C.batchnorm(c_out, out[0] * out[1])
        if pre and (s > 1 or c_in != c_out):
            total += C.conv(c_in, c_out, 1, out, bias=True)
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        return MBConv(self, ctx)


class MBConv(nn.Module):
    def __init__(self, config: MBConvConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        hidden = _hidden(config, ctx)
        pre = config.norm == "pre"
        expand_stride = stride if config.stride_on == "expand" else 1
        dw_stride = stride if config.stride_on == "depthwise" else 1
        has_expand = config.has_expand_conv
        if not has_expand:
            hidden = c_in

        self.pre_norm = nn.BatchNorm2d(c_in) if pre else nn.Identity()
        if has_expand:
            self.expand = nn.Sequential(
                nn.Conv2d(c_in, hidden, 1, expand_stride, bias=False),
                nn.BatchNorm2d(hidden),
                make_act(config.act),
            )
        else:
            self.expand = nn.Identity()
        k = config.kernel
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, k, dw_stride, k // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            make_act(config.act),
        )
        if config.se > 0:
            se_base = c_out if config.se_from == "out" else c_in
            self.se = SqueezeExcite(hidden, max(1, int(se_base * config.se)), config.se_act or config.act,
                                    config.se_gate)
        else:
            self.se = nn.Identity()
        self.project = nn.Conv2d(hidden, c_out, 1, bias=pre)
        self.project_norm = nn.Identity() if pre else nn.BatchNorm2d(c_out)
        self.drop_path = DropPath(ctx.drop_path)

        self.residual = True
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or c_in != c_out:
            if pre:
                pool = nn.MaxPool2d if config.pool == "max" else nn.AvgPool2d
                self.shortcut = nn.Sequential(
                    pool(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                    nn.Conv2d(c_in, c_out, 1, bias=True),
                )
            else:
                self.residual = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.pre_norm(x))
        y = self.project_norm(self.project(self.se(self.depthwise(y))))
        if not self.residual:
            return y
        return self.shortcut(x) + self.drop_path(y)
