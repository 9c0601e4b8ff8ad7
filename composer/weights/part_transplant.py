"""Transplant: initialise chosen parts of a network (stem, stages by index, head) from a checkpoint
of another architecture, e.g. a C-C-T-T hybrid whose stem and conv stages come from ConvNeXt.

The checkpoint's tensors are first named as in its own architecture (its blueprint's plan, for a
checkpoint in timm's layout), then the chosen parts are loaded into the same parts of this network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Union

import torch

from ..network.guard import meta_network
from ..planning.planner import Plan
from .loading import LoadReport, load_tensors
from .read import weights_error
from .timm import from_timm, timm_hits
from .transformers import from_transformers

if TYPE_CHECKING:
    from ..network.composed import ComposedNet

Part = Union[str, int]


def part_prefix(part: Part) -> str:
    return f"stages.{part}." if isinstance(part, int) else f"{part}."


def check_parts(plan: Plan, parts: Iterable[Part]) -> list[str]:
    """Problems with `parts` for `plan` (unknown names, stages it does not have)."""
    out = []
    for part in parts:
        if isinstance(part, int):
            if not 0 <= part < len(plan.stages):
                out.append(f"stage {part} does not exist (the network has stages 0 to {len(plan.stages) - 1})")
        elif part not in ("stem", "head"):
            out.append(f"unknown part `{part}` (expected stem, head or a stage index)")
    return out


def _source_tensors(ckpt, source_plan: Plan | None, layout: str) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's tensors under composer's names for its own architecture."""
    if layout == "auto":
        layout = "composer"
        if source_plan is not None:
            meta = meta_network(source_plan)
            own = list(meta.state_dict())
            if timm_hits(source_plan, own, ckpt.tensors) > sum(k in ckpt.tensors for k in own):
                layout = "timm"
    if layout == "composer":
        return ckpt.tensors, layout
    if source_plan is None:
        raise weights_error(ckpt.file, f"a checkpoint in {layout}'s layout needs the blueprint of its architecture "
                                       "to be transplanted",
                            "give it (`--weights-blueprint`, or `blueprint:` in `pretrained`)")
    meta = meta_network(source_plan)
    tensors, _ = (from_timm if layout == "timm" else from_transformers)(source_plan, list(meta.state_dict()),
                                                                        ckpt.tensors)
    return tensors, layout


def transplant(net: ComposedNet, plan: Plan, ckpt, parts: list[Part], *, source_plan: Plan | None = None,
               layout: str = "auto", strict: bool = True) -> LoadReport:
    """Load `parts` of `net` from the same parts of the checkpoint `ckpt` (a read Checkpoint).

    Strict: every tensor of the chosen parts must be found with its shape; otherwise what fits is
    loaded. The report's `parts` says, per part, how many of its tensors matched.
    """
    problems = check_parts(plan, parts)
    if source_plan is not None:
        problems += [f"in the checkpoint's architecture: {p}" for p in check_parts(source_plan, parts)]
    if problems:
        raise weights_error(ckpt.file, "; ".join(problems))
    tensors, layout = _source_tensors(ckpt, source_plan, layout)
    prefixes = tuple(part_prefix(p) for p in parts)
    chosen = {k: v for k, v in tensors.items() if k.startswith(prefixes)}
    own = net.state_dict()
    if source_plan is None and not any(k in own for k in chosen):
        raise weights_error(ckpt.file, f"holds no tensors of {', '.join(map(str, parts))} under composer's names",
                            "for a checkpoint in timm's layout, give the blueprint of its architecture "
                            "(`--weights-blueprint`, or `blueprint:` in `pretrained`)")
    report = load_tensors(net, chosen, file=ckpt.file, layout=layout, strict=strict, only=prefixes,
                          ignored=[k for k in chosen if k not in own])
    for part, prefix in zip(parts, prefixes):
        keys = [k for k in own if k.startswith(prefix)]
        report.parts[str(part)] = (sum(k in set(report.loaded) for k in keys), len(keys))
    return report
