"""Batched augmentation on the training device, with kornia.

uint8 batch (B, 3, H, W) -> float in [0, 1] -> RandomResizedCrop -> flip -> RandAugment or
TrivialAugment -> colour jitter -> normalise -> random erasing -> mixup / CutMix (soft targets as
(label, paired label, weight)). kornia draws from torch's global RNG, which checkpoints carry, so a
resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import torch
from torch import nn

from .extras import require
from .recipe import AugmentConfig


class Normalize(nn.Module):
    """uint8 or [0, 1] images -> normalised float."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x - self.mean) / self.std


class TrainAugment(nn.Module):
    """The training augmentation of a recipe, for images of `size` x `size`."""

    def __init__(self, cfg: AugmentConfig, size: int):
        super().__init__()
        K = require("kornia.augmentation")
        auto = require("kornia.augmentation.auto")
        ops: list[nn.Module] = []
        if cfg.crop is not None:
            ops.append(K.RandomResizedCrop((size, size), scale=cfg.crop.scale, ratio=cfg.crop.ratio))
        if cfg.hflip > 0:
            ops.append(K.RandomHorizontalFlip(p=cfg.hflip))
        if cfg.auto is not None:
            ops.append(auto.RandAugment(n=cfg.auto.n, m=cfg.auto.m) if cfg.auto.type == "randaugment"
                       else auto.TrivialAugment())
        if cfg.color_jitter > 0:
            j = cfg.color_jitter
            ops.append(K.ColorJitter(brightness=j, contrast=j, saturation=j, p=0.8))
        self.geometric = nn.Sequential(*ops)
        self.normalize = Normalize(cfg.mean, cfg.std)
        self.erasing = K.RandomErasing(p=cfg.erasing) if cfg.erasing > 0 else None
        self.mixup = K.RandomMixUpV2(lambda_val=cfg.mixup.lam, p=cfg.mixup.p, data_keys=["input", "class"]) if cfg.mixup else None
        self.cutmix = (K.RandomCutMixV2(beta=cfg.cutmix.beta, p=cfg.cutmix.p, use_correct_lambda=True,
                                        data_keys=["input", "class"]) if cfg.cutmix else None)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (images, targets): targets are class indices (B,), or (B, 3) rows of
        (label, paired label, weight of the paired label) after mixup / CutMix."""
        x = images.float().div_(255)
        x = self.geometric(x).clamp_(0, 1)
        x = self.normalize(x)
        if self.erasing is not None:
            x = self.erasing(x)
        mixers = [m for m in (self.mixup, self.cutmix) if m is not None]
        if mixers:
            mixer = mixers[0] if len(mixers) == 1 else mixers[int(torch.randint(2, ()).item())]
            x, targets = mixer(x, labels)
            return x, targets.reshape(-1, labels.shape[0], 3)[-1]
        return x, labels


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Cross-entropy against class indices, or against mixed pairs (label, paired label, weight)."""
    F = torch.nn.functional
    if targets.ndim == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    a, b, lam = targets[:, 0].long(), targets[:, 1].long(), targets[:, 2].to(logits.dtype)
    la = F.cross_entropy(logits, a, label_smoothing=label_smoothing, reduction="none")
    lb = F.cross_entropy(logits, b, label_smoothing=label_smoothing, reduction="none")
    return ((1 - lam) * la + lam * lb).mean()
