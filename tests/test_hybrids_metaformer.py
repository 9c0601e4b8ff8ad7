"""The MetaFormers (PoolFormer, ConvFormer, CAFormer), ConvNeXt V2 and MobileViT of blueprints/timm/: timm's
checkpoints load with timm's names and reproduce timm's logits, the full-size networks have timm's
parameter counts, the analytic costs are the traced ones, and bad options are refused where they are.

The small checkpoints come from bench/make_hybrid_reference_b.py (timm's own models at reduced depth
and width, every one-dimensional parameter randomised)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import composer
from composer.analysis.crosscheck import analytic

from .conftest import BLUEPRINTS, ROOT, shared_reference, timm_logits_error

DATA = ROOT / "tests" / "data" / "timm"
INDEX = json.loads((DATA / "index.json").read_text())

ONE_BLOCK = {f"stages.{i}.depth": 1 for i in range(4)}


def widths(*ws: int) -> dict:
    return {f"stages.{i}.channels": w for i, w in enumerate(ws)}


# index.json's small checkpoints as overrides of the shipped blueprints (bench/make_hybrid_reference_b.py)
CASES = {
    "convnextv2_tiny_small": ("convnextv2_tiny", {**ONE_BLOCK, **widths(16, 32, 48, 64), "stem.channels": 16}),
    "poolformer_s12_small": ("poolformer_s12", {**ONE_BLOCK, **widths(16, 32, 48, 64)}),
    "convformer_s18_small": ("convformer_s18", {**ONE_BLOCK, **widths(16, 32, 48, 64), "head.hidden": 256}),
    "caformer_s18_small": ("caformer_s18", {**ONE_BLOCK, "stages.2.depth": 2, **widths(16, 32, 64, 96),
                                            "head.hidden": 384}),
    "mobilevit_s_small": ("mobilevit_s", {
        "stem.channels": [8], **widths(16, 24, 32, 40, 48), "stages.1.depth": 1, "blocks.V.dim": 32, "blocks.V.layers": 1,
        "stages.3.block.dim": 48, "stages.3.block.layers": 1, "stages.4.block.dim": 64, "stages.4.block.layers": 1,
        "head.conv.channels": 96}),
}
# timm 1.0's parameter counts at full size, 1000 classes (../shared/reference/numbers-hybrids.yaml)
PARAMS = {
    "convnextv2_tiny": 28_635_496,
    "poolformer_s12": 11_915_176,
    "convformer_s18": 26_774_448,
    "caformer_s18": 26_341_656,
    "mobilevit_s": 5_578_632,
}


# readable blueprints in blueprints/ -> their timm counterpart (tests/data/reference_numbers_hybrids.yaml, a
# copy of ../shared/reference/numbers-hybrids.yaml)
READABLE = {"caformer_s18": "caformer_s18", "poolformer_s12": "poolformer_s12", "convnextv2_tiny": "convnextv2_tiny",
            "mobilevit_s": "mobilevit_s"}
HYBRID_NUMBERS = yaml.safe_load((ROOT / "tests" / "data" / "reference_numbers_hybrids.yaml").read_text())


def small(name: str, **more) -> composer.Blueprint:
    blueprint, sets = CASES[name]
    return composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml",
                         overrides={**sets, "input.size": INDEX[name]["input"][-1], "classes": INDEX[name]["classes"],
                                    **more})


@pytest.mark.parametrize("name", sorted(CASES))
def test_timm_checkpoint_reproduces_timm_logits(name):
    """Every tensor of timm's checkpoint used under timm's names, timm's parameter count, and timm's
    logits within 1e-4 of the largest."""
    assert timm_logits_error(small(name), name) <= 1e-4


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_full_size_parameters_are_timms(name):
    """On the meta device (no weights allocated), and by the analytic cost from the configs alone."""
    plan = composer.plan(composer.load(BLUEPRINTS / "timm" / f"{name}.yaml"))
    assert sum(p.numel() for p in composer.build(plan, device="meta").parameters()) == PARAMS[name]
    assert sum(cost.params for _, cost in analytic(plan)) == PARAMS[name]


def test_parameter_figures_match_the_shared_reference():
    shared = yaml.safe_load(shared_reference("numbers-hybrids.yaml").read_text())
    assert shared == HYBRID_NUMBERS
    assert {name: shared[name]["params"] for name in PARAMS} == PARAMS


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_blueprints_are_their_timm_counterparts(name):
    """Parameters exact; MACs at most 2% above torch's flop counter's, which leaves out the norms."""
    ref = HYBRID_NUMBERS[READABLE[name]]
    plan = composer.plan(composer.load(BLUEPRINTS / f"{name}.yaml"))
    params, macs = (sum(getattr(cost, k) for _, cost in analytic(plan)) for k in ("params", "macs"))
    assert params == ref["params"]
    reference_macs = float(ref["flop_counter_macs"])  # "4.1069e9": a string to YAML 1.1
    assert reference_macs <= macs <= 1.02 * reference_macs


@pytest.mark.parametrize("name", sorted(CASES))
def test_analytic_cost_is_the_traced_cost(name):
    result = composer.check(composer.plan(small(name)))
    assert result.ok, [p for p in result.parts if not p.ok]


def test_grn_changes_the_output_and_costs_its_parameters():
    """GRN starts as the identity (weight and bias zero) and has 2 parameters per hidden channel."""
    plain = composer.profile(small("convnextv2_tiny_small", **{"blocks.C.grn": False})).params
    with_grn = composer.profile(small("convnextv2_tiny_small")).params
    assert with_grn - plain == 2 * 4 * (16 + 32 + 48 + 64)


@pytest.mark.parametrize("blueprint,sets,where,words", [
    ("poolformer_s12", {"blocks.P.mixer.size": 4}, "blocks.P.mixer.size", "pooling window 4 is even"),
    ("poolformer_s12", {"blocks.P.mixer.kernel": 3}, "blocks.P.mixer.kernel", "unknown option `kernel`"),
    ("poolformer_s12", {"blocks.P.mixer": {"type": "conv"}}, "blocks.P.mixer.type", "did you mean `sepconv`"),
    ("poolformer_s12", {"blocks.P.act": "star_relu"}, "blocks.P.act", "did you mean `starrelu`"),
    ("caformer_s18", {"blocks.C.mixer.kernel": 6}, "blocks.C.mixer.kernel", "kernel 6 is even"),
    ("caformer_s18", {"blocks.C.mixer.expand": 0.001}, "blocks.C.mixer.expand", "rounds down to 0"),
    ("caformer_s18", {"blocks.A.mixer.head_dim": 0}, "blocks.A.mixer.head_dim", "greater than or equal to 1"),
    ("caformer_s18", {"head.hidden": None}, "caformer_s18.yaml:20:", "give `hidden` too"),
    ("convnextv2_tiny", {"blocks.C.grn": "yes"}, "blocks.C.grn", "valid boolean"),
    ("mobilevit_s", {"input.size": 224}, "mobilevit_s.yaml:11:", "the 7x7 grid of this block is not a multiple of the 2x2"),
    ("mobilevit_s", {"blocks.V.heads": 5}, "blocks.V.heads", "width 144 does not divide by 5 heads"),
    ("mobilevit_s", {"blocks.V.kernel": 4}, "blocks.V.kernel", "kernel 4 is even"),
])
def test_bad_options_are_refused_where_they_are(blueprint, sets, where, words):
    with pytest.raises(composer.BlueprintError) as caught:
        composer.plan(composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml", overrides=sets))
    text = str(caught.value)
    assert where in text and words in text, text


def test_a_bad_mixer_option_in_the_file_is_located_at_its_line(tmp_path):
    text = (BLUEPRINTS / "timm" / "caformer_s18.yaml").read_text().replace("kernel: 7, expand: 2", "kernel: 6, expand: 2")
    (tmp_path / "bp.yaml").write_text(text)
    with pytest.raises(composer.BlueprintError) as caught:
        composer.plan(composer.load(tmp_path / "bp.yaml"))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "kernel: 6" in row)
    assert f"bp.yaml:{line}:" in str(caught.value) and "blocks.C.mixer.kernel: kernel 6 is even" in str(caught.value)


def test_a_mixer_named_alone_takes_its_defaults():
    plan = composer.plan(composer.load(BLUEPRINTS / "timm" / "poolformer_s12.yaml",
                                       overrides={"blocks.P.mixer": "sepconv", "input.size": 64}))
    mixer = plan.stages[0].block.mixer
    assert (mixer.type, mixer.kernel, mixer.expand, mixer.act) == ("sepconv", 7, 2.0, "starrelu")
    assert composer.check(plan).ok


def test_attention_stages_run_on_tokens_and_conv_stages_on_maps():
    plan = composer.plan(small("caformer_s18_small"))
    assert [sp.data_format for sp in plan.stages] == ["map", "map", "tokens", "tokens"]
    net = composer.build(plan)
    y = net(torch.randn(2, 3, 64, 64))
    assert y.shape == (2, 10)
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
