"""Other sizes of the reproduced families, written as `--set` overrides of the shipped blueprints the
way a user reads them from docs/, match their published figures (tests/data/published_numbers.yaml)."""

import pytest
import yaml
from typer.testing import CliRunner

from cli.app import app

from .conftest import BLUEPRINTS, ROOT

PUBLISHED = yaml.safe_load((ROOT / "tests" / "data" / "published_numbers.yaml").read_text())

RESNET18 = ["blocks.B={type: basic}", "stages.0.channels=64", "stages.1.channels=128",
            "stages.2.channels=256", "stages.3.channels=512"]

FAMILIES = {
    "coatnet_1": ("coatnet1", []),
    "coatnet_2": ("coatnet2", []),
    "coatnet_3": ("coatnet3", []),
    "resnet18": ("resnet50", RESNET18 + [f"stages.{i}.depth=2" for i in range(4)]),
    "resnet34": ("resnet50", RESNET18 + ["stages.0.depth=3", "stages.1.depth=4", "stages.2.depth=6",
                                         "stages.3.depth=3"]),
    "resnet101": ("resnet50", ["stages.2.depth=23"]),
    "resnet152": ("resnet50", ["stages.1.depth=8", "stages.2.depth=36"]),
    "vit_small_patch16": ("vit_b16", ["stem.channels=384", "stages.0.channels=384", "blocks.T.attention.heads=6"]),
    "deit_tiny_patch16": ("vit_b16", ["stem.channels=192", "stages.0.channels=192", "blocks.T.attention.heads=3"]),
    "efficientnet_b1": ("efficientnet_b0", ["input.size=240"] + [f"stages.{i}.depth={d}" for i, d in
                                                                 enumerate([2, 3, 3, 4, 4, 5, 2])]),
    "cvt_21": ("cvt21", []),
    "convnext_small": ("convnext_tiny", ["stages.2.depth=27"]),
    "convnext_base": ("convnext_tiny", ["stem.channels=128", "stages.0.channels=128", "stages.1.channels=256",
                                        "stages.2.channels=512", "stages.3.channels=1024", "stages.2.depth=27"]),
}


def _profile(blueprint: str, sets: list[str]) -> dict:
    args = ["profile", str(BLUEPRINTS / f"{blueprint}.yaml"), "--json"]
    for s in sets:
        args += ["--set", s]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.stdout)


def test_every_published_figure_is_checked():
    assert set(FAMILIES) == set(PUBLISHED)


@pytest.mark.parametrize("key", sorted(FAMILIES))
def test_family_member_matches_published_figures(key):
    blueprint, sets = FAMILIES[key]
    ref = PUBLISHED[key]
    report = _profile(blueprint, sets)
    assert report["uncounted_ops"] == {}
    if "params" in ref:
        assert report["params"] == ref["params"]
    else:
        assert report["params"] == pytest.approx(float(ref["paper_params"]), rel=0.01)
    if "paper_macs" in ref:
        assert report["macs"] == pytest.approx(float(ref["paper_macs"]), rel=0.02)
