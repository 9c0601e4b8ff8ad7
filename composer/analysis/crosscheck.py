"""The second opinion: analytic costs (from each block's config) against the traced count, per part.

`analytic(plan)` adds up what the stem, every block, every stage's transition and tokens, and the
head say they cost; `check(plan)` compares that with `profile(plan)` part by part and flags any
part whose parameters differ at all or whose MACs differ by more than the tolerance (1%). A part
whose block family states no analytic cost (a plugin may not) is reported as unchecked.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..blocks.cost import Cost
from ..network.parts import network_parts
from ..planning.planner import Plan

if TYPE_CHECKING:  # analytic() needs no torch; check() traces, and imports it then
    from .tracing import Profile


def analytic(plan: Plan) -> list[tuple[str, Cost | None]]:
    """(part, cost for one sample) for the stem, each stage and the head; None where unknown."""
    return [(part.name, part.cost()) for part in network_parts(plan).top]


@dataclass
class PartCheck:
    name: str
    params: int
    analytic_params: int | None  # None: the block family states no analytic cost
    macs: int
    analytic_macs: int | None
    ok: bool

    @property
    def checked(self) -> bool:
        return self.analytic_macs is not None

    @property
    def macs_difference(self) -> float | None:
        """Relative difference of the analytic MACs from the traced ones."""
        if self.analytic_macs is None:
            return None
        if self.macs == 0:
            return 0.0 if self.analytic_macs == 0 else float("inf")
        return (self.analytic_macs - self.macs) / self.macs


@dataclass
class CheckReport:
    parts: list[PartCheck]
    tolerance: float

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parts)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "tolerance": self.tolerance,
                "parts": [{**asdict(p), "macs_difference": p.macs_difference} for p in self.parts]}


def check(plan: Plan, traced: Profile | None = None, tolerance: float = 0.01) -> CheckReport:
    """Compare analytic and traced parameters (exactly) and MACs (within `tolerance`), per part."""
    if traced is None or traced.input[0] != 1 or traced.elementwise_counted:
        from .tracing import profile

        traced = profile(plan)
    out = []
    for (name, cost), part in zip(analytic(plan), traced.parts):
        if cost is None:
            out.append(PartCheck(name, part.params, None, part.macs, None, ok=True))
            continue
        diff = abs(cost.macs - part.macs) / part.macs if part.macs else float(cost.macs != 0)
        out.append(PartCheck(name, part.params, cost.params, part.macs, cost.macs,
                             ok=cost.params == part.params and diff <= tolerance))
    return CheckReport(out, tolerance)
