"""The Python API: the same verbs as the command line."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

from .blueprint import Blueprint, BlueprintError, Problem, load_text, read_file, validate
from .blueprint.loader import Source
from .plan import Plan, plan as _plan
from .check import CheckReport, check as _check
from .limits import memory_room
from . import arguments as args
from .errors import api

# load, loads, plan and apply_overrides need no torch; the verbs that build or trace import it when called.
if TYPE_CHECKING:
    import torch

    from .build import ComposedNet
    from .features import FeatureNet
    from .memory import TrainMemory
    from .profile import Profile

Spec = Union[str, os.PathLike, Blueprint, Plan]


def _override_error(dotted: Any, message: str, hint: str | None = None) -> BlueprintError:
    return args.argument_error(f"cannot set `{dotted}`: {message}", hint)


@api
def apply_overrides(source: Source, overrides: dict[str, Any] | None) -> Source:
    """Set dotted keys (`stages.2.depth`, `input.size`) in a loaded blueprint before validation.

    A list is indexed by plain ASCII digits (`stages.0`); a problem with a value set here is later
    located on the command line rather than at the file's line."""
    if not overrides:
        return source
    if not isinstance(overrides, dict):
        raise args.argument_error(f"overrides must be a dict of dotted keys to values, not {type(overrides).__name__}")
    data = copy.deepcopy(source.data)
    marks = dict(source.overrides)
    for dotted, value in overrides.items():
        if not isinstance(dotted, str) or not dotted:
            raise _override_error(dotted, "keys are dotted names such as `stages.0.depth`")
        node, path = data, []
        parts = dotted.split(".")
        for depth, part in enumerate(parts):
            where = ".".join(parts[:depth]) or "the top level"
            if not part:
                raise _override_error(dotted, "a key part is empty", "keys are joined by single dots")
            if isinstance(node, list):
                if not (part.isascii() and part.isdecimal()):
                    raise _override_error(dotted, f"`{where}` is a list; `{part}` is not an index",
                                          f"use 0 to {len(node) - 1}" if node else None)
                key: Any = int(part)
                if key >= len(node):
                    raise _override_error(dotted, f"`{'.'.join(parts[:depth + 1])}` does not exist; `{where}` has "
                                                  f"{len(node)} entries", f"use 0 to {len(node) - 1}" if node else None)
            elif isinstance(node, dict):
                key = int(part) if part.isascii() and part.isdecimal() and int(part) in node else part
                if depth < len(parts) - 1 and key not in node:
                    if depth == 0:
                        raise _override_error(dotted, f"`{part}` does not exist in the blueprint")
                    node[key] = {}  # a sub-config left at its defaults (validation judges the key)
                elif depth < len(parts) - 1 and isinstance(node[key], str) and node[key]:
                    node[key] = {"type": node[key]}  # `attention: relative` is `{type: relative}`
            else:
                raise _override_error(dotted, f"`{where}` is a single value, not a mapping or list")
            path.append(key)
            if depth < len(parts) - 1:
                node = node[key]
        node[path[-1]] = value
        marks[tuple(path)] = f"{dotted}={_short(value)}"
    return Source(data, source.file, source.text, source.keys, source.values, marks)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 30 else text[:27] + "..."


@api
def load(path: str | os.PathLike, *, overrides: dict[str, Any] | None = None) -> Blueprint:
    """Read and validate a blueprint file. Raises BlueprintError with every problem located."""
    args.check_path(path, "blueprint path")
    return validate(apply_overrides(read_file(path), overrides or {}))


@api
def loads(text: str, *, file: str | None = None) -> Blueprint:
    """Validate blueprint text."""
    if file is not None:
        args.check_path(file, "file name")
    return validate(load_text(text, file))


@api
def plan(spec: Spec) -> Plan:
    """The static shape plan of a blueprint (path, Blueprint or Plan)."""
    if isinstance(spec, Plan):
        return spec
    if not isinstance(spec, (Blueprint, str, os.PathLike)):
        raise args.argument_error(f"expected a blueprint path, Blueprint or Plan, not {type(spec).__name__}")
    if not isinstance(spec, Blueprint):
        spec = load(spec)
    return _plan(spec)


def available_memory() -> int:
    """Bytes this process may still allocate: the least of free memory, the room under its cgroup
    limit and under its rlimits (composer/limits.py)."""
    return memory_room()[0]


def _tensor_bytes(module: torch.nn.Module) -> int:
    tensors = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_fits_in_memory(p: Plan) -> None:
    """Refuse, with a location, to build a network whose tensors would not fit in the memory this
    process may use. Everything a build allocates is counted, parameters and buffers (relative-
    position tables grow with the square of the token count), from a build on the meta device."""
    from .build import build as _build

    meta = _build(p, device="meta")
    # each part, where it is blamed, and its bytes: the largest part takes the blame
    parts = [("the stem", ("stem",), meta.stem)]
    parts += [(f"stage {i}", ("stages", i, "channels"), s) for i, s in enumerate(meta.stages)]
    parts += [("the head", ("classes",) if p.classes else ("head",), meta.head)]
    sizes = [_tensor_bytes(module) for _, _, module in parts]
    params = sum(t.numel() for t in meta.parameters())
    need = _tensor_bytes(meta)
    have, why = memory_room()
    if need > 0.8 * have:
        worst = max(range(len(sizes)), key=sizes.__getitem__)
        name, path, _ = parts[worst]
        raise BlueprintError(p.blueprint.source.problem(
            path,
            f"building the network needs {need / 2**30:.1f} GiB ({params:,} parameters and their buffers), more "
            f"than the {have / 2**30:.1f} GiB this process may use ({why}); {name} holds "
            f"{sizes[worst] / 2**30:.1f} GiB", "`composer profile` counts it without allocating weights"))


