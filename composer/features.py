"""features: a built network as a backbone for dense prediction (detection, segmentation), spelled as
in timm.

Feature levels follow one rule: **the last map at each resolution**. Walking the network in order
(the stem's map before a final pooling layer, the stem's output, then each stage's output), a map
is a level when the next one is at a coarser resolution or it is the last. A network that works at
one resolution throughout (an isotropic ViT, ConViT, LocalViT) has instead one level per block.
This gives timm's levels for its same-named models: ResNet's stem activation (reduction 2) and its
4 stages; EfficientNet's and MobileNetV2's last block before each reduction; ConvNeXt's 4 stages;
CoAtNet's stem and 4 stages; ViT's 12 blocks.

- `FeatureInfo`: per level its width (`num_chs`), its reduction of the input (`reduction`, the
  product of the strides up to it) and its module name (`module`: where its map comes out).
- `FeatureNet` (`composer.build(bp, features_only=True, out_indices=(1, 2, 3))`): the network up
  to the last level asked for; returns a list of (B, C, H, W) maps.
- `forward_intermediates`: maps of chosen levels (or of blocks) along a normal forward pass, with
  timm's keywords (`indices`, `norm`, `stop_early`, `output_fmt`, `intermediates_only`).

Token outputs are turned back into maps on their grid; class tokens are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import torch
from torch import nn

from .errors import ComposerError

if TYPE_CHECKING:
    from .build import ComposedNet, Stage
    from .plan import Plan


class InputSizeError(ComposerError, ValueError):
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


def _shape_text(x: torch.Tensor) -> str:
    return "(" + ", ".join([str(n) for n in x.shape]) + ")"


def check_input(x: torch.Tensor, input_shape: tuple[int, int, int], fixed_size: Optional[str]) -> torch.Tensor:
    """Refuse an input the network cannot take, before any work; returns the input.

    Shapes are static under tracing, so this adds no graph break (torch.compile and torch.export
    turn it into a guard); torch.fx keeps it as one call (a leaf), and TorchScript compiles it, so
    a scripted or traced network refuses the same inputs with the same message."""
    c, h, w = input_shape
    if x.dim() != 4 or x.shape[1] != c:
        raise InputSizeError(f"expected an input of shape (batch, {c}, height, width), got {_shape_text(x)}")
    if fixed_size is not None and (x.shape[2] != h or x.shape[3] != w):
        raise InputSizeError(
            f"the network was built for {h}x{w} inputs and cannot take {x.shape[2]}x{x.shape[3]}: {fixed_size}; "
            f"build it for that size (`--set input.size=N`, or composer.load(..., overrides={{'input.size': N}}))")
    return x


torch.fx.wrap("check_input")  # a leaf for torch.fx.symbolic_trace: it runs on the real input


@dataclass(frozen=True)
class Tap:
    """Where a level's map comes out: inside the stem (`index` of its layer, -1 for its output),
    after a stage, or after a block of a stage."""

    where: str  # "stem", "stage" or "block"
    stage: int = -1
    index: int = -1


class FeatureInfo(list):
    """One dict per level: `num_chs`, `reduction`, `module` (as in timm)."""

    def select(self, indices: Sequence[int]) -> FeatureInfo:
        return FeatureInfo(self[i] for i in indices)

    def channels(self) -> list[int]:
        return [d["num_chs"] for d in self]

    def reduction(self) -> list[int]:
        return [d["reduction"] for d in self]

    def module_name(self) -> list[str]:
        return [d["module"] for d in self]


def _final_pool_stride(stem: nn.Module) -> int:
    """The stride of a pooling layer that ends a Sequential stem (ResNet's max-pool), else 1."""
    if isinstance(stem, nn.Sequential) and len(stem) > 1 and isinstance(stem[-1], (nn.MaxPool2d, nn.AvgPool2d)):
        stride = stem[-1].stride
        return stride if isinstance(stride, int) else stride[0]
    return 1


def feature_levels(plan: Plan, stem: nn.Module) -> tuple[FeatureInfo, tuple[Tap, ...]]:
    """The levels of a network (see the module's docstring) and where each comes out."""
    candidates: list[tuple[dict, Tap]] = []
    reduction = plan.stem.total_stride
    width = plan.stages[0].in_channels
    if not isinstance(stem, nn.Identity):
        pool = _final_pool_stride(stem)
        if pool > 1:
            k = len(stem) - 2
            name = list(stem._modules)[k]  # the last layer before the pool, by its attribute name
            candidates.append(({"num_chs": width, "reduction": reduction // pool, "module": f"stem.{name}"},
                               Tap("stem", index=k)))
        candidates.append(({"num_chs": width, "reduction": reduction, "module": "stem"}, Tap("stem")))
    for sp in plan.stages:
        reduction *= sp.stride
        candidates.append(({"num_chs": sp.out_channels, "reduction": reduction, "module": f"stages.{sp.index}"},
                           Tap("stage", sp.index)))
    if len({info["reduction"] for info, _ in candidates}) == 1:  # one resolution throughout: one level per block
        return (FeatureInfo({"num_chs": ctx.out_channels, "reduction": reduction,
                             "module": f"stages.{sp.index}.blocks.{j}"}
                            for sp in plan.stages for j, ctx in enumerate(sp.contexts)),
                tuple(Tap("block", sp.index, j) for sp in plan.stages for j in range(sp.depth)))
    keep = [i for i, (info, _) in enumerate(candidates)
            if i == len(candidates) - 1 or candidates[i + 1][0]["reduction"] != info["reduction"]]
    return FeatureInfo(candidates[i][0] for i in keep), tuple(candidates[i][1] for i in keep)


def resolve_indices(indices: int | Sequence[int] | None, count: int, what: str,
                    at: str | None = None) -> tuple[int, ...]:
    """timm's convention: None takes all, an int n the last n, a sequence those (negative from the end);
    a bad choice is an ArgumentError (composer/arguments.py)."""
    from .arguments import check_indices

    return check_indices(indices, count, what, at)


def to_map(x: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Tokens (B, prefix + H*W, C) -> (B, C, H, W) without the class tokens; a map passes unchanged."""
    if x.dim() == 4:
        return x
    return x[:, prefix:].transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def _run(net, x: torch.Tensor, taps: Sequence[Tap], take: set[int], stop_after: int | None,
         on_map=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run stem and stages, collecting the maps of the taps numbered in `take` (as (B, C, H, W)),
    stopping after tap `stop_after` when given. Returns (the running features, maps)."""
    maps: list[torch.Tensor] = []
    at = {tap: n for n, tap in enumerate(taps)}

    def hit(tap: Tap, y: torch.Tensor, prefix: int, grid) -> bool:
        n = at.get(tap)
        if n is None:
            return False
        if n in take:
            maps.append(on_map(n, y, prefix, grid) if on_map else to_map(y, prefix, grid))
        return stop_after is not None and n >= stop_after

    stem_taps = [t.index for t in taps if t.where == "stem" and t.index >= 0]
    if stem_taps:
        for k, layer in enumerate(net.stem):
            x = layer(x)
            if hit(Tap("stem", index=k), x, 0, None):
                return x, maps
    else:
        x = net.stem(x)
    if hit(Tap("stem"), x, 0, None):
        return x, maps
    stage: Stage
    for i, stage in enumerate(net.stages):
        if any(t.where == "block" and t.stage == i for t in taps):
            x = stage.enter(x)
            for j, block in enumerate(stage.blocks):
                x = stage.run_block(block, x)
                if hit(Tap("block", i, j), x, stage.prefix, stage.block_grids[j]):
                    return x, maps
            x = stage.leave(x)
        else:
            x = stage(x)
            if hit(Tap("stage", i), x, stage.prefix, stage.grid):
                return x, maps
    return x, maps


def apply_position_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A LayerNorm over the channels of a (B, C, H, W) map, whether it takes maps or channels-last."""
    from .layers.norms import LayerNorm2d

    return norm(x) if isinstance(norm, LayerNorm2d) else norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def block_taps(net) -> tuple[Tap, ...]:
    """Every block of the network, in order (for `forward_intermediates(..., blocks=True)`)."""
    return tuple(Tap("block", i, j) for i, stage in enumerate(net.stages) for j in range(len(stage.blocks)))


def forward_intermediates(net: ComposedNet, x: torch.Tensor, indices: int | Sequence[int] | None = None, *,
                          norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                          intermediates_only: bool = False, blocks: bool = False):
    """Maps of chosen levels (`feature_info`), or of blocks numbered across the network with
    `blocks=True`, along one forward pass.

    Returns (final features, [maps]) like timm, or only the maps with `intermediates_only`; with
    `stop_early` the pass ends at the last index asked for (the final features are then those).
    `norm` passes maps through the head's per-position norm (a token head's LayerNorm, or a pool
    head's `norm_on: map`): every level's in an isotropic network, as timm's ViT, else the last
    level's, as timm's hierarchical networks. `output_fmt` is "NCHW" (B, C, H, W) or "NLC" (B, H*W, C)."""
    from .arguments import check_choice, check_flag

    at = "forward_intermediates()"
    check_choice("output_fmt", output_fmt, ("NCHW", "NLC"), at)
    for name, flag in (("norm", norm), ("stop_early", stop_early), ("intermediates_only", intermediates_only),
                       ("blocks", blocks)):
        check_flag(name, flag, at)
    check_input(x, net.input_shape, net.fixed_size)
    taps = block_taps(net) if blocks else net.feature_taps
    take = resolve_indices(indices, len(taps), "indices", at)
    head_norm = net.head.position_norm() if norm else None
    every = blocks or all(t.where == "block" for t in taps)
    last = len(taps) - 1

    def on_map(n: int, y: torch.Tensor, prefix: int, grid) -> torch.Tensor:
        y = to_map(y, prefix, grid)
        if head_norm is not None and (every or n == last) and y.shape[1] == head_norm[1]:
            y = apply_position_norm(head_norm[0], y)
        return y.flatten(2).transpose(1, 2) if output_fmt == "NLC" else y

    x, maps = _run(net, x, taps, set(take), take[-1] if stop_early else None, on_map)
    return maps if intermediates_only else (x, maps)


class FeatureNet(nn.Module):
    """A backbone: the network up to the last level of `out_indices`; forward returns a list of
    (B, C, H, W) maps, described by `feature_info`. Its state_dict keys are the full network's
    (`stem.*`, `stages.N.*`), so a saved network's weights load into it with strict=False."""

    def __init__(self, net: ComposedNet, out_indices: int | Sequence[int] | None = None):
        super().__init__()
        self.out_indices = resolve_indices(out_indices, len(net.feature_taps), "out_indices", "FeatureNet()")
        taps = net.feature_taps
        last = taps[self.out_indices[-1]]
        self.stem = net.stem
        self.stages = net.stages[: last.stage + 1] if last.where != "stem" else nn.Sequential()
        if last.where == "block":  # keep the blocks up to the last one asked for
            stage = self.stages[-1]
            stage.blocks = stage.blocks[: last.index + 1]
        self.taps = tuple(taps[i] for i in self.out_indices)
        self.feature_info = net.feature_info.select(self.out_indices)
        self.input_shape = net.input_shape
        self.fixed_size = net.fixed_size
        self.name = net.name

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = check_input(x, self.input_shape, self.fixed_size)
        return _run(self, x, self.taps, set(range(len(self.taps))), len(self.taps) - 1)[1]
