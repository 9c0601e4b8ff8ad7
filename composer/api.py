"""The Python API: the same verbs as the command line."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence, Union

import torch

from .blueprint import Blueprint, BlueprintError, Problem, load_text, read_file, validate
from .blueprint.loader import Source
from .build import ComposedNet, build as _build
from .plan import Plan, plan as _plan
from .check import CheckReport, check as _check
from .features import FeatureNet
from .memory import TrainMemory, train_memory as _train_memory
from .profile import Profile, profile as _profile
from .weights import load_weights, transplant_weights
from .weights.load import load_tensors
from .weights.saved import read_saved, save_model

Spec = Union[str, os.PathLike, Blueprint, Plan]


def apply_overrides(source: Source, overrides: dict[str, Any]) -> Source:
    """Set dotted keys (`stages.2.depth`, `input.size`) in a loaded blueprint before validation."""
    if not overrides:
        return source
    data = copy.deepcopy(source.data)
    for dotted, value in overrides.items():
        parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        node = data
        for depth, part in enumerate(parts[:-1]):
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                where = ".".join(str(p) for p in parts[: depth + 1])
                raise BlueprintError(Problem(f"cannot set `{dotted}`: `{where}` does not exist in the blueprint",
                                             (), source.file)) from None
        if isinstance(node, list) and isinstance(parts[-1], int) and parts[-1] >= len(node):
            raise BlueprintError(Problem(f"cannot set `{dotted}`: index {parts[-1]} is out of range", (), source.file))
        if not isinstance(node, (dict, list)):
            raise BlueprintError(Problem(f"cannot set `{dotted}`: its parent is not a mapping or list", (), source.file))
        node[parts[-1]] = value
    return Source(data, source.file, source.text, source.keys, source.values)


def load(path: str | os.PathLike, *, overrides: dict[str, Any] | None = None) -> Blueprint:
    """Read and validate a blueprint file. Raises BlueprintError with every problem located."""
    return validate(apply_overrides(read_file(path), overrides or {}))


def loads(text: str, *, file: str | None = None) -> Blueprint:
    """Validate blueprint text."""
    return validate(load_text(text, file))


def plan(spec: Spec) -> Plan:
    """The static shape plan of a blueprint (path, Blueprint or Plan)."""
    if isinstance(spec, Plan):
        return spec
    if not isinstance(spec, Blueprint):
        spec = load(spec)
    return _plan(spec)


def available_memory() -> int:
    """Bytes of physical memory not in use on this machine."""
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits_in_memory(p: Plan) -> None:
    """Refuse, with a location, to allocate weights that would not fit in this machine's memory."""
    meta = _build(p, device="meta")
    sizes = [sum(t.numel() for t in s.parameters()) for s in meta.stages]
    total = sum(t.numel() for t in meta.parameters())
    need, have = 4 * total, available_memory()
    if need > 0.8 * have:
        worst = max(range(len(sizes)), key=sizes.__getitem__)
        raise BlueprintError(p.blueprint.source.problem(
            ("stages", worst, "channels"),
            f"the network has {total:,} parameters ({need / 2**30:.1f} GiB of float32 weights), more than the "
            f"{have / 2**30:.1f} GiB of memory available; stage {worst} holds {sizes[worst]:,}",
            "`composer profile` counts it without allocating weights"))


def build(spec: Spec, *, device: str | torch.device | None = None, seed: int | None = 0,
          weights: Any = None, weights_from: str = "auto", strict: bool = True,
          parts: list | None = None, weights_blueprint: Spec | None = None,
          features_only: bool = False, out_indices: int | Sequence[int] | None = None) -> ComposedNet | FeatureNet:
    """Build the nn.Module of a blueprint (path, Blueprint or Plan).

    On the CPU, a network whose weights would not fit in free memory is refused with a
    BlueprintError instead of exhausting the machine; `device="meta"` allocates nothing.

    `weights` (a checkpoint path or a state dict) initialises the network from a checkpoint in
    composer's layout or timm's (`weights_from`: "auto", "composer" or "timm"); a classifier for
    another class count is re-initialised and learned position tables are resized to the input size.
    `strict=False` loads what fits. What was loaded is in `net.weights_report` (composer.weights.LoadReport).

    `parts` (["stem", 0, 1, "head"]) transplants only those parts from a checkpoint of another
    architecture, whose blueprint `weights_blueprint` names (needed for timm's layout). Without
    `weights`, the blueprint's own `pretrained:` entries are loaded (not on the meta device).

    `features_only=True` returns a backbone (composer.features.FeatureNet) whose forward gives the
    (B, C, H, W) maps of the stages in `out_indices` (default all; negative count from the end),
    described by its `feature_info`.
    """
    p = plan(spec)
    if torch.device(device or "cpu").type == "cpu":
        check_fits_in_memory(p)
    net = _build(p, device=device, seed=seed)
    if weights is not None:
        if parts is None:
            net.weights_report = load_weights(net, p, weights, layout=weights_from, strict=strict)
        else:
            source = plan(weights_blueprint) if weights_blueprint is not None else None
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
            arch = plan(here / entry.blueprint)
        for j, part in enumerate(entry.parts):
            if isinstance(part, int) and part >= len(p.stages):
                raise BlueprintError(source.problem(("pretrained", i, "parts", j),
                                                    f"stage {part} does not exist (stages 0 to {len(p.stages) - 1})"))
        reports.append(transplant_weights(net, p, checkpoint, entry.parts, source_plan=arch, layout=entry.layout,
                                          strict=strict))
    return reports


def profile(spec: Spec, *, batch: int = 1, elementwise: bool = False) -> Profile:
    """Parameters and MACs per part, counted on meta tensors (no weights allocated)."""
    return _profile(plan(spec), batch=batch, elementwise=elementwise)


def train_memory(spec: Spec, *, batch: int, dtype: str = "float32", optimizer: str = "adamw") -> TrainMemory:
    """Bytes a training step needs (weights, gradients, optimizer state, saved activations), from a
    forward pass on meta tensors."""
    return _train_memory(plan(spec), batch=batch, dtype=dtype, optimizer=optimizer)


def check(spec: Spec, *, traced: Profile | None = None, tolerance: float = 0.01) -> CheckReport:
    """Compare each part's analytic cost (from the block configs) with the traced count; `traced`
    reuses a profile already taken (batch 1, elementwise off), else one is taken."""
    return _check(plan(spec), traced, tolerance=tolerance)


def save(net: ComposedNet, blueprint: Blueprint, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> None:
    """Write weights and the blueprint text to `path` atomically (temp file + rename).

    A `.safetensors` path writes safetensors (the blueprint in its metadata); anything else a torch
    pickle. `extra` adds entries to the saved payload (a training run's recipe, class names,
    optimizer state, ...; in safetensors, strings only); `load_model` ignores entries it does not know.
    """
    save_model(net, blueprint, path, extra=extra)


def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> ComposedNet:
    """Rebuild a network saved by `save` / `composer build -o` (.pt or .safetensors) and load its weights.

    The blueprint is read and the memory checked before any weight is allocated; a file that is
    not a composer model, or whose tensors do not fit its blueprint, raises WeightsError (a
    BlueprintError) naming the file and the tensors.
    """
    saved = read_saved(path)
    p = plan(loads(saved.blueprint_text, file=saved.blueprint_name))
    if torch.device(device or "cpu").type == "cpu":
        check_fits_in_memory(p)
    net = _build(p, device=device)
    load_tensors(net, saved.tensors(), file=str(path), layout="composer", strict=True,
                 ignored=saved.unknown_tensors(net))
    return net
