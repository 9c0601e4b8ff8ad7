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
