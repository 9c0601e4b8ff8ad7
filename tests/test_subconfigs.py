"""Typed sub-configs: an option belongs to one kind (attention `gpsa`, FFN `conv`, norm placement
`pre`), a blueprint that gives it to another is refused at the option's line and column, and the
flat spellings of earlier versions are refused with the new spelling as the hint."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.blocks import BLOCKS
from composer.blocks.base import Registry, Variant

from .conftest import BLUEPRINTS

VIT = 'T: {type: transformer, attention: {type: plain, heads: 12, qkv_bias: true}, ffn: {ratio: 4}, norm_eps: 1e-6}'
RESNET = "B: {type: bottleneck, reduction: 4, kernel: 3, stride_on: conv, act: relu}"
MOBILENET = "M: {type: mbconv, norm: post, expand: 6, expand_from: in, kernel: 3, se: 0, act: relu6, stride_on: depthwise}"

# (blueprint, legend line as shipped, the line with the wrong option, the option, words the error must hold)
CASES = [
    # options of another attention or FFN kind, new spellings: the error names the kind that has them
    ("vit_b16", VIT, VIT.replace("qkv_bias: true}", "qkv_bias: true, locality_strength: 50}"),
     "locality_strength", "an option of attention `gpsa`, not `plain`"),
    ("vit_b16", VIT, VIT.replace("qkv_bias: true}", "qkv_bias: true, kv_stride: 4}"),
     "kv_stride", "an option of attention `conv`, not `plain`"),
    ("vit_b16", VIT, VIT.replace("qkv_bias: true}", "qkv_bias: true, kernel: 4}"),
     "kernel", "an option of attention `conv`, not `plain`"),
    ("vit_b16", VIT, VIT.replace("ffn: {ratio: 4}", "ffn: {ratio: 4, kernel: 7}"),
     "kernel", "an option of ffn `conv`, not `mlp`"),
    # the same in the flat spellings of earlier versions: the hint shows the new spelling
    ("vit_b16", VIT, VIT.replace("norm_eps: 1e-6}", "norm_eps: 1e-6, locality_strength: 50}"),
     "locality_strength", "attention: {type: gpsa, locality_strength: 1.0}"),
    ("vit_b16", VIT, VIT.replace("norm_eps: 1e-6}", "norm_eps: 1e-6, kv_stride: 4}"),
     "kv_stride", "attention: {type: conv, kv_stride: 2}"),
    ("vit_b16", VIT, VIT.replace("norm_eps: 1e-6}", "norm_eps: 1e-6, ffn_kernel: 7}"),
     "ffn_kernel", "ffn: {type: conv, kernel: 3}"),
    ("vit_b16", VIT, VIT.replace("norm_eps: 1e-6}", "norm_eps: 1e-6, proj_kernel: 4}"),
     "proj_kernel", "attention: {type: conv, kernel: 3}"),
    # a downsampling option on a network that never downsamples
    ("vit_b16", VIT, VIT.replace("norm_eps: 1e-6}", "norm_eps: 1e-6, pool: avg}"),
     "pool", "applies to a block that downsamples"),
    # SE's options live in its one config; an SE option with SE off has no spelling any more
    ("resnet50", RESNET, RESNET.replace("act: relu}", "act: relu, se_gate: hardsigmoid}"),
     "se_gate", "se: {ratio: 0.0625, gate: sigmoid}"),
    ("resnet50", RESNET, RESNET.replace("act: relu}", "act: relu, se: {ratio: 0.0625, at: before_norm}}"),
     "at", "puts SE at `end` only"),
    # pre-norm options on a post-norm MBConv
    ("mobilenetv2", MOBILENET, MOBILENET.replace("stride_on: depthwise}", "stride_on: depthwise, project_bias: false}"),
     "project_bias", "norm: {type: pre, project_bias: false}"),
    ("mobilenetv2", MOBILENET, MOBILENET.replace("norm: post,", "norm: {type: post, project_bias: false},"),
     "project_bias", "an option of mbconv norm placement `pre`, not `post`"),
]


@pytest.mark.parametrize("name,shipped,line,option,words", CASES,
                         ids=[f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)])
def test_option_of_another_kind_is_refused_at_its_column(tmp_path, name, shipped, line, option, words):
    text = (BLUEPRINTS / f"{name}.yaml").read_text()
    assert shipped in text
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(shipped, line))
    r = CliRunner().invoke(app, ["validate", str(path)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    row = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if line.strip() in t)
    found = re.search(rf"{re.escape(str(path))}:(\d+):(\d+): \S*{re.escape(option)}\b", r.output)
    assert found, r.output
    assert int(found.group(1)) == row
    column = int(found.group(2))
    assert path.read_text().splitlines()[row - 1][column - 1:].startswith(option), r.output
    assert words in r.output, r.output


def test_a_bare_kind_name_is_the_kind_with_its_defaults():
    plain = composer.loads((BLUEPRINTS / "cvt13.yaml").read_text())
    assert plain.stage_blocks[0].attention.type == "conv" and plain.stage_blocks[0].attention.kernel == 3
    short = (BLUEPRINTS / "cvt13.yaml").read_text().replace(
        "attention: {type: conv, scale: embed_dim, kv_stride: 2, kernel: 3}", "attention: conv")
    assert short != (BLUEPRINTS / "cvt13.yaml").read_text()
    cfg = composer.loads(short).stage_blocks[2].attention
    assert (cfg.type, cfg.kernel, cfg.kv_stride, cfg.scale, cfg.heads) == ("conv", 3, 2, "head_dim", 6)


def test_stage_override_merges_into_the_legend_sub_config():
    """`block: {attention: {heads: 3}}` keeps the legend's kind and options; naming another kind replaces them."""
    bp = composer.load(BLUEPRINTS / "cvt13.yaml")
    assert [b.attention.heads for b in bp.stage_blocks] == [1, 3, 6]
    assert {b.attention.scale for b in bp.stage_blocks} == {"embed_dim"}
    other = composer.load(BLUEPRINTS / "cvt13.yaml", overrides={"stages.1.block.attention": {"type": "plain", "heads": 3}})
    assert other.stage_blocks[1].attention.type == "plain" and other.stage_blocks[1].attention.scale == "head_dim"


