"""Swin, PVTv2 and MaxViT: window, grid and spatial-reduction attention, patch merging, overlapping
patch embeddings and the MaxViT block. timm's small checkpoints reproduce timm's logits, the
full-size blueprints have timm's parameter counts, the analytic costs equal the traced ones, and
shapes the windows cannot take are refused where they are set."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.blueprint import BlueprintError
from composer.analysis.crosscheck import analytic

from .conftest import BLUEPRINTS, ROOT, shared_reference, timm_logits_error

DATA = ROOT / "tests" / "data" / "timm"
INDEX = json.loads((DATA / "index.json").read_text())
runner = CliRunner()

# the small checkpoints of index.json as `--set` overrides of the shipped timm blueprints
SMALL = {
    "swin_tiny_small": ("swin_tiny_patch4_window7_224", {
        "stem.channels": 16, "blocks.W.attention.window": 4, "blocks.W.attention.head_dim": 16,
        **{f"stages.{i}.channels": c for i, c in enumerate((16, 32, 64, 128))},
        **{f"stages.{i}.depth": d for i, d in enumerate((2, 2, 2, 1))}}),
    "pvt_v2_b0_small": ("pvt_v2_b0", {
        "blocks.P.attention.head_dim": 16, "stages.0.depth": 2,
        **{f"stages.{i}.channels": c for i, c in enumerate((16, 32, 48, 64))},
        **{f"stages.{i}.depth": 1 for i in (1, 2, 3)}}),
    "maxvit_tiny_small": ("maxvit_tiny_tf_224", {
        "stem.channels": [16, 16], "blocks.M.window": 2, "blocks.M.head_dim": 8, "head.hidden": 64,
        **{f"stages.{i}.channels": c for i, c in enumerate((16, 32, 48, 64))},
        **{f"stages.{i}.depth": 1 for i in range(4)}}),
}
READABLE = {"swin_tiny": "swin_tiny_patch4_window7_224", "pvt_v2_b0": "pvt_v2_b0",
            "maxvit_tiny": "maxvit_tiny_tf_224"}


def small(name: str, **more) -> composer.Blueprint:
    blueprint, sets = SMALL[name]
    return composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml",
                         overrides={**sets, "input.size": 64, "classes": INDEX[name]["classes"], **more})


def total(spec) -> tuple[int, int]:
    """(params, MACs) from the configs alone."""
    costs = [cost for _, cost in analytic(composer.plan(spec))]
    return sum(c.params for c in costs), sum(c.macs for c in costs)


def numbers() -> dict:
    return yaml.safe_load(shared_reference("numbers-hybrids.yaml").read_text())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_timm_checkpoint_reproduces_timm_logits(name):
    """Loaded as `--from timm` loads it: every tensor used, timm's parameter count, timm's logits
    within 1e-4 of the largest."""
    assert timm_logits_error(small(name), name) <= 1e-4


@pytest.mark.parametrize("name", sorted(set(READABLE.values())))
def test_full_size_parameters_are_timms(name):
    params, _ = total(composer.load(BLUEPRINTS / "timm" / f"{name}.yaml"))
    assert params == numbers()[name]["params"]


@pytest.mark.parametrize("name", sorted(READABLE))
def test_readable_blueprint_is_the_timm_architecture(name):
    """The readable blueprint and the timm-named one build the same network (parameters and MACs)."""
    ours = total(composer.load(BLUEPRINTS / f"{name}.yaml"))
    assert ours == total(composer.load(BLUEPRINTS / "timm" / f"{READABLE[name]}.yaml"))
    assert ours[0] == numbers()[READABLE[name]]["params"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_analytic_cost_is_the_traced_cost(name):
    result = composer.check(small(name), tolerance=0)
    assert result.ok, [p for p in result.parts if not p.ok]


def test_profile_check_prints_exact_agreement():
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "timm" / "swin_tiny_patch4_window7_224.yaml"), "--check",
                            "--set", "input.size=64", "--set", "blocks.W.attention.window=2"])
    assert r.exit_code == 0, r.output
    assert "0.00%" in r.output


def problems(blueprint: str, **sets) -> list:
    with pytest.raises(BlueprintError) as e:
        composer.plan(composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml", overrides=sets))
    return e.value.problems


def test_a_window_that_does_not_tile_the_grid_is_located():
    """At 64 px Swin's first grid is 16x16, which windows of 7 do not tile; the error names the option
    and sizes that work."""
    ps = problems("swin_tiny_patch4_window7_224", **{"input.size": 64})
    p = ps[0]
    assert p.path == ("blocks", "W", "attention", "window") and p.line is not None
    assert "window 7 does not tile" in p.message and "16x16" in p.message
    assert p.hint.startswith("a grid of 14 or 21 works")


def test_grid_attention_needs_a_lattice_that_divides_the_grid():
    ps = problems("maxvit_tiny_tf_224", **{"input.size": 160})  # grids 40, 20, 10, 5
    assert any(p.path[:3] == ("blocks", "M", "window") and "lattice" in p.message for p in ps)


def test_a_reduction_larger_than_the_grid_is_located():
    """At 32 px the second stage's grid is 4x4: a reduction of 8 leaves nothing of it."""
    [p] = problems("pvt_v2_b0", **{"input.size": 32, "stages.1.block.attention.reduction": 8})
    assert p.path == ("stages", 1, "block", "attention", "reduction")
    assert "leaves nothing of this stage's 4x4 grid" in p.message and "at most 4" in p.hint


