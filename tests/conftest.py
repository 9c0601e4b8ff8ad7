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
