"""Batched augmentation on the training device, with kornia.

uint8 batch (B, C, H, W) -> float in [0, 1] -> [RandomResizedCrop -> flip] -> RandAugment or
TrivialAugment -> colour jitter -> normalise -> random erasing -> mixup / CutMix (soft targets as
(label, paired label, weight)). The training loop has the crop and flip done while decoding
(`data.TrainDataset`: one Pillow resampling of the crop box, cheaper per core than resizing the
image and cropping the batch) and builds this with `cropped=True`. kornia draws from torch's
global RNG, which checkpoints carry, so a resumed run augments exactly as an uninterrupted one.

1-channel (grayscale) networks: the recipe's mean and std are per RGB channel; the one channel's
are the luma-weighted sums of them (the weights of Pillow's RGB -> L conversion, which decoded the
images). Augmentation runs on the grey image repeated over three channels, so colour operations
behave as they do on RGB, and the result is taken back to one channel with the same weights.
"""

from __future__ import annotations

import torch
from torch import nn

from .data import LUMA, _pair
from .extras import require
from .recipe import AugmentConfig


def channel_stats(mean, std, channels: int) -> tuple[list[float], list[float]]:
    """The recipe's RGB mean and std for a network of `channels` input channels."""
    if channels == 3:
        return list(mean), list(std)
    if channels == 1:
        return [sum(w * m for w, m in zip(LUMA, mean))], [sum(w * s for w, s in zip(LUMA, std))]
    raise ValueError(f"images decode to 1 (grayscale) or 3 (RGB) channels, not {channels}")


class Normalize(nn.Module):
    """uint8 or [0, 1] images -> normalised float (RGB, or grey for `channels` 1)."""

    def __init__(self, mean, std, channels: int = 3):
        super().__init__()
        mean, std = channel_stats(mean, std, channels)
        self.register_buffer("mean", torch.tensor(mean).view(1, channels, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, channels, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:  # two passes over a new float tensor, in place
            return x.float().sub_(self.mean * 255).div_(self.std * 255)
        return (x - self.mean) / self.std


class TrainAugment(nn.Module):
    """The training augmentation of a recipe, for images of `size` (an int for a square, or
    (height, width)) with `channels` 3 (RGB) or 1 (grey)."""

    def __init__(self, cfg: AugmentConfig, size, channels: int = 3, cropped: bool = False):
        """`cropped`: the images come cropped and flipped already (`data.TrainDataset` does both
        while decoding), so only the photometric operations run here."""
        super().__init__()
        size = _pair(size)
        self.channels = channels
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        K = require("kornia.augmentation")
        auto = require("kornia.augmentation.auto")
        ops: list[nn.Module] = []
        if cfg.crop is not None and not cropped:
            ops.append(K.RandomResizedCrop(size, scale=cfg.crop.scale, ratio=cfg.crop.ratio))
        if cfg.hflip > 0 and not cropped:
            ops.append(K.RandomHorizontalFlip(p=cfg.hflip))
        if cfg.auto is not None:
            ops.append(auto.RandAugment(n=cfg.auto.n, m=cfg.auto.m) if cfg.auto.type == "randaugment"
                       else auto.TrivialAugment())
        if cfg.color_jitter > 0:
            j = cfg.color_jitter
            ops.append(K.ColorJitter(brightness=j, contrast=j, saturation=j, p=0.8))
        self.geometric = nn.Sequential(*ops)
        self.normalize = Normalize(cfg.mean, cfg.std, channels)
        self.erasing = K.RandomErasing(p=cfg.erasing) if cfg.erasing > 0 else None
        self.mixup = K.RandomMixUpV2(lambda_val=cfg.mixup.lam, p=cfg.mixup.p, data_keys=["input", "class"]) if cfg.mixup else None
        self.cutmix = (K.RandomCutMixV2(beta=cfg.cutmix.beta, p=cfg.cutmix.p, use_correct_lambda=True,
                                        data_keys=["input", "class"]) if cfg.cutmix else None)

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (images, targets): targets are class indices (B,), or (B, 3) rows of
        (label, paired label, weight of the paired label) after mixup / CutMix."""
        if len(self.geometric):
            x = images.float().div_(255)
            if self.channels == 1:
                x = x.expand(-1, 3, -1, -1)
            x = self.geometric(x).clamp_(0, 1)
            if self.channels == 1:
                x = (x * self.luma).sum(1, keepdim=True)
            x = self.normalize(x)
        else:  # cropped and flipped while decoding, nothing photometric: normalise the uint8 batch
            x = self.normalize(images)
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