@api
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
    (B, C, H, W) maps of the feature levels in `out_indices` (default all; negative count from the
    end; the levels are the last map at each resolution, or every block of an isotropic network),
    described by its `feature_info`.
    """
    import torch

    from .build import build as _build
    from .features import FeatureNet
    from .weights import LAYOUTS, load_weights, transplant_weights

    p = plan(spec)
    args.check_seed(seed)
    args.check_choice("weights_from", weights_from, LAYOUTS)
    args.check_flag("strict", strict)
    args.check_flag("features_only", features_only)
    if out_indices is not None and not features_only:
        raise args.argument_error("`out_indices` chooses the levels of a backbone; it needs `features_only=True`")
    if parts is not None:
        parts = args.check_parts(p, parts, weights)
    if args.check_device(device).type == "cpu":
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
    from .weights import transplant_weights

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


@api
def profile(spec: Spec, *, batch: int = 1, elementwise: bool = False) -> Profile:
    """Parameters and MACs per part, counted on meta tensors (no weights allocated)."""
    from .profile import profile as _profile

    p = plan(spec)
    args.check_batch(p, batch)
    args.check_flag("elementwise", elementwise)
    return _profile(p, batch=batch, elementwise=elementwise)


@api
def train_memory(spec: Spec, *, batch: int, dtype: str = "float32", optimizer: str = "adamw",
                 grad_checkpointing: bool = False) -> TrainMemory:
    """Bytes a training step needs (weights, gradients, optimizer state, saved activations), from a
    forward pass on meta tensors; `grad_checkpointing` counts what `net.set_grad_checkpointing()` keeps."""
    from .choices import DTYPE_ALIASES, DTYPE_NAMES, OPTIMIZER_STATES
    from .memory import train_memory as _train_memory

    p = plan(spec)
    args.check_batch(p, batch)
    args.check_choice("dtype", dtype, [*DTYPE_NAMES, *DTYPE_ALIASES])
    args.check_choice("optimizer", optimizer, OPTIMIZER_STATES)
    args.check_flag("grad_checkpointing", grad_checkpointing)
    try:
        return _train_memory(p, batch=batch, dtype=dtype, optimizer=optimizer, grad_checkpointing=grad_checkpointing)
    except ValueError as exc:  # torch's check that BatchNorm in training sees more than one value
        if "more than 1 value per channel" not in str(exc):
            raise
        raise args.argument_error(
            f"`--batch {batch}`: in training, BatchNorm needs more than one value per channel, but a part of this "
            f"network reduces each sample to 1x1", "train with a batch of 2 or more, or a larger input size") from None


@api
def check(spec: Spec, *, traced: Profile | None = None, tolerance: float = 0.01) -> CheckReport:
    """Compare each part's analytic cost (from the block configs) with the traced count; `traced`
    reuses a profile already taken (batch 1, elementwise off), else one is taken."""
    from .profile import Profile

    p = plan(spec)
    if traced is not None and not isinstance(traced, Profile):
        raise args.argument_error(f"`traced` must be a Profile from composer.profile, not {type(traced).__name__}")
    args.check_tolerance(tolerance)
    return _check(p, traced, tolerance=tolerance)


@api
def save(net: ComposedNet, blueprint: Blueprint, path: str | os.PathLike, *, extra: dict[str, Any] | None = None) -> None:
    """Write weights and the blueprint text to `path` atomically (temp file + rename).

    A `.safetensors` path writes safetensors (the blueprint in its metadata); anything else a torch
    pickle. `extra` adds entries to the saved payload (a training run's recipe, class names,
    optimizer state, ...; in safetensors, strings only); `load_model` ignores entries it does not know.
    """
    from .weights.saved import save_model

    args.check_save(net, blueprint, path, extra)
    save_model(net, blueprint, path, extra=extra)


@api
def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> ComposedNet:
    """Rebuild a network saved by `save` / `composer build -o` (.pt or .safetensors) and load its weights.

    The blueprint is read and the memory checked before any weight is allocated; a file that is
    not a composer model, or whose tensors do not fit its blueprint, raises WeightsError (a
    BlueprintError) naming the file and the tensors.
    """
    import torch

    from .build import build as _build
    from .weights.load import load_tensors
    from .weights.saved import read_saved

    args.check_path(path, "model path")
    device = args.check_device(device)
    saved = read_saved(path)
    p = plan(loads(saved.blueprint_text, file=saved.blueprint_name))
    if torch.device(device or "cpu").type == "cpu":
        check_fits_in_memory(p)
    net = _build(p, device=device)
    load_tensors(net, saved.tensors(), file=str(path), layout="composer", strict=True,
                 ignored=saved.unknown_tensors(net))
    return net
