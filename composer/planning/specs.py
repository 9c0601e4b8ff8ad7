"""What the verbs accept as a network: a blueprint path, a Blueprint or a Plan, turned into a Plan."""

from __future__ import annotations

import os
from typing import Union

from ..blueprint.arguments import argument_error
from ..blueprint.reading import read_blueprint
from ..blueprint.validation import Blueprint
from .planner import Plan, plan

Spec = Union[str, os.PathLike, Blueprint, Plan]


def to_plan(spec: Spec) -> Plan:
    """The static shape plan of a blueprint (path, Blueprint or Plan)."""
    if isinstance(spec, Plan):
        return spec
    if not isinstance(spec, (Blueprint, str, os.PathLike)):
        raise argument_error(f"expected a blueprint path, Blueprint or Plan, not {type(spec).__name__}")
    return plan(spec if isinstance(spec, Blueprint) else read_blueprint(spec))
