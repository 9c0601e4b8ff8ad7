"""The JSON Schema of the blueprint language, from the pydantic models (descriptions, defaults)."""

from __future__ import annotations

import json

from .schema import blueprint_model


def blueprint_json_schema() -> dict:
    schema = blueprint_model().model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "composer blueprint"
    schema["description"] = "A vision network as a stage layout, a block legend, stages, stem and head."
    return schema


def blueprint_json_schema_text() -> str:
    return json.dumps(blueprint_json_schema(), indent=2, sort_keys=True) + "\n"


CHOICE_SCHEMA = {
    "description": "A choice of a search space: `{one_of: [values]}` or `{range: [low, high, step]}` (inclusive).",
    "oneOf": [
        {"type": "object", "properties": {"one_of": {"type": "array", "minItems": 1}},
         "required": ["one_of"], "additionalProperties": False},
        {"type": "object", "properties": {"range": {"type": "array", "items": {"type": "integer"},
                                                    "minItems": 2, "maxItems": 3}},
         "required": ["range"], "additionalProperties": False},
    ],
}


def _choosable(node):
    """Every property and list item of a schema may also be a choice."""
    if isinstance(node, list):
        return [_choosable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _choosable(v) for k, v in node.items()}
    choice = {"$ref": "#/$defs/Choice"}
    if isinstance(node.get("properties"), dict):
        out["properties"] = {k: {"anyOf": [_choosable(v), choice]} for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        out["items"] = {"anyOf": [_choosable(node["items"]), choice]}
    return out


def space_json_schema() -> dict:
    """The JSON Schema of search spaces: a blueprint in which any value may be a choice."""
    schema = _choosable(blueprint_json_schema())
    schema["$defs"]["Choice"] = CHOICE_SCHEMA
    schema["title"] = "composer search space"
    schema["description"] = ("A blueprint in which any value may be a choice, `{one_of: [...]}` or "
                             "`{range: [low, high, step]}`, for `composer search`.")
    return schema


def space_json_schema_text() -> str:
    return json.dumps(space_json_schema(), indent=2, sort_keys=True) + "\n"
