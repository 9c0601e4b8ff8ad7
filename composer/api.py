"""The Python API: the same verbs as the command line."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

from .analysis.crosscheck import CheckReport, check as _check
from .blueprint import Blueprint, arguments as args
from .blueprint.loader import Source
from .blueprint.overrides import apply_overrides as _apply_overrides
from .blueprint.reading import parse_blueprint, read_blueprint
from .errors import api
from .io.room import memory_room
from .planning.planner import Plan
from .planning.specs import Spec, to_plan

# load, loads, plan and apply_overrides need no torch; the verbs that build or trace import it when called.
if TYPE_CHECKING:
    import torch

    from .network.composed import ComposedNet
    from .network.features import FeatureNet
    from .analysis.memory import TrainMemory
    from .analysis.tracing import Profile


@api
def apply_overrides(source: Source, overrides: dict[str, Any] | None) -> Source:
    """Set dotted keys (`stages.2.depth`, `input.size`) in a loaded blueprint before validation.

    A list is indexed by plain ASCII digits (`stages.0`); a problem with a value set here is later
    located on the command line rather than at the file's line."""
    return _apply_overrides(source, overrides)


@api
def load(path: str | os.PathLike, *, overrides: dict[str, Any] | None = None) -> Blueprint:
    """Read and validate a blueprint file. Raises BlueprintError with every problem located."""
    return read_blueprint(path, overrides)


@api
def loads(text: str, *, file: str | None = None) -> Blueprint:
    """Validate blueprint text."""
    return parse_blueprint(text, file)


@api
def plan(spec: Spec) -> Plan:
    """The static shape plan of a blueprint (path, Blueprint or Plan)."""
    return to_plan(spec)


def available_memory() -> int:
    """Bytes this process may still allocate: the least of free memory, the room under its cgroup
    limit and under its rlimits (composer/io/room.py)."""
    return memory_room()[0]


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

    `features_only=True` returns a backbone (composer.network.features.FeatureNet) whose forward gives the
    (B, C, H, W) maps of the feature levels in `out_indices` (default all; negative count from the
    end; the levels are the last map at each resolution, or every block of an isotropic network),
    described by its `feature_info`.
    """
    from .weights.model import build_network

    return build_network(spec, device=device, seed=seed, weights=weights, weights_from=weights_from, strict=strict,
                         parts=parts, weights_blueprint=weights_blueprint, features_only=features_only,
                         out_indices=out_indices)


@api
def profile(spec: Spec, *, batch: int = 1, elementwise: bool = False) -> Profile:
    """Parameters and MACs per part, counted on meta tensors (no weights allocated)."""
    from .analysis.tracing import profile as _profile

    p = plan(spec)
    args.check_batch(p, batch)
    args.check_flag("elementwise", elementwise)
    return _profile(p, batch=batch, elementwise=elementwise)


@api
def train_memory(spec: Spec, *, batch: int, dtype: str = "float32", optimizer: str = "adamw",
                 grad_checkpointing: bool = False) -> TrainMemory:
    """Bytes a training step needs (weights, gradients, optimizer state, saved activations), from a
    forward pass on meta tensors; `grad_checkpointing` counts what `net.set_grad_checkpointing()` keeps."""
    from .analysis.options import DTYPE_ALIASES, DTYPE_NAMES, OPTIMIZER_STATES
    from .analysis.memory import train_memory as _train_memory

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
    from .analysis.tracing import Profile

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
    from .weights.model import save_network

    save_network(net, blueprint, path, extra=extra)


@api
def load_model(path: str | os.PathLike, *, device: str | torch.device | None = None) -> ComposedNet:
    """Rebuild a network saved by `save` / `composer build -o` (.pt or .safetensors) and load its weights.

    The blueprint is read and the memory checked before any weight is allocated; a file that is
    not a composer model, or whose tensors do not fit its blueprint, raises WeightsError (a
    BlueprintError) naming the file and the tensors.
    """
    from .weights.model import load_network

    return load_network(path, device=device)
