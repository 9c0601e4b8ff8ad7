"""profile: count parameters and multiply-accumulates (MACs) on meta tensors, per part.

The network is built on the meta device, so no weights are allocated, and run part by part (stem,
each stage, head) under a dispatch mode that sees every aten operator:

- matrix products and convolutions, attention products included (on meta tensors,
  scaled_dot_product_attention decomposes into its two `bmm`s), are counted with the formulas of
  `torch.utils.flop_counter` (FLOPs there; MACs = FLOPs / 2);
- norms and adaptive pooling follow fvcore's conventions, so the totals agree with fvcore's
  (`count_with_fvcore` gives that second opinion on a real model);
- elementwise operators (activations, residual adds, softmax, pooling) are treated as free and
  listed as such, or counted one per output element with `elementwise=True`;
- operators that only move or view data cost nothing;
- anything else is listed in `uncounted_ops`, never dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from ..network.composed import ComposedNet, build
from ..planning.planner import Plan
from .repeats import count_repeats_once

aten = torch.ops.aten


def _numel(t: Any) -> int:
    return t.numel() if isinstance(t, torch.Tensor) else 0


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


def _torch_rule(packet) -> Callable:
    formula = flop_registry[packet]

    def rule(args, kwargs, out) -> int:
        return formula(*args, **kwargs, out_val=out) // 2  # FLOPs -> MACs

    return rule


def _sdpa_cpu(args, kwargs, out) -> int:
    q, k, v = args[:3]
    return sdpa_flop_count(q.shape, k.shape, v.shape) // 2


def _batch_norm(args, kwargs, out) -> int:
    # fvcore: inference 1 MAC per element (2 with affine); training as a norm (4, 5 with affine)
    x, weight = args[0], args[1]
    training = bool(args[5]) if len(args) > 5 and isinstance(args[5], bool) else False
    affine = weight is not None
    return _numel(x) * ((5 if affine else 4) if training else (2 if affine else 1))


def _bn_no_training(args, kwargs, out) -> int:
    return _numel(args[0]) * (2 if args[1] is not None else 1)


def _bn_legit(args, kwargs, out) -> int:
    training = bool(args[5]) if len(args) > 5 else True
    affine = args[1] is not None
    return _numel(args[0]) * ((5 if affine else 4) if training else (2 if affine else 1))


def _layer_norm(args, kwargs, out) -> int:
    affine = len(args) > 2 and args[2] is not None
    return _numel(args[0]) * (5 if affine else 4)


def _group_norm(args, kwargs, out) -> int:
    affine = len(args) > 1 and args[1] is not None
    return _numel(args[0]) * (5 if affine else 4)


def _input_elements(args, kwargs, out) -> int:
    return _numel(args[0])


RULES: dict[Any, Callable] = {packet: _torch_rule(packet) for packet in flop_registry
                              if not str(packet).endswith("backward") and "flex" not in str(packet)}
RULES.update({
    aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu,
    aten.native_batch_norm: _batch_norm,
    aten._native_batch_norm_legit_no_training: _bn_no_training,
    aten._native_batch_norm_legit: _bn_legit,
    aten.native_layer_norm: _layer_norm,
    aten.native_group_norm: _group_norm,
    aten._adaptive_avg_pool2d: _input_elements,
})

# Elementwise arithmetic: free by default (as in the papers' and fvcore's figures), but listed.
FREE = {getattr(aten, name) for name in (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "exp", "rsqrt", "sqrt", "pow",
    "relu", "relu_", "gelu", "silu", "silu_", "sigmoid", "sigmoid_", "tanh", "hardtanh", "hardtanh_",
    "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_", "softmax", "_softmax", "_safe_softmax",
    "mean", "sum", "max_pool2d_with_indices", "avg_pool2d", "clamp", "clamp_min", "where", "erf",
    "bernoulli_", "masked_fill",
)}

# Operators that create, view or move data and do no arithmetic.
MOVEMENT = {getattr(aten, name) for name in (
    "view", "_unsafe_view", "reshape", "permute", "transpose", "t", "expand", "clone", "contiguous",
    "unbind", "split", "split_with_sizes", "slice", "select", "index", "cat", "stack", "detach",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros", "zeros_like",
    "ones", "ones_like", "full", "fill_", "zero_", "arange", "flatten", "unsqueeze", "squeeze",
    "copy_", "_to_copy", "alias", "as_strided", "lift_fresh", "_reshape_alias", "unflatten",
    "native_dropout", "dropout", "lift_fresh_copy", "embedding", "repeat", "roll", "pad",
    "constant_pad_nd", "_to_dtype", "to",
) if hasattr(aten, name)}


def _op_name(packet) -> str:
    return str(packet).replace("aten.", "aten::")


class _CounterLedger:
    """The counter of the part being profiled, as a ledger for replaying repeated blocks."""

    counter: "OpCounter"

    def mark(self) -> tuple:
        c = self.counter
        return c.macs, Counter(c.by_op), Counter(c.free), Counter(c.uncounted)

    def since(self, mark: tuple) -> tuple:
        c = self.counter
        return c.macs - mark[0], c.by_op - mark[1], c.free - mark[2], c.uncounted - mark[3]

    def add(self, delta: tuple) -> None:
        c = self.counter
        c.macs += delta[0]
        c.by_op.update(delta[1])
        c.free.update(delta[2])
        c.uncounted.update(delta[3])


class OpCounter(TorchDispatchMode):
    """Counts MACs of every aten operator that runs inside it (meta or real tensors)."""

    def __init__(self, elementwise: bool = False):
        super().__init__()
        self.elementwise = elementwise
        self.macs = 0
        self.by_op: Counter[str] = Counter()
        self.free: Counter[str] = Counter()
        self.uncounted: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        name = _op_name(packet)
        if packet in RULES:
            n = int(RULES[packet](args, kwargs, out))
        elif packet in FREE:
            self.free[name] += 1
            n = _numel(_first(out)) if self.elementwise else 0
        elif packet in MOVEMENT:
            n = 0
        else:
            self.uncounted[name] += 1
            n = 0
        if n:
            self.macs += n
            self.by_op[name] += n
        return out


@dataclass
class PartProfile:
    name: str
    label: str
    output_shape: list[int]
    params: int
    macs: int
    share: float = 0.0


@dataclass
class Profile:
    name: str
    input: list[int]
    params: int
    macs: int
    parts: list[PartProfile]
    macs_by_op: dict[str, int]
    free_ops: dict[str, int]
    uncounted_ops: dict[str, int]
    elementwise_counted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flops"] = self.flops
        d["stages"] = d.pop("parts")
        return d


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def profile(plan: Plan, *, batch: int = 1, elementwise: bool = False) -> Profile:
    """Parameters and MACs of the planned network, per part, counted on meta tensors."""
    net = build(plan, device="meta").eval()
    c, h, w = plan.input_shape
    x = torch.empty(batch, c, h, w, device="meta")
    ledger = _CounterLedger()
    count_repeats_once(net, ledger)
    results, by_op, free, uncounted = [], Counter(), Counter(), Counter()
    with torch.no_grad():
        for part in net.parts.top:
            module = part.module(net)
            counter = ledger.counter = OpCounter(elementwise)
            with counter:
                x = module(x)
            results.append(PartProfile(part.name, part.label, list(x.shape[1:]), _params(module), counter.macs))
            by_op.update(counter.by_op)
            free.update(counter.free)
            uncounted.update(counter.uncounted)
    total = sum(r.macs for r in results)
    for r in results:
        r.share = r.macs / total if total else 0.0
    return Profile(
        name=plan.name, input=[batch, c, h, w], params=_params(net), macs=total, parts=results,
        macs_by_op=dict(by_op.most_common()), free_ops=dict(sorted(free.items())),
        uncounted_ops=dict(sorted(uncounted.items())), elementwise_counted=elementwise)


# --- second opinion: fvcore's jit-trace counter on a real (small) model -------------------------

def _fvcore_sdpa(inputs, outputs) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(i) for i in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]  # QK^T and AV


def count_with_fvcore(model: torch.nn.Module, inputs: torch.Tensor) -> tuple[int, dict[str, int]]:
    """MACs of `model` on real `inputs` by fvcore's FlopCountAnalysis (jit trace), with a handle
    for scaled_dot_product_attention; returns (macs, uncounted operators)."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model.eval(), inputs)
    analysis.set_op_handle("aten::scaled_dot_product_attention", _fvcore_sdpa)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analysis.total()
    return int(total), dict(analysis.unsupported_ops())


def profile_module_parts(net: ComposedNet) -> dict[str, int]:
    """Parameters of stem, each stage and head of a built network."""
    return {part.name: _params(part.module(net)) for part in net.parts.top}
