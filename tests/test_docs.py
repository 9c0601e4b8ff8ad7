"""Generated documentation is in step with the code."""

from typer.testing import CliRunner

from cli.app import app
from composer.blocks import BLOCKS
from composer.blueprint.grammar import render_blocks, render_grammar

from .conftest import ROOT


def test_grammar_reference_is_current():
    on_disk = (ROOT / "docs" / "grammar.md").read_text()
    assert on_disk == render_grammar(), "regenerate: python -m composer.blueprint.grammar > docs/grammar.md"


def test_blocks_command_lists_every_block_and_option():
    r = CliRunner().invoke(app, ["blocks"])
    assert r.exit_code == 0
    for name, cls in BLOCKS.items():
        assert f"{name}: " in r.stdout
        for option in cls.model_fields:
            if option != "type":
                assert f"  {option} " in r.stdout


def test_block_catalogue_is_current_and_matches_the_command():
    on_disk = (ROOT / "docs" / "blocks.md").read_text()
    assert on_disk == render_blocks(), "regenerate: composer blocks --markdown > docs/blocks.md"
    r = CliRunner().invoke(app, ["blocks", "--markdown"])
    assert r.exit_code == 0 and r.stdout == on_disk
    text = CliRunner().invoke(app, ["blocks"]).stdout
    for name, cls in BLOCKS.items():
        assert f"## `{name}`" in on_disk and f"{name}: " in text
        for option in cls.model_fields:
            if option != "type":
                assert f"| `{option}` |" in on_disk


def _error_examples():
    import re

    text = (ROOT / "docs" / "errors.md").read_text()
    return re.findall(r"## (.+?)\n\n```yaml\n(.*?)\n```\n\n```text\n(.*?)\n```", text, re.S)


def test_error_catalogue_shows_real_output(tmp_path, monkeypatch):
    examples = _error_examples()
    assert len(examples) >= 10
    monkeypatch.chdir(tmp_path)
    for title, blueprint, expected in examples:
        (tmp_path / "bp.yaml").write_text(blueprint + "\n")
        r = CliRunner().invoke(app, ["validate", "bp.yaml"])
        assert r.exit_code == 1, title
        assert r.stderr.rstrip("\n") == expected, title
