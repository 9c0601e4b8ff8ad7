"""The scalar policy of the blueprint language, shared by every model written in it: blocks, stems,
heads, transitions, stages, and training recipes.

This module imports nothing of composer, so the part library (composer/blocks/) can base its
configs on it while the blueprint schema composes those configs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

# No number in a blueprint needs to be larger; every derived width and tensor size then stays far
# from overflowing (a width times a ratio times a kernel area fits in 64 bits many times over).
MAX_NUMBER = 1 << 20


class StrictModel(BaseModel):
    """Base of every model of the blueprint language (blocks, stems, heads, transitions, stages).

    One scalar policy for all of them, so options added later are covered too: a bool or a string
    never passes as a number (`depth: true`, `classes: "10"`), an integer option takes no float,
    floats are finite, and no number exceeds MAX_NUMBER in size. Unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _bounded(cls, value):
        for number in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(number, (int, float)) and not isinstance(number, bool) and abs(number) > MAX_NUMBER:
                raise ValueError(f"input should be at most {MAX_NUMBER:,} in size")
        return value
