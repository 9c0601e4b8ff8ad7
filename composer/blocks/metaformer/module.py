"""The MetaFormer block's nn.Module; its config, checks and cost are in the package (`__init__.py`)."""

from __future__ import annotations

import torch
from torch import nn

from ...layers import DropPath
from ...layers.metaformer import MetaFormerMlp, Scale, metaformer_norm
from ..base import BlockContext
from . import MetaFormerConfig


class MetaFormerBlock(nn.Module):
    """(B, C, H, W) maps for conv mixers, (B, N, C) tokens for attention."""

    def __init__(self, config: MetaFormerConfig, ctx: BlockContext):
        super().__init__()
        c, on_map = ctx.out_channels, config.mixer.on_map

        def scale(init: float | None) -> nn.Module:
            return nn.Identity() if init is None else Scale(c, init, on_map)

        self.norm1 = metaformer_norm(config.norm, c, config.norm_eps, config.norm_bias, on_map)
        self.mixer = config.mixer.build(ctx)
        self.ls1, self.rs1 = scale(config.layer_scale), scale(config.res_scale)
        self.norm2 = metaformer_norm(config.norm, c, config.norm_eps, config.norm_bias, on_map)
        self.mlp = MetaFormerMlp(c, config.hidden(ctx), config.act, config.mlp_bias, on_map)
        self.ls2, self.rs2 = scale(config.layer_scale), scale(config.res_scale)
        self.drop_path = DropPath(ctx.drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.rs1(x) + self.ls1(self.drop_path(self.mixer(self.norm1(x))))
        return self.rs2(x) + self.ls2(self.drop_path(self.mlp(self.norm2(x))))
