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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .build import build
from .plan import Plan
from .repeats import count_repeats_once

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# optimizer -> state tensors kept per parameter
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adamw": 2, "adam": 2}


@dataclass
class TrainMemory:
    batch: int
    dtype: str
    optimizer: str
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    activations_by_part: dict[str, int]

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        return d


def train_memory(plan: Plan, *, batch: int, dtype: str = "float32", optimizer: str = "adamw") -> TrainMemory:
    """Bytes one training step needs: weights, gradients, optimizer state and saved activations."""
    dtype = DTYPE_ALIASES.get(dtype, dtype)
    torch_dtype = DTYPES[dtype]
    net = build(plan, device="meta").to(torch_dtype).train()
    params = list(net.parameters())
    param_storages = {p.untyped_storage()._cdata for p in params}
    item = torch.empty((), dtype=torch_dtype, device="meta").element_size()
    weights = sum(p.numel() for p in params) * item

    parts = [("stem", net.stem)] + [(f"s{i + 1}", s) for i, s in enumerate(net.stages)] + [("head", net.head)]
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

    class PartLedger:  # saved bytes of the current part, for replaying repeated blocks
        def mark(self) -> int:
            return part_bytes[current[0]]

        def since(self, mark: int) -> int:
            return part_bytes[current[0]] - mark

        def add(self, delta: int) -> None:
            part_bytes[current[0]] += delta

    count_repeats_once(net, plan.stages, PartLedger())
    c, h, w = plan.input_shape
    x = torch.empty(batch, c, h, w, device="meta", dtype=torch_dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        for name, module in parts:
            current[0] = name
            x = module(x)
    return TrainMemory(
        batch=batch, dtype=dtype, optimizer=optimizer, weights=weights, gradients=weights,
        optimizer_state=OPTIMIZER_STATES[optimizer] * weights, activations=sum(part_bytes.values()),
        activations_by_part=part_bytes)


def measure_train_peak(plan: Plan, *, batch: int, optimizer: str = "adamw", steps: int = 2) -> int:
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
