"""Putting checkpoint tensors into a built network: match, convert, resize, report.

A tensor whose shape differs only by trailing 1x1 dimensions (a 1x1 conv vs a Linear) is reshaped;
a tensor that its module can adapt (`fit_tensor(name, tensor)`: a stage's learned position
embedding, a relative-position table, for another grid) is resized by it (bicubic, class tokens
kept), as fine-tuning at a new resolution does; a classifier for another class count is left
at its initialisation. Anything else that is missing or mismatched is an error, unless the load is
partial.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable

import torch
from torch import nn

from ..layers.attention import resize_relative_table  # noqa: F401  (the resizing, where the tables live)
from ..layers.tokens import resize_pos_embed  # noqa: F401
from .read import weights_error

if TYPE_CHECKING:
    from ..network.composed import ComposedNet

OPTIONAL = ("num_batches_tracked",)  # counters some checkpoints leave out


@dataclass
class LoadReport:
    """What a load did with each tensor."""

    file: str
    layout: str  # "composer" or "timm"
    loaded: list[str] = field(default_factory=list)
    resized: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # key, checkpoint shape, our shape
    reinitialised: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # classifier of another size
    initialised: list[str] = field(default_factory=list)  # not in the checkpoint, left at initialisation
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # partial loads only
    ignored: list[str] = field(default_factory=list)  # checkpoint tensors nothing used
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)  # transplants: part -> (matched, tensors)

    def summary(self) -> str:
        lines = [f"weights from {self.file} ({self.layout} layout): {len(self.loaded)} tensors loaded"]
        if self.parts:
            lines[0] += " into " + ", ".join(f"{'stage ' if p.isdigit() else ''}{p} ({hit}/{n} matched)"
                                             for p, (hit, n) in self.parts.items())
        for key, theirs, ours in self.resized:
            lines.append(f"  resized {key}: {_shape(theirs)} -> {_shape(ours)}")
        for key, theirs, ours in self.reinitialised:
            lines.append(f"  re-initialised {key}: checkpoint {_shape(theirs)}, blueprint {_shape(ours)} "
                         f"(another class count)")
        for key, theirs, ours in self.mismatched:
            lines.append(f"  skipped {key}: checkpoint {_shape(theirs)}, blueprint {_shape(ours)}")
        if self.initialised:
            lines.append(f"  left at initialisation ({len(self.initialised)}): {_names(self.initialised)}")
        if self.ignored:
            lines.append(f"  ignored from the checkpoint ({len(self.ignored)}): {_names(self.ignored)}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"file": self.file, "layout": self.layout, "loaded": len(self.loaded),
                "resized": [[k, list(a), list(b)] for k, a, b in self.resized],
                "reinitialised": [[k, list(a), list(b)] for k, a, b in self.reinitialised],
                "mismatched": [[k, list(a), list(b)] for k, a, b in self.mismatched],
                "initialised": self.initialised, "ignored": self.ignored,
                "parts": {p: list(v) for p, v in self.parts.items()}}


def _shape(s: Iterable[int]) -> str:
    return "x".join(str(d) for d in s) or "scalar"


def _names(keys: list[str], limit: int = 8) -> str:
    return ", ".join(keys[:limit]) + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _owners(net: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """Our key -> (module holding it, its name there)."""
    out = {}
    for prefix, module in net.named_modules():
        for name, _ in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            out[f"{prefix}.{name}" if prefix else name] = (module, name)
    return out


def _fit(src: torch.Tensor, target: torch.Tensor, owner: tuple[nn.Module, str] | None
         ) -> tuple[torch.Tensor | None, str]:
    """`src` shaped for `target`: ("same" | "reshaped" | "resized"), or (None, "mismatch")."""
    if src.shape == target.shape:
        return src, "same"
    if src.numel() == target.numel() and [d for d in src.shape if d != 1] == [d for d in target.shape if d != 1]:
        return src.reshape(target.shape), "same"  # 1x1 conv <-> Linear, (C,) <-> (1, C, 1, 1)
    module, name = owner or (None, "")
    fit = getattr(module, "fit_tensor", None)  # a part that can adapt a tensor says so itself
    if fit is not None:
        try:
            fitted = fit(name, src)
        except ValueError:  # not a shape it can adapt
            fitted = None
        if fitted is not None and fitted.shape == target.shape:
            return fitted, "resized"
    return None, "mismatch"


def load_tensors(net: ComposedNet, tensors: dict[str, torch.Tensor], *, file: str, layout: str,
                 strict: bool = True, ignored: Iterable[str] = (), only: Iterable[str] | None = None,
                 droppable: Iterable[str] = ()) -> LoadReport:
    """Copy `tensors` (our keys) into `net`. `only`: restrict to our keys under these prefixes.
    `droppable`: checkpoint tensors that may go unused without an error (a classifier, when the
    blueprint has none)."""
    report = LoadReport(str(file), layout, ignored=sorted(ignored))
    own = net.state_dict(keep_vars=True)
    owners = _owners(net)
    classifier = {f"head.fc.{n}" for n, _ in net.head.fc.named_parameters()}  # another class count: re-initialised
    prefixes = tuple(only) if only is not None else None
    new: dict[str, torch.Tensor] = {}
    missing = []
    for key, target in own.items():
        if prefixes is not None and not key.startswith(prefixes):
            continue
        if key not in tensors:
            if not key.endswith(OPTIONAL):
                missing.append(key)
            continue
        src = tensors[key]
        if not isinstance(src, torch.Tensor):
            raise weights_error(file, f"`{key}` is not a tensor")
        fitted, how = _fit(src, target, owners.get(key))
        if fitted is None:
            entry = (key, tuple(src.shape), tuple(target.shape))
            if key in classifier:
                report.reinitialised.append(entry)
            else:
                report.mismatched.append(entry)
            continue
        if how == "resized":
            report.resized.append((key, tuple(src.shape), tuple(target.shape)))
        new[key] = fitted
        report.loaded.append(key)
    report.initialised = missing
    unexpected = [k for k in report.ignored if k not in set(droppable)]
    if strict and (missing or report.mismatched or unexpected):
        problems = []
        if report.mismatched:
            problems.append("shapes differ: " + "; ".join(f"{k} is {_shape(b)} in the blueprint, {_shape(a)} in the "
                                                         f"checkpoint" for k, a, b in report.mismatched[:6])
                            + (f"; ... ({len(report.mismatched) - 6} more)" if len(report.mismatched) > 6 else ""))
        if missing:
            problems.append(f"{len(missing)} tensors of the blueprint are not in the checkpoint: {_names(missing, 6)}")
        if unexpected:
            problems.append(f"{len(unexpected)} tensors of the checkpoint fit nothing in the blueprint: "
                            f"{_names(unexpected, 6)}")
        raise weights_error(file, "the checkpoint does not fit the blueprint: " + "; ".join(problems),
                            "check that the blueprint is the checkpoint's architecture (same depths, widths and "
                            "options), or load what fits with a partial load (`--partial`, `strict=False`)")
    with torch.no_grad():
        for key, value in new.items():
            target = own[key]
            if target.is_meta:
                continue
            target.copy_(value.to(dtype=target.dtype))
    return report
