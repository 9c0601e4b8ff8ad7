"""The MBConv nn.Module; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...layers import DropPath, conv2d, make_act
from ..base import BlockContext
from . import MBConvConfig, _hidden


class MBConv(nn.Module):
    def __init__(self, config: MBConvConfig, ctx: BlockContext):
        super().__init__()
        c_in, c_out, stride = ctx.in_channels, ctx.out_channels, ctx.stride
        hidden = _hidden(config, ctx)
        pre, norm = config.pre, config.norm
        expand_stride = stride if config.stride_on == "expand" else 1
        dw_stride = stride if config.stride_on == "depthwise" else 1
        has_expand = config.has_expand_conv
        if not has_expand:
            hidden = c_in
        pool = nn.MaxPool2d if pre and norm.pool == "max" else nn.AvgPool2d
        eps = config.norm_eps

        self.pre_norm = nn.BatchNorm2d(c_in, eps=eps) if pre else nn.Identity()
        self.pre_act = make_act(config.act) if pre and norm.act else nn.Identity()
        self.down = pool(stride, stride, ceil_mode=True) if config.stride_on == "pool" and stride > 1 else nn.Identity()
        if has_expand:
            self.expand = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(c_in, hidden, 1, expand_stride, bias=False),
                norm=nn.BatchNorm2d(hidden, eps=eps),
                act=make_act(config.act),
            ))
        else:
            self.expand = nn.Identity()
        k = config.kernel
        self.depthwise = nn.Sequential(OrderedDict(
            conv=conv2d(hidden, hidden, k, dw_stride, groups=hidden, padding=config.padding),
            norm=nn.BatchNorm2d(hidden, eps=eps),
            act=make_act(config.act),
        ))
        se = (config.se.build(hidden, config.se_width(ctx, hidden), config.se_defaults) if config.se
              else nn.Identity())
        early = config.se is not None and config.se.at == "before_norm"
        self.se_early = se if early else nn.Identity()  # between the depthwise conv and its norm
        self.se = nn.Identity() if early else se
        self.project = nn.Conv2d(hidden, c_out, 1, bias=pre and norm.project_bias)
        self.project_norm = nn.Identity() if pre else nn.BatchNorm2d(c_out, eps=eps)
        self.drop_path = DropPath(ctx.drop_path)

        self.residual = True
        self.shortcut: nn.Module = nn.Identity()
        if stride > 1 or c_in != c_out:
            if pre:  # pool to the new grid, project only to a new width (as the reference builds do)
                self.shortcut = nn.Sequential(OrderedDict(
                    pool=pool(stride, stride, ceil_mode=True) if stride > 1 else nn.Identity(),
                    proj=nn.Conv2d(c_in, c_out, 1, bias=norm.shortcut_bias) if c_in != c_out else nn.Identity(),
                ))
            else:
                self.residual = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.down(self.pre_act(self.pre_norm(x))))
        y = self.se_early(self.depthwise.conv(y))  # conv, (SE,) norm, act
        y = self.se(self.depthwise.act(self.depthwise.norm(y)))
        y = self.project_norm(self.project(y))
        if not self.residual:
            return y
        return self.shortcut(x) + self.drop_path(y)
