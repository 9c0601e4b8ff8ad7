"""plan: a validated blueprint -> per-stage shapes, strides and contexts, checked before any tensor.

Everything a user can get wrong about shapes (a width that heads do not divide, an input size that
the total stride does not divide, a class token in front of a conv block, ...) is found here and
reported at its line in the blueprint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .blocks.base import BlockConfig, BlockContext, Complaint, downsample
from .blueprint.errors import BlueprintError
from .blueprint.validate import Blueprint
from .budgets import MAX_TOKEN_LAYERS


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


class _Problems:
    """The shape problems found so far, each located at its line in the blueprint."""

    def __init__(self, blueprint: Blueprint):
        self.blueprint, self.source, self.found = blueprint, blueprint.source, []

    def at(self, path: tuple, message: str, hint: str | None = None) -> None:
        problem = self.source.problem(path, message, hint)
        if problem not in self.found:
            self.found.append(problem)

    def complain(self, stage: int, c: Complaint) -> None:
        self.at(self.blueprint.where(stage, c.option), c.message, c.hint)

    def raise_any(self) -> None:
        if self.found:
            raise BlueprintError(sorted(self.found, key=lambda p: (p.line or 0, p.column or 0)))


def plan(blueprint: Blueprint) -> Plan:
    """The static shape pass. Raises BlueprintError with every shape problem located."""
    m = blueprint.model
    problems = _Problems(blueprint)
    h, w = m.input.hw
    total_stride = m.stem.total_stride * math.prod(s.stride for s in m.stages)
    patch = getattr(m.stem, "patch", None)
    if patch and (h % patch or w % patch):
        bad = h if h % patch else w
        problems.at(("input", "size"), f"input size {h}x{w} is not divisible by the stem's patch size {patch}",
                    f"nearest valid sizes: {_nearest_multiples(bad, patch)}")
        problems.raise_any()
    stem_out = getattr(m.stem, "out_channels", m.input.channels)
    stem_hw = m.stem.output_hw((h, w))
    walk = _Walk(channels=stem_out, hw=stem_hw, total_blocks=sum(s.depth for s in m.stages), total_stride=total_stride)
    stages = tuple(_stage(i, blueprint, walk, problems) for i in range(len(m.stages)))
    _unused_options(blueprint, stages, problems)
    _network_checks(blueprint, stages, walk.prefix, problems)
    problems.raise_any()
    return Plan(
        name=blueprint.name, blueprint=blueprint, input_shape=(m.input.channels, *m.input.hw), classes=m.classes,
        stem=m.stem, stem_shape=(stem_out, *stem_hw), stages=stages, head=m.head,
        head_channels=m.head.features(walk.channels), total_stride=total_stride)


@dataclass
class _Walk:
    """What flows from stage to stage while planning."""

    channels: int
    hw: tuple[int, int]
    total_blocks: int
    total_stride: int
    prefix: int = 0  # class tokens inserted so far
    blocks_done: int = 0


def _transition_grid(i: int, spec: Any, walk: _Walk, problems: _Problems) -> tuple[int, int]:
    """The grid a stage's transition leaves, with its problems."""
    (h, w), stride, transition = walk.hw, spec.stride, spec.transition
    out = tuple(transition.output_size(n, stride) for n in (h, w))
    if min(out) < 1:
        problems.at(("stages", i, "transition", "kernel"),
                    f"a kernel-{transition.kernel} transition with stride {stride} leaves nothing of the {h}x{w} grid "
                    "it receives", "use a larger input size, or a smaller kernel or stride")
        return (1, 1)
    if transition.kernel == stride and (h % stride or w % stride):
        problems.at(("stages", i, "transition", "kernel"),
                    f"a kernel-{stride} transition with stride {stride} needs a grid divisible by {stride}, but "
                    f"receives {h}x{w}", f"use an odd kernel larger than the stride, or an input size divisible by "
                    f"{walk.total_stride}")
    return out


def _stage_rules(i: int, spec: Any, block: BlockConfig, walk: _Walk, has_transition: bool) -> list[Complaint]:
    """What the stage's own options ask of its block family and of the tokens before it."""
    out, name = [], block.type_name()
    if has_transition and walk.prefix:
        out.append(Complaint("transition", "a transition conv needs a feature map, but a class token was inserted "
                             "earlier", "insert the class token in this stage or a later one"))
    if not has_transition and spec.stride > 1 and not block.can_downsample:
        out.append(Complaint("stride", f"`{name}` blocks cannot downsample by themselves",
                             "add `transition: {type: conv}` to this stage"))
    if not has_transition and walk.channels != spec.channels and not block.can_change_width:
        out.append(Complaint("channels", f"`{name}` blocks keep their width, but this stage goes from "
                             f"{walk.channels} to {spec.channels} channels", "add `transition: {type: conv}` to this stage"))
    if block.data_format == "map" and (walk.prefix or spec.class_token):
        out.append(Complaint("class_token", f"`{name}` blocks work on feature maps and cannot carry a class token",
                             "insert the class token in a transformer stage"))
    if spec.class_token and walk.prefix:
        out.append(Complaint("class_token", "a class token was already inserted by an earlier stage"))
    if spec.pos_embed and block.data_format != "tokens":
        out.append(Complaint("pos_embed", f"a position embedding needs token blocks, not `{name}`"))
    return out


