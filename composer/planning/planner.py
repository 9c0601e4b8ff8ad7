"""plan: a validated blueprint -> per-stage shapes, strides and contexts, checked before any tensor.

Everything a user can get wrong about shapes (a width that heads do not divide, an input size that
the total stride does not divide, a class token in front of a conv block, ...) is found here and
reported at its line in the blueprint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from ..blocks.base import BlockConfig, BlockContext, Complaint, downsample
from ..blueprint.errors import BlueprintError, Problem
from ..blueprint.validation import Blueprint
from ..blueprint.budgets import MAX_TOKEN_LAYERS


@dataclass(frozen=True)
class StagePlan:
    index: int
    letter: str
    block: BlockConfig
    depth: int
    in_channels: int
    out_channels: int
    stride: int
    in_resolution: tuple[int, int]
    out_resolution: tuple[int, int]
    transition: Any  # transition config
    class_token: bool
    pos_embed: bool
    prefix_in: int  # class tokens arriving from earlier stages
    prefix_out: int
    contexts: tuple[BlockContext, ...]
    label: str = ""

    @property
    def data_format(self) -> Literal["map", "tokens"]:
        return self.block.data_format

    @property
    def block_in_channels(self) -> int:
        """Width entering the first block (after the transition, if any)."""
        return self.contexts[0].in_channels

    @property
    def block_in_resolution(self) -> tuple[int, int]:
        """Grid entering the first block (after the transition, if any)."""
        return self.contexts[0].resolution

    @property
    def tokens(self) -> int:
        h, w = self.out_resolution
        return self.prefix_out + h * w

    @property
    def output_shape(self) -> list[int]:
        """Per-sample output shape: [C, H, W] for maps, [N, C] when a class token is carried."""
        if self.prefix_out:
            return [self.tokens, self.out_channels]
        return [self.out_channels, *self.out_resolution]


@dataclass(frozen=True)
class Plan:
    name: str
    blueprint: Blueprint
    input_shape: tuple[int, int, int]  # (C, H, W)
    classes: int
    stem: Any
    stem_shape: tuple[int, int, int]
    stages: tuple[StagePlan, ...]
    head: Any
    head_channels: int
    total_stride: int

    @property
    def output_shape(self) -> list[int]:
        return [self.classes] if self.classes else [self.head_channels]


def _nearest_multiples(value: int, step: int) -> str:
    low = (value // step) * step
    return f"{low} or {low + step}" if low > 0 else str(step)


def plan(blueprint: Blueprint) -> Plan:
    """The static shape pass. Raises BlueprintError with every shape problem located."""
    m, source = blueprint.model, blueprint.source
    raw_stages = source.data["stages"]
    problems: list[Problem] = []
    c_in = m.input.channels
    h, w = m.input.hw

    stem_stride = m.stem.total_stride
    total_stride = stem_stride * math.prod(s.stride for s in m.stages)
    patch = getattr(m.stem, "patch", None)
    if patch and (h % patch or w % patch):
        bad = h if h % patch else w
        problems.append(source.problem(
            ("input", "size"), f"input size {h}x{w} is not divisible by the stem's patch size {patch}",
            f"nearest valid sizes: {_nearest_multiples(bad, patch)}"))
        raise BlueprintError(problems)

    stem_out = getattr(m.stem, "out_channels", c_in)
    h, w = m.stem.output_hw((h, w))
    stem_hw = (h, w)
    channels = stem_out

    total_blocks = sum(s.depth for s in m.stages)
    block_index = 0
    prefix = 0
    stage_plans = []
    for i, (letter, spec, block) in enumerate(zip(blueprint.letters, m.stages, blueprint.stage_blocks)):
        override = raw_stages[i].get("block", {})

        def at(option: str, i=i, letter=letter, override=override) -> tuple:
            if option in ("channels", "stride", "depth", "transition", "class_token", "pos_embed"):
                return ("stages", i, option)
            if option in override:
                return ("stages", i, "block", option)
            return ("blocks", letter, option)

        def complain(c: Complaint) -> None:
            p = source.problem(at(c.option), c.message, c.hint)
            if p not in problems:
                problems.append(p)

        stride, c_out = spec.stride, spec.channels
        has_transition = spec.transition.type != "none"
        if has_transition and prefix:
            complain(Complaint("transition", "a transition conv needs a feature map, but a class token was inserted earlier",
                               "insert the class token in this stage or a later one"))
        if has_transition:
            out_res = tuple(spec.transition.output_size(n, stride) for n in (h, w))
            if min(out_res) < 1:
                problems.append(source.problem(
                    ("stages", i, "transition", "kernel"),
                    f"a kernel-{spec.transition.kernel} transition with stride {stride} leaves nothing of the "
                    f"{h}x{w} grid it receives", "use a larger input size, or a smaller kernel or stride"))
                out_res = (1, 1)
            elif spec.transition.kernel == stride and (h % stride or w % stride):
                problems.append(source.problem(
                    ("stages", i, "transition", "kernel"),
                    f"a kernel-{stride} transition with stride {stride} needs a grid divisible by {stride}, but "
                    f"receives {h}x{w}", f"use an odd kernel larger than the stride, or an input size divisible by "
                    f"{total_stride}"))
        else:
            out_res = (downsample(h, stride), downsample(w, stride))
        block_c_in = c_out if has_transition else channels
        block_stride = 1 if has_transition else stride
        if not has_transition:
            if stride > 1 and not block.can_downsample:
                complain(Complaint("stride", f"`{block.type_name()}` blocks cannot downsample by themselves",
                                   "add `transition: {type: conv}` to this stage"))
            if channels != c_out and not block.can_change_width:
                complain(Complaint("channels", f"`{block.type_name()}` blocks keep their width, but this stage goes from "
                                   f"{channels} to {c_out} channels",
                                   "add `transition: {type: conv}` to this stage"))
        if block.data_format == "map" and (prefix or spec.class_token):
            complain(Complaint("class_token", f"`{block.type_name()}` blocks work on feature maps and cannot carry a class token",
                               "insert the class token in a transformer stage"))
        if spec.class_token and prefix:
            complain(Complaint("class_token", "a class token was already inserted by an earlier stage"))
        if spec.pos_embed and block.data_format != "tokens":
            complain(Complaint("pos_embed", f"a position embedding needs token blocks, not `{block.type_name()}`"))
        stage_prefix = prefix + (1 if spec.class_token else 0)

        contexts = []
        res = out_res if has_transition else (h, w)
        for j in range(spec.depth):
            rate = m.drop_path * block_index / max(1, total_blocks - 1)
            first = j == 0
            ctx = BlockContext(block_c_in if first else c_out, c_out, block_stride if first else 1, res,
                               stage_prefix, rate)
            if first or j == 1:
                for c in block.check(ctx):
                    complain(c)
            contexts.append(ctx)
            res = ctx.out_resolution
            block_index += 1
        stage_plans.append(StagePlan(
            index=i, letter=letter, block=block, depth=spec.depth, in_channels=channels, out_channels=c_out,
            stride=stride, in_resolution=(h, w), out_resolution=out_res, transition=spec.transition,
            class_token=spec.class_token, pos_embed=spec.pos_embed, prefix_in=prefix, prefix_out=stage_prefix,
            contexts=tuple(contexts), label=block.describe(contexts[0])))
        channels, (h, w), prefix = c_out, out_res, stage_prefix

    token_layers = [sum(ctx.prefix_tokens + ctx.resolution[0] * ctx.resolution[1] for ctx in sp.contexts)
                    if sp.data_format == "tokens" else 0 for sp in stage_plans]
    if sum(token_layers) > MAX_TOKEN_LAYERS:
        worst = max(range(len(token_layers)), key=token_layers.__getitem__)
        problems.append(source.problem(
            ("stages", worst, "depth"),
            f"the token blocks attend over {sum(token_layers):,} tokens in all (tokens x layers), over the budget of "
            f"{MAX_TOKEN_LAYERS:,}; stage {worst} has {token_layers[worst]:,}",
            "use a smaller input size, downsample before the token stages, or fewer token blocks"))
    if m.head.type == "token" and not prefix:
        problems.append(source.problem(("head", "type"), "a `token` head needs a class token, and no stage inserts one",
                                       "set `class_token: true` on a transformer stage, or use `type: pool`"))
    if m.head.type == "pool" and prefix:
        problems.append(source.problem(("head", "type"), "the network carries a class token, which a `pool` head would average in",
                                       "use `type: token`"))
    if problems:
        raise BlueprintError(sorted(problems, key=lambda p: (p.line or 0, p.column or 0)))
    return Plan(
        name=blueprint.name, blueprint=blueprint, input_shape=(m.input.channels, *m.input.hw), classes=m.classes,
        stem=m.stem, stem_shape=(stem_out, *stem_hw),
        stages=tuple(stage_plans), head=m.head, head_channels=m.head.features(channels), total_stride=total_stride)
