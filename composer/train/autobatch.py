"""`--batch auto`: the largest per-device batch that fits, from composer's own training-memory
estimate (composer.analysis.memory, a forward pass on meta tensors), before any weight is allocated.

The estimate is built to err on the safe side for what the recipe adds:
- mixed precision (bf16/fp16 autocast): weights, gradients and optimizer state stay float32; the
  activations are taken at float32 (autocast saves half-precision copies of matmul and convolution
  inputs but keeps norms and softmax in float32, so float32 bounds them from above), plus the
  half-precision copies of the weights that autocast makes;
- fused attention: the meta forward runs attention in its math form and counts the attention
  probabilities as saved; fused kernels keep less, so the figure is again an upper bound;
- EMA: one more float32 copy of the weights.
Activations grow linearly with the batch: two estimates (batch 1 and 2) give the fixed part and the
per-image part. On a GPU the choice is then confirmed by a real step, halving on out-of-memory.
"""

from __future__ import annotations

import torch

from ..io.room import device_room
from ..analysis.memory import train_memory
from ..planning.planner import Plan
from .recipe import Recipe

HEADROOM = 0.85  # of the free memory: the allocator's fragmentation and the backward's temporaries


def optimizer_kind(recipe: Recipe) -> str:
    if recipe.optimizer.type == "adamw":
        return "adamw"
    return "momentum" if recipe.optimizer.momentum > 0 else "sgd"


def step_bytes(plan: Plan, recipe: Recipe, batch: int) -> int:
    """Upper bound of the bytes one training step of `recipe` needs at `batch` images per device."""
    m = train_memory(plan, batch=batch, dtype="float32", optimizer=optimizer_kind(recipe),
                     grad_checkpointing=recipe.grad_checkpointing)
    total = m.total
    if recipe.precision != "fp32":
        total += m.weights // 2
    if recipe.ema is not None:
        total += m.weights
    return total


def free_memory(device: torch.device) -> int:
    """Bytes a training step on `device` may take: the same room the build guard sees (composer/io/room.py)."""
    return device_room(device)[0]


def auto_batch(plan: Plan, recipe: Recipe, device: torch.device, limit: int) -> tuple[int, dict]:
    """(per-device batch, the figures behind it). `limit`: no more than this (the data's size)."""
    one, two = step_bytes(plan, recipe, 1), step_bytes(plan, recipe, 2)
    per_image = max(two - one, 1)
    fixed = one - per_image
    budget = int(free_memory(device) * HEADROOM)
    fits = (budget - fixed) // per_image
    batch = int(min(fits, limit))
    if batch >= 16:
        batch -= batch % 8  # multiples of 8 suit tensor cores
    info = {"free_bytes": budget, "fixed_bytes": fixed, "per_image_bytes": per_image, "fits": int(fits), "batch": batch}
    return batch, info
