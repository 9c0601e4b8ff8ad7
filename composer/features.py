"""features: a built network as a backbone for dense prediction (detection, segmentation).

- `FeatureInfo`: per stage its width (`num_chs`), its reduction of the input (`reduction`, the
  product of the strides up to it) and its module name, spelled as timm spells them.
- `FeatureNet` (`composer.build(bp, features_only=True, out_indices=(1, 2, 3))`): stem and the
  stages up to the last one asked for; returns a list of (B, C, H, W) maps.
- `forward_intermediates`: maps of chosen stages or blocks along a normal forward pass.

Token outputs are turned back into maps on their grid; class tokens are dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

if TYPE_CHECKING:
    from .build import ComposedNet, Stage
    from .plan import Plan


class InputSizeError(ValueError):
    """An input that the network cannot take (wrong channels, or a size a fixed token grid cannot take)."""


def fixed_size_reason(plan: Plan) -> str | None:
    """Why the network only takes the input size it was built for, or None when any size works.

    Token stages are built for one grid: position embeddings, relative position tables, ConViT's
    offsets, CvT's and LocalViT's token maps all have its size. Conv stages take any size."""
    for sp in plan.stages:
        if sp.data_format == "tokens":
            h, w = sp.block_in_resolution
            return f"stage {sp.index + 1} ({sp.label}) works on a fixed {h}x{w} token grid"
    return None


def check_input(x: torch.Tensor, input_shape: tuple[int, int, int], fixed_size: str | None) -> None:
    """Refuse an input the network cannot take, before any work. Shapes are static under tracing, so
    this adds no graph break (torch.compile and torch.export turn it into a guard)."""
    c, h, w = input_shape
    if x.dim() != 4 or x.shape[1] != c:
        raise InputSizeError(f"expected an input of shape (batch, {c}, height, width), got {tuple(x.shape)}")
    if fixed_size is not None and (x.shape[2] != h or x.shape[3] != w):
        raise InputSizeError(
            f"the network was built for {h}x{w} inputs and cannot take {x.shape[2]}x{x.shape[3]}: {fixed_size}; "
            f"build it for that size (`--set input.size=N`, or composer.load(..., overrides={{'input.size': N}}))")


class FeatureInfo(list):
    """One dict per stage: `num_chs`, `reduction`, `module` (as in timm), and `stage` (its index)."""

    @classmethod
    def from_plan(cls, plan: Plan) -> FeatureInfo:
        info, reduction = cls(), plan.stem.total_stride
        for sp in plan.stages:
            reduction *= sp.stride
            info.append({"num_chs": sp.out_channels, "reduction": reduction, "module": f"stages.{sp.index}",
                         "stage": sp.index})
        return info

    def select(self, indices: Sequence[int]) -> FeatureInfo:
        return FeatureInfo(self[i] for i in indices)

    def channels(self) -> list[int]:
        return [d["num_chs"] for d in self]

    def reduction(self) -> list[int]:
        return [d["reduction"] for d in self]

    def module_name(self) -> list[str]:
        return [d["module"] for d in self]


def resolve_indices(indices: int | Sequence[int] | None, count: int, what: str) -> tuple[int, ...]:
    """timm's convention: None takes all, an int n the last n, a sequence those (negative from the end)."""
    if indices is None:
        return tuple(range(count))
    if isinstance(indices, int):
        if not 1 <= indices <= count:
            raise ValueError(f"{what}={indices}: asks for the last {indices} of {count}")
        return tuple(range(count - indices, count))
    out = []
    for i in indices:
        if not -count <= i < count:
            raise ValueError(f"{what}: index {i} is out of range; there are {count} (0 to {count - 1}, or negative)")
        out.append(i % count)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"{what}: give distinct indices, got {list(indices)}")
    return tuple(sorted(out))


def to_map(x: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Tokens (B, prefix + H*W, C) -> (B, C, H, W) without the class tokens; a map passes unchanged."""
    if x.dim() == 4:
        return x
    return x[:, prefix:].transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


def forward_intermediates(net: ComposedNet, x: torch.Tensor, indices: int | Sequence[int] | None = None, *,
                          blocks: bool = False, intermediates_only: bool = False, stop_early: bool = False):
    """Maps of chosen stages (or blocks, numbered across the network, with `blocks=True`).

    Returns (final features, [maps]) like timm, or only the maps with `intermediates_only`; with
    `stop_early` the pass ends at the last index asked for (the final features are then those)."""
    check_input(x, net.input_shape, net.fixed_size)
    stages: list[Stage] = list(net.stages)
    count = sum(len(s.blocks) for s in stages) if blocks else len(stages)
    take = resolve_indices(indices, count, "indices")
    last = take[-1]
    maps: list[torch.Tensor] = []
    x = net.stem(x)
    n = 0  # index of the stage, or of the block, just run
    for stage in stages:
        if blocks:
            x = stage.enter(x)
            for j, block in enumerate(stage.blocks):
                x = block(x)
                if n in take:
                    maps.append(to_map(x, stage.prefix, stage.block_grids[j]))
                if stop_early and n == last:
                    return maps if intermediates_only else (x, maps)
                n += 1
            x = stage.leave(x)
        else:
            x = stage(x)
            if n in take:
                maps.append(to_map(x, stage.prefix, stage.grid))
            if stop_early and n == last:
                break
            n += 1
    if intermediates_only:
        return maps
    return x, maps


class FeatureNet(nn.Module):
    """A backbone: stem and the stages up to the last of `out_indices`; forward returns a list of
    (B, C, H, W) maps, described by `feature_info`. Its state_dict keys are the full network's
    (`stem.*`, `stages.N.*`), so a saved network's weights load into it with strict=False."""

    def __init__(self, net: ComposedNet, out_indices: int | Sequence[int] | None = None):
        super().__init__()
        self.out_indices = resolve_indices(out_indices, len(net.stages), "out_indices")
        self.stem = net.stem
        self.stages = net.stages[: self.out_indices[-1] + 1]
        self.feature_info = net.feature_info.select(self.out_indices)
        self.input_shape = net.input_shape
        self.fixed_size = net.fixed_size
        self.name = net.name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_input(x, self.input_shape, self.fixed_size)
        x = self.stem(x)
        maps = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                maps.append(to_map(x, stage.prefix, stage.grid))
        return maps