def test_se_shorthand_and_off():
    bp = composer.load(BLUEPRINTS / "coatnet0.yaml")
    assert bp.stage_blocks[0].se.ratio == 0.25 and bp.stage_blocks[0].se.act is None
    off = composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"blocks.C.se": 0})
    assert off.stage_blocks[0].se is None
    assert composer.profile(off).params < composer.profile(bp).params


def test_a_kind_registered_later_is_accepted_by_blueprints(tmp_path):
    """A plugin registering an attention kind after blueprints were read: the next blueprint may name it."""
    from typing import Literal

    from pydantic import Field

    from composer.blocks.transformer.attention import ATTENTIONS
    from composer.blocks.transformer.attention.plain import PlainAttention

    composer.load(BLUEPRINTS / "vit_b16.yaml")  # the schema is built

    @ATTENTIONS.register
    class EchoAttention(PlainAttention):
        """Plain attention under another name (a plugin's kind)."""

        type: Literal["echo"] = Field("echo", description="A test kind.")

    try:
        bp = composer.load(BLUEPRINTS / "vit_b16.yaml", overrides={"blocks.T.attention.type": "echo",
                                                                    "stages.0.depth": 1})
        assert type(bp.stage_blocks[0].attention) is EchoAttention
        assert composer.profile(bp).params == composer.profile(
            composer.load(BLUEPRINTS / "vit_b16.yaml", overrides={"stages.0.depth": 1})).params
    finally:
        ATTENTIONS.unregister("echo")
    with pytest.raises(composer.BlueprintError, match="unknown type `echo`"):
        composer.load(BLUEPRINTS / "vit_b16.yaml", overrides={"blocks.T.attention.type": "echo"})


def test_every_variant_field_names_a_registry_with_a_default_kind():
    """Every sub-config field of every block family is typed by a registry whose default kind exists."""
    fields = [(name, f) for cls in BLOCKS.kinds().values() for name, f in cls.model_fields.items()
              if any(isinstance(m, Variant) for m in f.metadata)]
    assert {name for name, _ in fields} >= {"attention", "ffn", "norm"}
    for _, f in fields:
        registry: Registry = next(m for m in f.metadata if isinstance(m, Variant)).registry
        assert registry.default in registry and f.get_default(call_default_factory=True).type == registry.default


def test_the_norm_free_conv_stem_maps_timm_names_by_attribute():
    """A conv stem without norms: its convs are `conv1`, `conv2` whatever sits between them, and timm's
    `stem.conv1/conv2` load onto them (positions inside an nn.Sequential would shift by the missing norms)."""
    import torch

    from composer.weights import load_weights

    bp = composer.load(BLUEPRINTS / "timm" / "coatnet_0_rw_224.yaml",
                       overrides={"stem.norm": "none", "input.size": 64, "classes": 10, "stages.2.depth": 1})
    net = composer.build(bp, device="meta")
    names = [n for n, _ in net.stem.named_children()]
    assert names[:2] == ["conv1", "act1"] and "conv2" in names and not any(n.startswith("norm") for n in names)
    plan = composer.plan(bp)
    torch.manual_seed(0)
    timm_state = {"stem.conv1.weight": torch.randn(32, 3, 3, 3), "stem.conv1.bias": torch.randn(32),
                  "stem.conv2.weight": torch.randn(64, 32, 3, 3), "stem.conv2.bias": torch.randn(64)}
    real = composer.build(bp)
    report = load_weights(real, plan, timm_state, layout="timm", strict=False)
    assert {"stem.conv1.weight", "stem.conv2.weight", "stem.conv1.bias", "stem.conv2.bias"} <= set(report.loaded)
    assert torch.equal(real.stem.conv2.weight, timm_state["stem.conv2.weight"])
