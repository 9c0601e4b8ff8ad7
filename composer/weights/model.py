"""A network with its weights: built from a blueprint and initialised from a checkpoint, parts of
one or the blueprint's `pretrained:` entries; saved with its blueprint and rebuilt from that file.

The API verbs `composer.build`, `composer.save` and `composer.load_model` are these functions
with their caller's label; training and evaluation call them directly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..blueprint import arguments as args
from ..blueprint.errors import BlueprintError
from ..blueprint.reading import parse_blueprint
from ..blueprint.validation import Blueprint
from ..network.composed import ComposedNet
from ..network.features import FeatureNet
from ..network.guard import build_checked
from ..planning.planner import Plan, plan
from ..planning.specs import Spec, to_plan
from . import LAYOUTS, load_weights, transplant_weights
from .loading import load_tensors
from .saved import read_saved, save_model
from .part_transplant import check_parts as problems_of


def build_network(spec: Spec, *, device: str | torch.device | None = None, seed: int | None = 0,
                  weights: Any = None, weights_from: str = "auto", strict: bool = True,
                  parts: list | None = None, weights_blueprint: Spec | None = None,
                  features_only: bool = False, out_indices: int | Sequence[int] | None = None
                  ) -> ComposedNet | FeatureNet:
    """The network of `spec` with its weights (a checkpoint, parts of one, or the blueprint's
    `pretrained:` entries), as `composer.build` documents; a backbone with `features_only`."""
    p = to_plan(spec)
    args.check_seed(seed)
    args.check_choice("weights_from", weights_from, LAYOUTS)
    args.check_flag("strict", strict)
    args.check_flag("features_only", features_only)
    if out_indices is not None and not features_only:
        raise args.argument_error("`out_indices` chooses the levels of a backbone; it needs `features_only=True`")
    if parts is not None:
        parts = check_parts(p, parts, weights)
    args.check_device(device)
    net = build_checked(p, device=device, seed=seed)
    if weights is not None:
        if parts is None:
            net.weights_report = load_weights(net, p, weights, layout=weights_from, strict=strict)
        else:
            source = to_plan(weights_blueprint) if weights_blueprint is not None else None
            net.weights_report = transplant_weights(net, p, weights, parts, source_plan=source, layout=weights_from,
                                                    strict=strict)
    elif p.blueprint.model.pretrained and torch.device(device or "cpu").type != "meta":
        net.pretrained_reports = _load_pretrained(net, p, strict)
    return FeatureNet(net, out_indices) if features_only else net


def _load_pretrained(net: ComposedNet, p: Plan, strict: bool) -> list:
    """The blueprint's `pretrained:` entries, paths relative to the blueprint's folder."""
    source = p.blueprint.source
    here = Path(source.file).parent if source.file else Path(".")
    reports = []
    for i, entry in enumerate(p.blueprint.model.pretrained):
        checkpoint = here / entry.checkpoint
        if not checkpoint.is_file():
            raise BlueprintError(source.problem(("pretrained", i, "checkpoint"), f"no such file: {checkpoint}"))
        arch = None
        if entry.blueprint is not None:
            if not (here / entry.blueprint).is_file():
                raise BlueprintError(source.problem(("pretrained", i, "blueprint"),
                                                    f"no such file: {here / entry.blueprint}"))
            arch = to_plan(here / entry.blueprint)
        for j, part in enumerate(entry.parts):
            if isinstance(part, int) and part >= len(p.stages):
                raise BlueprintError(source.problem(("pretrained", i, "parts", j),
                                                    f"stage {part} does not exist (stages 0 to {len(p.stages) - 1})"))
        reports.append(transplant_weights(net, p, checkpoint, entry.parts, source_plan=arch, layout=entry.layout,
                                          strict=strict))
    return reports


def check_parts(plan: Plan, parts: Any, weights: Any) -> list:
    """`parts` of composer.build: stem, head and stage indices, only with `weights`."""
    if weights is None:
        raise args.argument_error("`parts` needs `weights` (the checkpoint to transplant them from)")
    if isinstance(parts, (str, bytes)) or not isinstance(parts, (list, tuple)) or not parts \
            or any(isinstance(x, bool) or not isinstance(x, (int, str)) for x in parts):
        raise args.argument_error(f"`parts`: expected a list of stem, head and stage indices such as "
                                  f"['stem', 0, 1], not {parts!r}")
    found = problems_of(plan, parts)
    if found:
        raise args.argument_error(f"`parts`: {'; '.join(found)}")
    return list(parts)


def save_network(net: Any, blueprint: Any, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> None:
    """Write `net`'s weights and its blueprint's text to `path` atomically, after checking the arguments."""
    if not isinstance(net, ComposedNet):
        raise args.argument_error(f"`net` must be a network built by composer.build, not {type(net).__name__}")
    if not isinstance(blueprint, Blueprint):
        raise args.argument_error(f"`blueprint` must be a Blueprint from composer.load, not {type(blueprint).__name__}")
    args.check_path(path, "output path")
    args.check_extra(path, extra)
    save_model(net, blueprint, path, extra=extra)


def load_network(path: str | os.PathLike, *, device: str | torch.device | None = None) -> ComposedNet:
    """The network saved at `path` by `save_network`, its blueprint read and its memory checked
    before any weight is allocated."""
    args.check_path(path, "model path")
    device = args.check_device(device)
    return model_from_saved(read_saved(path), device=device)


def model_from_saved(saved: Any, *, device: str | torch.device | None = None, blueprint: Blueprint | None = None
                     ) -> ComposedNet:
    """The network of a saved model already read (composer.weights.saved.Saved), its weights loaded;
    `blueprint`: its embedded blueprint, when the caller has validated it already (the file is read once)."""
    bp = blueprint if blueprint is not None else parse_blueprint(saved.blueprint_text, file=saved.blueprint_name)
    net = build_checked(plan(bp), device=device)
    load_tensors(net, saved.tensors(), file=str(saved.file), layout="composer", strict=True,
                 ignored=saved.unknown_tensors(net))
    return net