FREE_HYBRID = """\
name: mbconv-swin-vit
input: {channels: 3, size: 64}
classes: 10
stem: {type: conv, channels: [16], stride: 2, act: gelu}
layout: C-W-T
blocks:
  C: {type: mbconv, expand: 4, se: 0.25}
  W: {type: transformer, attention: {type: window, window: 4, head_dim: 16}}
  T: {type: transformer, attention: {type: plain, head_dim: 16}}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 2, channels: 32, stride: 2, transition: patch_merging}
  - {depth: 1, channels: 64, stride: 2}
head: {type: pool}
"""


def test_a_free_hybrid_of_mbconv_shifted_windows_and_global_attention(write):
    """MBConv, then Swin windows (the second block shifted), then pooled global attention: exact
    analytic cost, and it trains."""
    bp = composer.load(write(FREE_HYBRID))
    plan = composer.plan(bp)
    assert [sp.out_resolution for sp in plan.stages] == [(16, 16), (8, 8), (4, 4)]
    w = plan.stages[1]
    shifts = [w.block.attention.windows(ctx)[1] for ctx in w.contexts]
    assert shifts == [(0, 0), (2, 2)]
    assert composer.check(bp, tolerance=0).ok
    net = composer.build(bp)
    y = net(torch.randn(2, 3, 64, 64))
    y.logsumexp(-1).sum().backward()
    assert y.shape == (2, 10) and all(p.grad is not None for p in net.parameters())


def test_shifted_windows_mix_across_window_borders():
    """An unshifted window block keeps each window to itself; the shifted one lets a token's output
    depend on tokens of the neighbouring window."""
    from composer.blocks.base import BlockContext
    from composer.blocks.transformer.attention import ATTENTIONS

    config = ATTENTIONS["window"](window=4, heads=2)
    for index, crosses in ((0, False), (1, True)):
        attn = config.build(BlockContext(8, 8, 1, (8, 8), index=index)).eval()
        x = torch.randn(1, 64, 8, requires_grad=True)
        attn(x)[0, 3 * 8 + 3].sum().backward()  # a token at the corner of the first window
        grid = x.grad[0].abs().sum(-1).view(8, 8)
        assert (grid[4:, :].sum() > 0) == crosses and grid[:4, :4].sum() > 0
