"""The parts of a planned network, enumerated once: the stem, each stage with its transition and
blocks, the head.

Every consumer that goes through a network part by part (build, profile, the memory estimate and
its cache, the analytic cost, the build's memory guard, export's search for the part that fails,
the checkpoint name mapping, `composer build`'s table) takes the parts from `network_parts(plan)`,
so they agree on what the parts are, what they are called and what each one receives.

A part knows its path in the built module tree (`stem`, `stages.0`, `stages.0.transition`,
`stages.0.blocks.3`, `head`: `net.get_submodule(part.path)`), its config, its context (a
`BlockContext`: widths, stride, input grid, class tokens) and its per-sample input and output
shapes ([C, H, W] for a map, [N, C] for tokens). The stages are listed with their own transition
and blocks right after them; `Parts.top` is the sequence the network's input flows through (stem,
stages, head), `Parts.leaves` the finest pieces (stem, transitions, blocks, head).

Importing this module does not import torch: `analytic()` costs need none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..blocks.base import BlockContext
from ..blocks.cost import Cost

if TYPE_CHECKING:
    from torch import nn

    from ..planning.planner import Plan, StagePlan

Kind = Literal["stem", "stage", "transition", "block", "head"]


@dataclass(frozen=True, eq=False)
class Part:
    path: str  # where it sits in the built network: net.get_submodule(path)
    kind: Kind
    config: Any  # the stem's, transition's, block's or head's config; a stage's is its StagePlan
    context: BlockContext
    in_shape: tuple[int, ...]  # per sample: (C, H, W) for a map, (N, C) for tokens
    out_shape: tuple[int, ...]
    stage: int | None = None  # the stage it is or belongs to
    index: int | None = None  # a block's number within its stage
    classes: int = 0  # the head's classifier width (0: none)

    @property
    def top(self) -> bool:
        """One of the parts the input flows through in turn: stem, a stage, head."""
        return self.kind in ("stem", "stage", "head")

    @property
    def leaf(self) -> bool:
        return self.kind != "stage"

    @property
    def name(self) -> str:
        """The part's name in reports: `stem`, `s1` (the first stage), `head`; its path below a stage."""
        return f"s{self.stage + 1}" if self.kind == "stage" else self.path

    @property
    def title(self) -> str:
        """The part in a sentence: `the stem`, `stage 0`, `block 3 of stage 0`."""
        return {"stem": "the stem", "head": "the head", "stage": f"stage {self.stage}",
                "transition": f"the transition of stage {self.stage}",
                "block": f"block {self.index} of stage {self.stage}"}[self.kind]

    @property
    def label(self) -> str:
        """What it is, for tables: the stem's or head's type, `C: MBConv ... x3` for a stage."""
        if self.kind == "stage":
            sp = self.config
            return f"{sp.letter}: {sp.label} x{sp.depth}"
        if self.kind == "block":
            return self.config.describe(self.context)
        return self.config.type

    def module(self, net: nn.Module) -> nn.Module:
        return net.get_submodule(self.path)

    def cost(self) -> Cost | None:
        """Parameters and MACs for one sample from the config alone; None when a block family states
        no analytic cost (a plugin may not). A stage's includes its transition, class token,
        position embedding and blocks."""
        if self.kind != "stage":
            try:
                return self.config.cost(self.context)
            except NotImplementedError:
                return None
        total = Cost()
        for token in stage_tensors(self.config).values():
            total += Cost(_numel(token))
        for child in children(self.config):
            cost = child.cost()
            if cost is None:
                return None
            total += cost
        return total

    def build(self) -> nn.Module:
        """The part's module, on the default device, as the network holds it."""
        from torch import nn

        if self.kind != "stage":
            return self.config.build(self.context) or nn.Identity()
        from .composed import Stage

        return Stage(self.config)


class Parts(tuple):
    """Every part of a network in order (a stage followed by its transition and blocks)."""

    @property
    def top(self) -> tuple[Part, ...]:
        return tuple(p for p in self if p.top)

    @property
    def leaves(self) -> tuple[Part, ...]:
        return tuple(p for p in self if p.leaf)

    def __getitem__(self, key):
        if isinstance(key, str):
            for p in self:
                if p.path == key:
                    return p
            raise KeyError(key)
        return super().__getitem__(key)


def _shape(channels: int, grid: tuple[int, int], prefix: int, tokens: bool) -> tuple[int, ...]:
    return (prefix + grid[0] * grid[1], channels) if tokens else (channels, *grid)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def stage_tensors(sp: StagePlan) -> dict[str, tuple[int, ...]]:
    """A stage's own learned tensors (relative to the stage) and their per-sample shapes: the class
    token and the position embedding, over the grid the first block receives."""
    c, grid = sp.block_in_channels, sp.block_in_resolution
    out = {}
    if sp.class_token:
        out["cls_token"] = (1, c)
    if sp.pos_embed:
        out["pos_embed"] = (sp.prefix_out + grid[0] * grid[1], c)
    return out


def children(sp: StagePlan) -> tuple[Part, ...]:
    """A stage's transition (when it has one) and blocks."""
    i, out = sp.index, []
    if sp.transition.type != "none":
        ctx = BlockContext(sp.in_channels, sp.out_channels, sp.stride, sp.in_resolution, sp.prefix_in, stage=i)
        out.append(Part(f"stages.{i}.transition", "transition", sp.transition, ctx,
                        _shape(sp.in_channels, sp.in_resolution, 0, False),
                        _shape(sp.out_channels, sp.out_resolution, 0, False), stage=i))
    tokens = sp.data_format == "tokens"
    for j, ctx in enumerate(sp.contexts):
        out.append(Part(f"stages.{i}.blocks.{j}", "block", sp.block, ctx,
                        _shape(ctx.in_channels, ctx.resolution, ctx.prefix_tokens, tokens),
                        _shape(ctx.out_channels, ctx.out_resolution, ctx.prefix_tokens, tokens), stage=i, index=j))
    return tuple(out)


def network_parts(plan: Plan) -> Parts:
    """The parts of `plan`'s network, in the order the input flows through them."""
    c, h, w = plan.input_shape
    stem_c, *stem_hw = plan.stem_shape
    stride = plan.stem.total_stride
    out = [Part("stem", "stem", plan.stem, BlockContext(c, stem_c, stride, (h, w)), (c, h, w), tuple(plan.stem_shape))]
    for sp in plan.stages:
        ctx = BlockContext(sp.in_channels, sp.out_channels, sp.stride, sp.in_resolution, sp.prefix_in, stage=sp.index)
        in_shape = _shape(sp.in_channels, sp.in_resolution, sp.prefix_in, sp.prefix_in > 0)
        out.append(Part(f"stages.{sp.index}", "stage", sp, ctx, in_shape, tuple(sp.output_shape), stage=sp.index))
        out.extend(children(sp))
    last = plan.stages[-1]
    ctx = BlockContext(last.out_channels, plan.classes, 1, last.out_resolution, last.prefix_out, stage=last.index)
    out.append(Part("head", "head", plan.head, ctx, tuple(last.output_shape), tuple(plan.output_shape),
                    classes=plan.classes))
    return Parts(out)
