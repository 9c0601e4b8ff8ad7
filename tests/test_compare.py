"""`composer compare`: the same figures as `profile`, side by side, and a labelled scatter plot."""

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.analysis.crosscheck import analytic
from composer.tools.compare import compare

from .conftest import BLUEPRINTS
from .test_profile_tools import PLUGIN_BLUEPRINT, plugin_block  # noqa: F401  (fixture)

runner = CliRunner()
FILES = [str(BLUEPRINTS / f) for f in ("coatnet0.yaml", "resnet50.yaml", "convit_tiny.yaml")]


def test_compare_json_matches_profile():
    r = runner.invoke(app, ["compare", *FILES, "--size", "96", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == ["coatnet-0", "resnet-50", "convit-tiny"]
    for row, f in zip(rows, FILES):
        report = composer.profile(composer.load(f, overrides={"input.size": 96}))
        assert (row["params"], row["macs"], row["flops"]) == (report.params, report.macs, report.flops)
        assert {k: v["macs"] for k, v in row["parts"].items()} == {p.name: p.macs for p in report.parts}
        assert row["input"] == [3, 96, 96] and row["train_memory"] is None


@pytest.mark.parametrize("path", sorted([*BLUEPRINTS.glob("*.yaml"), *BLUEPRINTS.glob("timm/*.yaml")]),
                         ids=lambda p: str(p.relative_to(BLUEPRINTS)))
def test_analytic_figures_are_profiles_exactly(path):
    """compare and search report analytic costs; for every shipped blueprint they are profile's
    figures to the last parameter and MAC, part by part."""
    plan = composer.plan(path)
    report = composer.profile(plan)
    costs = analytic(plan)
    assert [(name, c.params, c.macs) for name, c in costs] == [(p.name, p.params, p.macs) for p in report.parts]
    assert sum(c.params for _, c in costs) == report.params
    row = compare([plan])[0]
    assert (row.params, row.macs, row.input) == (report.params, report.macs, report.input[1:])
    assert row.parts == {p.name: {"params": p.params, "macs": p.macs, "share": p.share} for p in report.parts}


def test_compare_traces_a_block_family_without_analytic_cost(plugin_block, write):  # noqa: F811
    path = write(PLUGIN_BLUEPRINT)
    plan = composer.plan(path)
    assert analytic(plan)[2][1] is None
    row, report = compare([plan])[0], composer.profile(plan)
    assert row.parts["s2"]["macs"] == report.parts[2].macs == 2 * 16 * 16 * 9 * 8 * 8
    assert (row.params, row.macs) == (report.params, report.macs)


def test_compare_train_memory_and_table():
    figures = {}
    for optimizer in ("sgd", "adamw"):
        r = runner.invoke(app, ["compare", *FILES[:2], "--size", "64", "--train", "--batch", "4", "--optimizer",
                                optimizer, "--json"])
        assert r.exit_code == 0, r.output
        figures[optimizer] = json.loads(r.stdout)
    for sgd, adamw, f in zip(figures["sgd"], figures["adamw"], FILES):
        assert sgd["name"] == adamw["name"] and sgd["train_batch"] == 4
        # AdamW keeps two float32 moments per parameter and SGD none: 8 bytes for each parameter
        # that tracing counts (profile), and a step needs more than its weights and gradients
        params = composer.profile(composer.load(f, overrides={"input.size": 64})).params
        assert adamw["train_memory"] - sgd["train_memory"] == 8 * params
        assert sgd["train_memory"] > 8 * params + 4 * 4 * 3 * 64 * 64  # ... and the batch's images
    r = runner.invoke(app, ["compare", *FILES[:2], "--size", "64", "--train", "--batch", "4"])
    assert r.exit_code == 0
    header, first = r.stdout.splitlines()[:2]
    assert "train memory" in header and first.startswith("coatnet-0") and "s3 " in first


def test_compare_plot_labels_each_network(tmp_path):
    out = tmp_path / "cmp.svg"
    r = runner.invoke(app, ["compare", *FILES, "--size", "64", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    words = [t.text for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert {"coatnet-0", "resnet-50", "convit-tiny"} <= set(words)
    assert list(tmp_path.iterdir()) == [out]


def test_compare_errors(write, tmp_path):
    r = runner.invoke(app, ["compare", *FILES, "--train"])
    assert r.exit_code == 1 and "--batch" in r.output
    r = runner.invoke(app, ["compare", *FILES, "--plot", str(tmp_path / "x.gif")])
    assert r.exit_code == 1 and ".png or .svg" in r.output
    bad = write((BLUEPRINTS / "resnet50.yaml").read_text().replace("depth: 6", "depth: 0"))
    r = runner.invoke(app, ["compare", FILES[0], str(bad)])
    assert r.exit_code == 1 and f"{bad}:15:" in r.output and "stages[2].depth" in r.output


def _label_boxes(rows):
    from matplotlib.text import Text

    import matplotlib.pyplot as plt
    from composer.tools.compare import figure

    fig = figure(rows)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        return [(a.get_text(), Text.get_window_extent(a, renderer)) for a in fig.composer_labels]
    finally:
        plt.close(fig)


@pytest.mark.parametrize("count", [3, 6, 12])
def test_compare_plot_labels_never_overlap(count):
    """Networks with (nearly) the same figures: their labels' boxes, as the renderer lays them out, are apart."""
    from composer.tools.compare import Row

    rows = [Row(f"network-{i}-with-a-long-name", None, [3, 64, 64], 1_000_000 + i, 2_000_000 + 3 * i, {})
            for i in range(count)]
    boxes = _label_boxes(rows)
    assert sorted(t for t, _ in boxes) == sorted(r.name for r in rows)
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            assert not box_a.overlaps(box_b), (a, b)


def test_compare_plot_of_three_real_networks_has_separate_labels():
    plans = [composer.plan(composer.load(f, overrides={"input.size": 64})) for f in FILES]
    boxes = _label_boxes(compare(plans))
    assert len(boxes) == 3
    assert not any(a.overlaps(b) for i, (_, a) in enumerate(boxes) for _, b in boxes[i + 1:])
