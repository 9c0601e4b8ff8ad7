"""timm's layout -> ours: every part of the plan says how timm names its tensors (the block families'
`timm_names`, the stems', heads' and transitions'); here they are put together with timm's
numberings of blocks (the mechanism is composer/weights/layouts.py).
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..planning.planner import Plan
from .layouts import Rule, Spelling, convert, hits, rules

TIMM = Spelling(
    name="timm",
    method="timm_names",
    block_layouts={
        "resnet": lambda s, i, g: f"layer{s + 1}.{i}",
        "efficientnet": lambda s, i, g: f"blocks.{s}.{i}",
        "stages": lambda s, i, g: f"stages.{s}.blocks.{i}",
        "vit": lambda s, i, g: f"blocks.{g}",
        "swin": lambda s, i, g: f"layers.{s}.blocks.{i}",
        "byob": lambda s, i, g: f"stages.{s}.{i}",
    },
    stage_names=lambda s: [{"cls_token": "cls_token", "pos_embed": "pos_embed"}],
)
BLOCK_LAYOUTS = TIMM.block_layouts


def timm_rules(plan: Plan, own_keys: Iterable[str], available: set[str]) -> dict[str, Rule]:
    """For each of our state-dict keys, timm's key and conversion (keys timm has no name for are absent)."""
    return rules(plan, own_keys, available, TIMM)


def from_timm(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]
              ) -> tuple[dict[str, torch.Tensor], set[str]]:
    """timm-named tensors -> ours (converted where a family says how); also the timm keys used."""
    return convert(plan, own_keys, tensors, TIMM)


def timm_hits(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]) -> int:
    """How many of our tensors the checkpoint holds under timm's names."""
    return hits(plan, own_keys, tensors, TIMM)
