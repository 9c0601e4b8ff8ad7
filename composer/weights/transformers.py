"""Hugging Face transformers' layout -> ours: the state-dict names of `CvtForImageClassification`,
`ConvNextForImageClassification`, `ViTForImageClassification`, `ResNetForImageClassification`,
`MobileNetV2ForImageClassification` and `EfficientNetForImageClassification`.

Every part of the plan says how transformers names its tensors (the block families'
`transformers_names`, next to their `timm_names`, and the stems', heads' and transitions'); here
they are put together with transformers' numberings of blocks (the mechanism is
composer/weights/layouts.py). transformers' MobileNetV2 and EfficientNet are ports of Google's
TensorFlow models (TF "SAME" padding, BatchNorm eps 1e-3): their checkpoints fit the
`blueprints/timm/tf_*` blueprints.
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..planning.planner import Plan
from .layouts import Spelling, convert, hits

TRANSFORMERS = Spelling(
    name="transformers",
    method="transformers_names",
    block_layouts={
        "cvt": lambda s, i, g: f"cvt.encoder.stages.{s}.layers.{i}",
        "vit": lambda s, i, g: f"vit.encoder.layer.{g}",  # as published on the hub
        "vit_layers": lambda s, i, g: f"vit.layers.{g}",  # transformers 5's own state dicts
        "convnext": lambda s, i, g: f"convnext.encoder.stages.{s}.layers.{i}",
        "resnet": lambda s, i, g: f"resnet.encoder.stages.{s}.layers.{i}",
        # the first inverted residual (no expand conv) is part of MobileNetV2's stem
        "mobilenet_v2": lambda s, i, g: "mobilenet_v2.conv_stem" if g == 0 else f"mobilenet_v2.layer.{g - 1}",
        "efficientnet": lambda s, i, g: f"efficientnet.encoder.blocks.{g}",
    },
    stage_names=lambda s: [
        {"cls_token": f"cvt.encoder.stages.{s}.cls_token"},
        {"cls_token": "vit.embeddings.cls_token", "pos_embed": "vit.embeddings.position_embeddings"}],
)


def from_transformers(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]
                      ) -> tuple[dict[str, torch.Tensor], set[str]]:
    """transformers-named tensors -> ours (converted where a family says how); also the keys used."""
    return convert(plan, own_keys, tensors, TRANSFORMERS)


def transformers_hits(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]) -> int:
    """How many of our tensors the checkpoint holds under transformers' names."""
    return hits(plan, own_keys, tensors, TRANSFORMERS)
