"""Training memory, estimated before any weight exists.

The network is built on the meta device and run forward in training mode under
`torch.autograd.graph.saved_tensors_hooks`, which sees every tensor autograd keeps for the backward
pass. Their storages (each counted once, parameters excluded) are the activation memory. Weights,
gradients and optimizer state follow from the parameter count:

    total = weights + gradients + optimizer state + saved activations

Everything is held in `dtype` (pure float32, bfloat16 or float16 training). Attention runs in the
math form on meta tensors, so the attention probabilities are counted as saved; fused
flash/memory-efficient kernels keep less. The figure leaves out the allocator's overhead and
short-lived temporaries of the backward pass.

With gradient checkpointing (`net.set_grad_checkpointing()`, which recomputes each block in the
backward pass), a block keeps only its input; the largest block's saved activations exist again
while it is recomputed, one block at a time:

    activations = saved outside the blocks + inputs of the blocks + the largest block's saved (recompute)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..network.composed import build
from .options import DTYPE_ALIASES, DTYPE_NAMES, OPTIMIZER_STATES
from ..network.parts import network_parts
from ..planning.planner import Plan
from .repeats import count_repeats_once

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}


@dataclass
class TrainMemory:
    batch: int
    dtype: str
    optimizer: str
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    activations_by_part: dict[str, int]  # with checkpointing, also "recompute": the largest block's saved bytes
    grad_checkpointing: bool = False

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        return d


def train_memory(plan: Plan, *, batch: int, dtype: str = "float32", optimizer: str = "adamw",
                 grad_checkpointing: bool = False) -> TrainMemory:
    """Bytes one training step needs: weights, gradients, optimizer state and saved activations
    (with `grad_checkpointing`, as the network saves them after `set_grad_checkpointing()`)."""
    dtype = DTYPE_ALIASES.get(dtype, dtype)
    torch_dtype = DTYPES[dtype]
    net = build(plan, device="meta").to(torch_dtype).train()
    params = list(net.parameters())
    param_storages = {p.untyped_storage()._cdata for p in params}
    item = torch.empty((), dtype=torch_dtype, device="meta").element_size()
    weights = sum(p.numel() for p in params) * item

    parts = [(part.name, part.module(net)) for part in net.parts.top]
    part_bytes = {name: 0 for name, _ in parts}
    current = ["stem"]
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage._cdata
        if key not in param_storages and key not in seen:
            seen.add(key)
            part_bytes[current[0]] += storage.nbytes()
        return t

    largest_block = [0]

    class PartLedger:  # saved bytes of the current part, for replaying repeated blocks
        def mark(self) -> int:
            return part_bytes[current[0]]

        def since(self, mark: int) -> int:
            return part_bytes[current[0]] - mark

        def add(self, delta: int) -> None:
            part_bytes[current[0]] += delta

        def block(self, saved: int, input_shape: tuple[int, ...]) -> None:
            """A block ran (or was replayed) that saved `saved` bytes; checkpointed, it keeps its input instead."""
            if grad_checkpointing:
                part_bytes[current[0]] += math.prod(input_shape) * item - saved
                largest_block[0] = max(largest_block[0], saved)

    count_repeats_once(net, PartLedger())
    c, h, w = plan.input_shape
    x = torch.empty(batch, c, h, w, device="meta", dtype=torch_dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for name, module in parts:
            current[0] = name
            x = module(x)
    if grad_checkpointing:
        part_bytes["recompute"] = largest_block[0]
    return TrainMemory(
        batch=batch, dtype=dtype, optimizer=optimizer, weights=weights, gradients=weights,
        optimizer_state=OPTIMIZER_STATES[optimizer] * weights, activations=sum(part_bytes.values()),
        activations_by_part=part_bytes, grad_checkpointing=grad_checkpointing)


def measure_train_peak(plan: Plan, *, batch: int, optimizer: str = "adamw", steps: int = 2,
                       grad_checkpointing: bool = False) -> int:
    """Bytes of resident memory a real float32 training step on the CPU adds to this process (Linux).

    Peak resident set (VmHWM) after `steps` steps minus the resident set before the weights are
    built. Run it in a fresh process: the peak of anything the process did before counts too.
    glibc's malloc is told to map every block above 128 KiB on its own (a fixed mmap threshold),
    so a freed tensor leaves the resident set at once instead of lingering in the heap.
    """
    import ctypes

    import torch.nn.functional as F

    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD; also stops its drift
    except (OSError, AttributeError):
        pass

    def status(field: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024  # kB
        raise OSError(f"/proc/self/status has no {field}")

    c, h, w = plan.input_shape
    x = torch.randn(batch, c, h, w)
    target = torch.randint(0, max(1, plan.classes), (batch,))
    base = status("VmRSS")
    net = build(plan).train()
    net.set_grad_checkpointing(grad_checkpointing)
    make = {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1),
            "momentum": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
            "adamw": lambda ps: torch.optim.AdamW(ps), "adam": lambda ps: torch.optim.Adam(ps)}
    opt = make[optimizer](net.parameters())
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = F.cross_entropy(out, target) if plan.classes else out.square().mean()
        loss.backward()
        opt.step()
    return status("VmHWM") - base


@dataclass(frozen=True)
class _PartTrace:
    saved_bytes: int  # storages the part saves for backward, its input's excluded
    saves_input: bool
    saves_output: bool
    out_shape: tuple[int, ...]  # per sample


def _config(model) -> tuple[str, str]:
    """A hashable key of a config model (lists inside make the models themselves unhashable)."""
    return type(model).__name__, model.model_dump_json()


class ActivationCache:
    """Saved-activation bytes of many networks, each distinct part traced once.

    A search evaluates thousands of networks that share most of their parts (the same stem, the
    same stage at the same place and width), so each part is traced on meta tensors the first time
    it is seen and remembered by its configuration. `activations(plan)` equals
    `train_memory(plan, ...).activations` exactly: a storage saved on both sides of a boundary (a
    part's output that it saves, and that the next part saves as its input) counts once, as in the
    whole-network trace. Drop-path rates are remembered only as zero or not: any positive rate
    saves the same mask.
    """

    def __init__(self, batch: int, dtype: str = "float32"):
        self.batch = batch
        self.dtype = DTYPES[DTYPE_ALIASES.get(dtype, dtype)]
        self.parts: dict[tuple, _PartTrace] = {}

    def activations(self, plan: Plan) -> int:
        from dataclasses import replace

        item = torch.empty((), dtype=self.dtype, device="meta").element_size()
        shape: tuple[int, ...] = plan.input_shape
        total, previous_saves_output = 0, False
        parts = []
        for part in network_parts(plan).top:
            if part.kind == "stage":
                sp = part.config
                contexts = tuple(replace(c, drop_path=float(c.drop_path > 0)) for c in sp.contexts)
                key = ("stage", _config(sp.block), _config(sp.transition), sp.in_channels, sp.out_channels, sp.stride,
                       sp.class_token, sp.pos_embed, sp.prefix_in, sp.prefix_out, sp.out_resolution, contexts)
            else:
                key = (part.kind, _config(part.config), part.context, part.classes)
            parts.append((key, part.build))
        for key, make in parts:
            key = (*key, shape)
            trace = self.parts.get(key)
            if trace is None:
                trace = self.parts[key] = self._trace(make, shape, needs_grad=key[0] != "stem")
            total += trace.saved_bytes
            if trace.saves_input and not previous_saves_output:
                total += self.batch * math.prod(shape) * item
            previous_saves_output, shape = trace.saves_output, trace.out_shape
        return total

    def _trace(self, make, shape: tuple[int, ...], needs_grad: bool) -> _PartTrace:
        with torch.device("meta"):
            module = make().to(self.dtype).train()
        params = {p.untyped_storage()._cdata for p in module.parameters()}
        # after the stem, a part's input carries the gradient of everything before it, which changes
        # what autograd saves (a pooled shortcut keeps its input and indices only then)
        x = torch.empty(self.batch, *shape, device="meta", dtype=self.dtype, requires_grad=needs_grad)
        saved: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage._cdata not in params:
                saved[storage._cdata] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            y = module(x)
        source = x.untyped_storage()._cdata
        return _PartTrace(sum(n for k, n in saved.items() if k != source), source in saved,
                          y.untyped_storage()._cdata in saved, tuple(y.shape[1:]))
