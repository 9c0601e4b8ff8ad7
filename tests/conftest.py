from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = ROOT / "blueprints"
SHARED_VARIABLE = "COMPOSER_SHARED_REFERENCE"  # .ci/run sets it to ../shared/reference


def shared_reference(*parts: str) -> Path:
    """A path in the shared reference folder: $COMPOSER_SHARED_REFERENCE (relative to the clone),
    else ../shared/reference beside the clone. Set and absent fails the test (CI must compare);
    unset and absent skips it (a clone on its own has no reference to compare with)."""
    given = os.environ.get(SHARED_VARIABLE)
    folder = ROOT / given if given else ROOT.parent / "shared" / "reference"
    path = folder.joinpath(*parts)
    if not path.exists():
        if given:
            pytest.fail(f"{SHARED_VARIABLE}={given}: {path} does not exist")
        pytest.skip(f"no shared reference folder beside this clone ({path}); set {SHARED_VARIABLE} to its path")
    return path


# windows of 7 do not tile a 64x64 input's grids (16, 8, ...); windows of 4 and heads of 8 do
SMALL_WINDOWS = {"swin_tiny": {"blocks.W.attention.window": 4}, "maxvit_tiny": {"blocks.M.window": 4},
                 "timm/swin_tiny_patch4_window7_224": {"blocks.W.attention.window": 4, "blocks.W.attention.head_dim": 8},
                 "timm/maxvit_tiny_tf_224": {"blocks.M.window": 4, "blocks.M.head_dim": 8},
                 "timm/pvt_v2_b0": {"blocks.P.attention.head_dim": 8}}


def small_sets(name: str) -> dict:
    """The overrides that narrow `blueprints/NAME.yaml` for tests (see `small`)."""
    data = yaml.safe_load((BLUEPRINTS / f"{name}.yaml").read_text())
    overrides = {"input.size": 64, "classes": 0}
    stem = data["stem"].get("channels")
    if stem:
        overrides["stem.channels"] = [c // 4 for c in stem] if isinstance(stem, list) else stem // 4
    for i, s in enumerate(data["stages"]):
        overrides[f"stages.{i}.depth"] = min(2, s["depth"])
        overrides[f"stages.{i}.channels"] = s["channels"] // 4
    return {**overrides, **SMALL_WINDOWS.get(name, {})}


def small(name: str, sets: dict | None = None):
    """The blueprint `blueprints/NAME.yaml` narrowed for tests: 64x64 without a classifier (pooled or
    class-token features), each stage at most 2 blocks deep and a quarter as wide (heads and head
    widths still divide every width). The first block of a stage (stride, width change, class token)
    and a plain one both remain, so every code path of the full network runs at a fraction of the
    cost. `sets` are further overrides (`{"classes": 10}`)."""
    import composer

    return composer.load(BLUEPRINTS / f"{name}.yaml", overrides={**small_sets(name), **(sets or {})})


@pytest.fixture(scope="session")
def reference() -> dict:
    return yaml.safe_load((ROOT / "tests" / "data" / "reference_numbers.yaml").read_text())


@pytest.fixture
def write(tmp_path):
    """Write blueprint text to a file and return its path."""

    def _write(text: str, name: str = "bp.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


TINY = """\
name: tiny
input: {channels: 3, size: 32}
classes: 10
stem: {type: conv, channels: [8], stride: 2, act: gelu}
layout: C-T
blocks:
  C: {type: mbconv, expand: 2, kernel: 3, se: 0.25}
  T: {type: transformer, attention: {type: relative, head_dim: 8}}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 2, channels: 32, stride: 2}
head: {type: pool, hidden: 32}
"""


@pytest.fixture
def tiny_text() -> str:
    return TINY


# Property-based tests: a small fixed budget in CI; `HYPOTHESIS_PROFILE=long pytest tests/test_properties.py`
# runs the long profile by hand.
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=1000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(__import__("os").environ.get("HYPOTHESIS_PROFILE", "ci"))


def timm_logits_error(bp, name: str) -> float:
    """Build `bp` with the timm-layout checkpoint tests/data/timm/NAME.safetensors, assert it loads as
    `--from timm` does (timm's parameter count, every tensor used, nothing initialised, ignored or
    resized), and return the largest logit difference from timm's, relative to the largest logit (at
    least 1)."""
    import json

    import composer
    import torch
    from safetensors.torch import load_file

    data = ROOT / "tests" / "data" / "timm"
    entry = json.loads((data / "index.json").read_text())[name]
    net = composer.build(bp, weights=data / f"{name}.safetensors").eval()
    report = net.weights_report
    assert report.layout == "timm"
    assert sum(p.numel() for p in net.parameters()) == entry["params"]
    assert len(report.loaded) == entry["tensors"]
    assert not (report.initialised or report.ignored or report.resized or report.reinitialised)
    io = load_file(data / f"{name}.io.safetensors")
    with torch.no_grad():
        diff = (net(io["input"]) - io["logits"]).abs().max().item()
    return diff / max(1.0, io["logits"].abs().max().item())
