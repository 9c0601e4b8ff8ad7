"""`composer draw`: the picture's content (its words), not its pixels."""

import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.tools.draw import draw

from .conftest import BLUEPRINTS

runner = CliRunner()
SVG = "{http://www.w3.org/2000/svg}"


def svg_words(path) -> list[str]:
    return [t.text or "" for t in ET.parse(path).getroot().iter(f"{SVG}text")]


@pytest.mark.parametrize("file", sorted(BLUEPRINTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_blueprint_draws_each_stage(file, tmp_path):
    plan = composer.plan(composer.load(file))
    report = composer.profile(plan)
    out = tmp_path / "arch.svg"
    draw(plan, report, out)
    words = svg_words(out)
    assert f"{plan.name}: {report.params:,} parameters" in " ".join(words)
    assert "stem" in words and "head" in words and plan.stem.type in words
    for sp in plan.stages:
        assert f"s{sp.index + 1}  ({sp.letter})" in words
        assert sp.block.type_name() in words
        assert f"depth {sp.depth} · {sp.out_channels} ch" in words
        assert "x".join(map(str, sp.output_shape)) in words
        assert ("+ class token" in words) >= sp.class_token
    tokens = any(sp.data_format == "tokens" for sp in plan.stages)
    assert ("map → tokens" in words) == tokens
    strides = [plan.stem.total_stride] + [sp.stride for sp in plan.stages]
    assert sum(w.startswith("↓") for w in words) == sum(s > 1 for s in strides)
    # the bar chart labels each part
    assert all(p.name in words for p in report.parts)


def test_draw_png_from_the_command_line(tmp_path):
    out = tmp_path / "arch.png"
    r = runner.invoke(app, ["draw", str(BLUEPRINTS / "coatnet0.yaml"), "-o", str(out), "--set", "stages.3.depth=1"])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(tmp_path.iterdir()) == [out]  # no temp file left behind


@pytest.mark.parametrize("name, message", [("arch.pdf", "must end in .svg or .png"),
                                           ("missing/arch.svg", "its directory does not exist")])
def test_draw_refuses_bad_outputs(tmp_path, name, message):
    r = runner.invoke(app, ["draw", str(BLUEPRINTS / "coatnet0.yaml"), "-o", str(tmp_path / name)])
    assert r.exit_code == 1 and message in r.output


def test_draw_reports_blueprint_errors(write, tmp_path):
    bad = write((BLUEPRINTS / "coatnet0.yaml").read_text().replace("type: mbconv", "type: mbcnv"))
    r = runner.invoke(app, ["draw", str(bad), "-o", str(tmp_path / "a.svg")])
    assert r.exit_code == 1 and "did you mean" in r.output
    assert not (tmp_path / "a.svg").exists()
