"""The JSON Schema for editors: current, accepts every blueprint, rejects what it alone can catch."""

import json

import jsonschema
import pytest
from typer.testing import CliRunner

from cli.app import app
from composer.blueprint import load_text
from composer.blueprint.jsonschema import blueprint_json_schema_text

from .conftest import BLUEPRINTS

SCHEMA_FILE = BLUEPRINTS / "blueprint.schema.json"


def test_schema_file_is_current():
    assert SCHEMA_FILE.read_text() == blueprint_json_schema_text(), \
        "regenerate: composer schema -o blueprints/blueprint.schema.json"


def test_schema_command_writes_the_same(tmp_path):
    out = tmp_path / "s.json"
    r = CliRunner().invoke(app, ["schema", "-o", str(out)])
    assert r.exit_code == 0 and out.read_text() == SCHEMA_FILE.read_text()


@pytest.mark.parametrize("path", sorted(BLUEPRINTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_blueprints_point_editors_at_the_schema_and_pass_it(path):
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=blueprint.schema.json\n")
    jsonschema.validate(load_text(text).data, json.loads(SCHEMA_FILE.read_text()))


@pytest.mark.parametrize("change", [
    ("kernel: 3", "kernal: 3"),  # unknown option
    ("type: mbconv", "type: mbconvv"),  # unknown block type
    ("depth: 2, channels: 96", "depth: 0, channels: 96"),  # out of range
    ("channels: 192", "channels: many"),  # wrong type
    ("stem: {type: conv", "stem: {type: conv, colour: red"),  # unknown stem key
])
def test_schema_rejects_broken_blueprints(change):
    text = (BLUEPRINTS / "coatnet0.yaml").read_text()
    assert change[0] in text
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(load_text(text.replace(*change, 1)).data, json.loads(SCHEMA_FILE.read_text()))
