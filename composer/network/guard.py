"""The network on the meta device (shapes, no storage), and the guard it makes possible: a network
whose parameters and buffers would not fit in the memory this process may use is refused, with a
location, before anything is allocated."""

from __future__ import annotations

import torch

from ..blueprint.errors import BlueprintError
from ..io.room import memory_room
from ..planning.planner import Plan
from .composed import ComposedNet, build


def meta_network(p: Plan) -> ComposedNet:
    """The network of `p` on the meta device: every module and tensor shape, no storage."""
    return build(p, device="meta")


def _tensor_bytes(module: torch.nn.Module) -> int:
    tensors = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def check_fits_in_memory(p: Plan) -> None:
    """Refuse, with a location, to build a network whose tensors would not fit in the memory this
    process may use. Everything a build allocates is counted, parameters and buffers (relative-
    position tables grow with the square of the token count), from a build on the meta device."""
    meta = meta_network(p)
    # each part, where it is blamed, and its bytes: the largest part takes the blame
    blame = {"stem": ("stem",), "head": ("classes",) if p.classes else ("head",)}
    parts = [(part.title, blame.get(part.kind, ("stages", part.stage, "channels")), part.module(meta))
             for part in meta.parts.top]
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


def build_checked(p: Plan, device: str | torch.device | None = None, seed: int | None = 0) -> ComposedNet:
    """`build`, refusing first on the CPU a network that would not fit in memory."""
    if torch.device(device or "cpu").type == "cpu":
        check_fits_in_memory(p)
    return build(p, device=device, seed=seed)