def _stage(i: int, blueprint: Blueprint, walk: _Walk, problems: _Problems) -> StagePlan:
    """Plan stage i from what the earlier stages leave in `walk`, and move `walk` past it."""
    m = blueprint.model
    spec, block, letter = m.stages[i], blueprint.stage_blocks[i], blueprint.letters[i]
    has_transition = spec.transition.type != "none"
    (h, w), stride, c_out = walk.hw, spec.stride, spec.channels
    out_res = _transition_grid(i, spec, walk, problems) if has_transition else (downsample(h, stride),
                                                                                  downsample(w, stride))
    for c in _stage_rules(i, spec, block, walk, has_transition):
        problems.complain(i, c)
    prefix = walk.prefix + (1 if spec.class_token else 0)
    contexts, res = [], out_res if has_transition else (h, w)
    for j in range(spec.depth):
        rate = m.drop_path * walk.blocks_done / max(1, walk.total_blocks - 1)
        first_in = c_out if has_transition else walk.channels
        ctx = BlockContext(first_in if j == 0 else c_out, c_out, (1 if has_transition else stride) if j == 0 else 1,
                           res, prefix, rate)
        if j < 2:  # every later block sees what the second one sees
            for c in block.check(ctx):
                problems.complain(i, c)
        contexts.append(ctx)
        res = ctx.out_resolution
        walk.blocks_done += 1
    stage = StagePlan(
        index=i, letter=letter, block=block, depth=spec.depth, in_channels=walk.channels, out_channels=c_out,
        stride=stride, in_resolution=(h, w), out_resolution=out_res, transition=spec.transition,
        class_token=spec.class_token, pos_embed=spec.pos_embed, prefix_in=walk.prefix, prefix_out=prefix,
        contexts=tuple(contexts), label=block.describe(contexts[0]))
    walk.channels, walk.hw, walk.prefix = c_out, out_res, prefix
    return stage


def _explicit(config: Any, option: str) -> bool:
    """Whether the blueprint set `option` (dotted into sub-configs) rather than leaving its default."""
    *outer, last = option.split(".")
    for key in outer:
        if key not in config.model_fields_set:
            return False
        config = getattr(config, key)
    return last in getattr(config, "model_fields_set", ())


def _unused_options(blueprint: Blueprint, stages: tuple[StagePlan, ...], problems: _Problems) -> None:
    """An option the blueprint sets where it never has an effect (`pool` of a block that does not
    downsample) is refused where it is written: in a stage override, or in a legend entry none of
    whose stages uses it."""
    unused: dict[tuple, list[str]] = {}
    for sp in stages:
        options = set.intersection(*(sp.block.unused(ctx) for ctx in sp.contexts[:2]))
        for option in sorted(o for o in options if _explicit(sp.block, o)):
            unused.setdefault(blueprint.where(sp.index, option), []).append(str(sp.index))
    for path, where in unused.items():
        if path[0] == "blocks":
            users = [str(sp.index) for sp in stages if sp.letter == path[1]]
            if where != users:
                continue
        option = ".".join(map(str, path[path.index("block") + 1 if "block" in path else 2:]))
        problems.at(path, f"`{option}` has no effect here: it applies to a block that "
                    f"{_APPLIES.get(option.rsplit('.', 1)[-1], 'uses it')}, and no block of stage(s) "
                    f"{', '.join(where)} does", f"remove `{option}`")


_APPLIES = {"pool": "downsamples", "shortcut_bias": "changes the width", "attn_width": "changes the width"}


def _network_checks(blueprint: Blueprint, stages: tuple[StagePlan, ...], prefix: int, problems: _Problems) -> None:
    """The token budget, and the head against the class token."""
    m = blueprint.model
    token_layers = [sum(ctx.prefix_tokens + ctx.resolution[0] * ctx.resolution[1] for ctx in sp.contexts)
                    if sp.data_format == "tokens" else 0 for sp in stages]
    if sum(token_layers) > MAX_TOKEN_LAYERS:
        worst = max(range(len(token_layers)), key=token_layers.__getitem__)
        problems.at(("stages", worst, "depth"),
                    f"the token blocks attend over {sum(token_layers):,} tokens in all (tokens x layers), over the "
                    f"budget of {MAX_TOKEN_LAYERS:,}; stage {worst} has {token_layers[worst]:,}",
                    "use a smaller input size, downsample before the token stages, or fewer token blocks")
    if m.head.type == "token" and not prefix:
        problems.at(("head", "type"), "a `token` head needs a class token, and no stage inserts one",
                    "set `class_token: true` on a transformer stage, or use `type: pool`")
    if m.head.type == "pool" and prefix:
        problems.at(("head", "type"), "the network carries a class token, which a `pool` head would average in",
                    "use `type: token`")
