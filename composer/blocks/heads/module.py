"""The head's nn.Module; its configs, checks and costs are in the package (`__init__.py`)."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ...layers import LayerNorm2d, make_act
from . import PoolHeadConfig, TokenHeadConfig


class Head(nn.Module):
    """Takes a (B, C, H, W) map (pool head) or (B, N, C) tokens with the class token first.

    `global_pool` says how positions become one vector, as timm spells it: "avg" (or "max") over the
    map for a pool head, "token" (the class token) or "avg" (of the grid tokens) for a token head,
    or "" for none: then norm, pre-logits and classifier apply at every position, and (B, classes,
    H, W) maps or (B, N, classes) tokens come out. `reset` changes the classifier and the pooling."""

    def __init__(self, config: PoolHeadConfig | TokenHeadConfig, channels: int, classes: int):
        super().__init__()
        self.use_token = config.type == "token"
        conv = getattr(config, "conv", None)
        if conv:
            self.conv = nn.Sequential(OrderedDict(conv=nn.Conv2d(channels, conv.channels, 1, bias=False),
                                                  norm=nn.BatchNorm2d(conv.channels, eps=conv.norm_eps),
                                                  act=make_act(conv.act)))
            channels = conv.channels
        else:
            self.conv = nn.Identity()
        self.map_norm = nn.Identity()
        if config.norm == "layernorm" and getattr(config, "norm_on", "pooled") == "map":
            self.map_norm, self.norm = LayerNorm2d(channels, eps=config.norm_eps), nn.Identity()
        elif config.norm == "layernorm":
            self.norm = nn.LayerNorm(channels, eps=config.norm_eps)
        elif config.norm == "batchnorm":
            self.norm = nn.BatchNorm1d(channels, eps=config.norm_eps)
        else:
            self.norm = nn.Identity()
        if config.hidden:
            self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(channels, config.hidden), act=make_act(config.act)))
            if config.hidden_norm:
                self.pre_logits.add_module("norm", nn.LayerNorm(config.hidden, eps=config.norm_eps))
            channels = config.hidden
        else:
            self.pre_logits = nn.Identity()
        self.num_features = channels
        self.global_pool = "token" if self.use_token else "avg"
        self.prefix = 1  # class tokens in front of the grid tokens (set by the network)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(channels, classes) if classes > 0 else nn.Identity()

    def reset(self, classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            allowed = ("token", "avg", "") if self.use_token else ("avg", "max", "")
            if global_pool not in allowed:
                raise ValueError(f"global_pool: expected one of {', '.join(map(repr, allowed))} for this "
                                 f"{'token' if self.use_token else 'pool'} head, got {global_pool!r}")
            self.global_pool = global_pool
        old = next(iter(self.parameters()), None)
        if classes > 0:
            fc = nn.Linear(self.num_features, classes, device=old.device if old is not None else None,
                           dtype=old.dtype if old is not None else None)
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
            self.fc = fc
        else:
            self.fc = nn.Identity()

    def position_norm(self) -> tuple[nn.Module, int] | None:
        """The norm this head applies at each position (a token head's, or `norm_on: map`) and its
        width; None when its norm works on pooled features only (or there is none)."""
        for norm in (self.map_norm, self.norm if self.use_token else None):
            if isinstance(norm, nn.LayerNorm):
                return norm, norm.normalized_shape[0]
        return None

    def drop_norm(self) -> None:
        self.map_norm, self.norm = nn.Identity(), nn.Identity()

    def strip(self, width: int, keep_norm: bool) -> None:
        """No pooling, feature conv, pre-logits or classifier: features of `width` pass through, normed
        at each position by this head's norm if `keep_norm` and it has one of that width."""
        kept = self.position_norm() if keep_norm else None
        self.conv, self.map_norm, self.pre_logits, self.fc = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
        self.norm = nn.Identity()
        if kept is not None and kept[1] == width:  # a map norm stays on the map, a token norm on the tokens
            if isinstance(kept[0], LayerNorm2d):
                self.map_norm = kept[0]
            else:
                self.norm = kept[0]
        self.global_pool = ""
        self.num_features = width

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "":
            return self._every_position(x, pre_logits)
        if self.use_token:
            x = x[:, 0] if self.global_pool == "token" else x[:, self.prefix:].mean(1)  # (B, C)
        else:
            x = self.map_norm(self.conv(x))
            x = x.amax((2, 3)) if self.global_pool == "max" else x.mean((2, 3))  # (B, C)
        x = self.pre_logits(self.norm(x))
        return x if pre_logits else self.fc(self.dropout(x))

    def _every_position(self, x: torch.Tensor, pre_logits: bool) -> torch.Tensor:
        """The head without pooling: (B, C, H, W) -> (B, C', H, W), (B, N, C) -> (B, N, C')."""
        is_map = x.dim() == 4
        b, n, h, w = x.shape[0], 1, 1, 1
        if is_map:
            x = self.map_norm(self.conv(x))
            h, w = x.shape[2], x.shape[3]
            y = x.permute(0, 2, 3, 1).reshape(b * h * w, -1)
        else:
            n = x.shape[1]
            y = x.reshape(b * n, -1)
        y = self.pre_logits(self.norm(y))  # (positions, C)
        if not pre_logits:
            y = self.fc(self.dropout(y))
        if is_map:
            return y.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        return y.reshape(b, n, -1)
