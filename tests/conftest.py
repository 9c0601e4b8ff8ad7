from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINTS = ROOT / "blueprints"


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
  T: {type: transformer, attention: relative, head_dim: 8}
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
