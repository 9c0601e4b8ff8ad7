"""Every registered kind of every sort of part, tested with no edit here when a kind is added.

For each kind in the registries (block families, stems, heads, transitions, and the attention and
feed-forward kinds of the transformer block) a narrowed network (32x32 input, widths 16 and 32,
two blocks a stage, the second stage downsampling) is planned with the kind in it at its defaults,
built, run forward and backward (every parameter gets a finite gradient), and its analytic cost is
compared with the traced one, part by part (`composer.check`). Where the kind can carry a class
token, a second network inserts one; a kind that refuses it must say so as a located blueprint
error, not fail later.

Options a kind's defaults cannot size for these widths are set by option name only (`head_dim: 8`,
a stem's `channels` and `patch`), never by kind.
"""

from __future__ import annotations

import typing

import pytest
import torch

import composer
from composer.blocks.base import BLOCKS, HEADS, STEMS, TRANSITIONS
from composer.blocks.transformer.attention import ATTENTIONS
from composer.blocks.transformer.ffn import FFNS
from composer.blueprint import BlueprintError

WIDTHS = (16, 32)


def sized(cls, **given) -> dict:
    """`{type: ..., **given}` plus sizes for these widths, for the options this kind has."""
    fields = cls.model_fields
    out = {"type": cls.type_name()}
    if "head_dim" in fields:
        out["head_dim"] = 8
    if "channels" in fields:
        plural = typing.get_origin(fields["channels"].annotation) is list
        out["channels"] = [WIDTHS[0]] if plural else WIDTHS[0]
    if "patch" in fields:
        out["patch"] = 2
    if "window" in fields:  # windows that tile the 16x16 and 8x8 grids
        out["window"] = 4
    if "reduction" in fields:  # a reduction that fits the grids and divides the widths
        out["reduction"] = 2
    return {**out, **given}


def token_block(attention: dict | None = None, ffn: dict | None = None) -> dict:
    """A transformer block at these widths, with the given (or default) attention and FFN."""
    transformer = BLOCKS["transformer"]
    block = {"type": "transformer", "attention": attention or sized(ATTENTIONS[ATTENTIONS.default])}
    if ffn is not None:
        block["ffn"] = ffn
    assert set(block) <= set(transformer.model_fields)
    return block


def network(block: dict, *, stem: dict | None = None, head: dict | None = None, transition: dict | None = None,
            class_token: bool = False, first_transition: bool = False) -> dict:
    """Two stages of two blocks: the first keeps the stem's grid and width, the second halves the
    grid and doubles the width (through `transition`, or by the block itself where it can)."""
    cls = BLOCKS[block["type"]]
    # a class token joins after the stage's own downsampling, so that stage takes a transition
    needs_transition = not (cls.can_downsample and cls.can_change_width) or class_token
    second = {"depth": 2, "channels": WIDTHS[1], "stride": 2}
    if transition is not None or needs_transition:
        second["transition"] = transition or {"type": "conv", "kernel": 2}
    if class_token:
        second["class_token"] = True
    first = {"depth": 2, "channels": WIDTHS[0]}
    if first_transition:  # a stem that does not make the first map (or its width)
        first.update(stride=2, transition={"type": "conv", "kernel": 3})
    return {"name": "registry-case", "input": {"channels": 3, "size": 32}, "classes": 5,
            "stem": stem or {"type": "conv", "channels": [WIDTHS[0]], "stride": 2},
            "layout": "B-B", "blocks": {"B": block}, "stages": [first, second],
            "head": head or {"type": "token" if class_token else "pool"}}


def exercise(data: dict) -> None:
    """Plan, build, forward and backward on a batch of 2; analytic cost = traced cost per part."""
    plan = composer.plan(composer.loads(_yaml(data)))
    net = composer.build(plan)
    x = torch.randn(2, *plan.input_shape)
    y = net(x)
    assert y.shape == (2, plan.classes)
    y.logsumexp(-1).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing[:5]}"
    report = composer.check(plan)
    assert report.ok and all(p.checked for p in report.parts), report.to_dict()


def exercise_with_class_token(block: dict) -> None:
    """The network of `block` with a class token in its second stage (token head), unless the kind
    refuses one: then planning says so, located in the blueprint."""
    data = network(block, class_token=True)
    try:
        composer.plan(composer.loads(_yaml(data)))
    except BlueprintError as exc:
        assert "class token" in str(exc) and exc.problems[0].line is not None, str(exc)
        return
    exercise(data)


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def _tokens(name: str) -> bool:
    return BLOCKS[name].data_format == "tokens"


@pytest.mark.parametrize("kind", sorted(ATTENTIONS))
def test_every_attention_kind(kind):
    block = token_block(attention=sized(ATTENTIONS[kind]))
    exercise(network(block))
    exercise_with_class_token(block)


@pytest.mark.parametrize("kind", sorted(FFNS))
def test_every_ffn_kind(kind):
    block = token_block(ffn=sized(FFNS[kind]))
    exercise(network(block))
    exercise_with_class_token(block)


@pytest.mark.parametrize("kind", sorted(BLOCKS))
def test_every_block_family(kind):
    block = token_block() if kind == "transformer" else sized(BLOCKS[kind])
    exercise(network(block))
    if _tokens(kind):
        exercise_with_class_token(block)


@pytest.mark.parametrize("kind", sorted(STEMS))
def test_every_stem(kind):
    stem = sized(STEMS[kind])
    makes_map = "channels" in STEMS[kind].model_fields
    block = sized(BLOCKS["mbconv"])
    exercise(network(block, stem=stem, first_transition=not makes_map))


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_every_head(kind):
    head = sized(HEADS[kind])
    block = token_block()
    try:
        composer.plan(composer.loads(_yaml(network(block, head=head))))
    except BlueprintError as exc:  # a head that needs a class token says so, then takes one
        assert "class token" in str(exc), str(exc)
        data = network(block, head=head, class_token=True)
    else:
        data = network(block, head=head)
    exercise(data)


@pytest.mark.parametrize("kind", sorted(TRANSITIONS))
def test_every_transition(kind):
    transition = sized(TRANSITIONS[kind])
    block = sized(BLOCKS["mbconv"])
    exercise(network(block, transition=transition))


def test_the_registries_hold_the_shipped_kinds():
    """The parametrisations above are over these (a kind lost from a registry fails here)."""
    assert {"mbconv", "bottleneck", "convnext", "transformer"} <= set(BLOCKS)
    assert {"plain", "relative", "gpsa", "conv"} <= set(ATTENTIONS)
    assert {"mlp", "conv"} <= set(FFNS)
    assert {"conv", "patch", "none"} <= set(STEMS)
    assert {"pool", "token"} <= set(HEADS)
    assert {"none", "conv"} <= set(TRANSITIONS)
