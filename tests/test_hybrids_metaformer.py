"""The MetaFormers (PoolFormer, ConvFormer, CAFormer) and ConvNeXt V2 of blueprints/timm/: timm's
checkpoints load with timm's names and reproduce timm's logits, the full-size networks have timm's
parameter counts, the analytic costs are the traced ones, and bad options are refused where they are.

The small checkpoints come from bench/make_hybrid_reference_b.py (timm's own models at reduced depth
and width, every one-dimensional parameter randomised)."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import composer

from .conftest import BLUEPRINTS, ROOT, shared_reference

DATA = ROOT / "tests" / "data" / "timm"
INDEX = json.loads((DATA / "index.json").read_text())

ONE_BLOCK = {f"stages.{i}.depth": 1 for i in range(4)}


def widths(*ws: int) -> dict:
    return {f"stages.{i}.channels": w for i, w in enumerate(ws)}


# index.json's small checkpoints as overrides of the shipped blueprints (bench/make_hybrid_reference_b.py)
CASES = {
    "convnextv2_tiny_small": ("convnextv2_tiny", {**ONE_BLOCK, **widths(16, 32, 48, 64), "stem.channels": 16}),
    "poolformer_s12_small": ("poolformer_s12", {**ONE_BLOCK, **widths(16, 32, 48, 64)}),
}
# timm 1.0's parameter counts at full size, 1000 classes (../shared/reference/numbers-hybrids.yaml)
PARAMS = {
    "convnextv2_tiny": 28_635_496,
    "poolformer_s12": 11_915_176,
}


def small(name: str, **more) -> composer.Blueprint:
    blueprint, sets = CASES[name]
    return composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml",
                         overrides={**sets, "input.size": INDEX[name]["input"][-1], "classes": INDEX[name]["classes"],
                                    **more})


@pytest.mark.parametrize("name", sorted(CASES))
def test_timm_checkpoint_reproduces_timm_logits(name):
    """Every tensor of timm's checkpoint used under timm's names, timm's parameter count, and timm's
    logits within 1e-4 of the largest."""
    net = composer.build(small(name), weights=DATA / f"{name}.safetensors").eval()
    report = net.weights_report
    assert report.layout == "timm"
    assert sum(p.numel() for p in net.parameters()) == INDEX[name]["params"]
    assert len(report.loaded) == INDEX[name]["tensors"]
    assert not (report.initialised or report.ignored or report.resized or report.reinitialised)
    io = load_file(DATA / f"{name}.io.safetensors")
    with torch.no_grad():
        diff = (net(io["input"]) - io["logits"]).abs().max().item()
    assert diff <= 1e-4 * max(1.0, io["logits"].abs().max().item())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_full_size_parameters_are_timms(name):
    assert composer.profile(BLUEPRINTS / "timm" / f"{name}.yaml").params == PARAMS[name]


def test_parameter_figures_match_the_shared_reference():
    shared = yaml.safe_load(shared_reference("numbers-hybrids.yaml").read_text())
    assert {name: shared[name]["params"] for name in PARAMS} == PARAMS


@pytest.mark.parametrize("name", sorted(CASES))
def test_analytic_cost_is_the_traced_cost(name):
    result = composer.check(composer.plan(small(name)))
    assert result.ok, [p for p in result.parts if not p.ok]


def test_grn_changes_the_output_and_costs_its_parameters():
    """GRN starts as the identity (weight and bias zero) and has 2 parameters per hidden channel."""
    plain = composer.profile(small("convnextv2_tiny_small", **{"blocks.C.grn": False})).params
    with_grn = composer.profile(small("convnextv2_tiny_small")).params
    assert with_grn - plain == 2 * 4 * (16 + 32 + 48 + 64)
