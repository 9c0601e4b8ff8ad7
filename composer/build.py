"""build: plan -> ComposedNet (stem -> stages -> head), an ordinary nn.Module."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .blocks.heads import Head
from .features import FeatureInfo, check_input, fixed_size_reason, forward_intermediates
from .plan import Plan, StagePlan


class Stage(nn.Module):
    """Transition -> (class token, position embedding) -> blocks, converting map <-> tokens as planned."""

    def __init__(self, sp: StagePlan, device=None):
        super().__init__()
        self.transition = sp.transition.build(sp.in_channels, sp.out_channels, sp.stride) or nn.Identity()
        tokens = sp.data_format == "tokens"
        self.flatten = tokens and sp.prefix_in == 0  # map in, token blocks
        self.unflatten = tokens and sp.prefix_out == 0  # token blocks, map out
        self.grid = sp.out_resolution
        self.prefix = sp.prefix_out  # class tokens carried out of this stage (0: a plain map or grid tokens)
        self.block_grids = tuple(ctx.out_resolution for ctx in sp.contexts)  # for forward_intermediates
        grid_in = sp.block_in_resolution
        c = sp.block_in_channels
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c)) if sp.class_token else None
        n = sp.prefix_out + grid_in[0] * grid_in[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, n, c)) if sp.pos_embed else None
        self.blocks = nn.Sequential(*(sp.block.build(ctx) for ctx in sp.contexts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.leave(self.blocks(self.enter(x)))

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """What comes before the blocks: transition, map -> tokens, class token, position embedding."""
        x = self.transition(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, C, H, W) -> (B, H*W, C)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x

    def leave(self, x: torch.Tensor) -> torch.Tensor:
        """What comes after the blocks: tokens -> map where the next stage (or the head) wants a map."""
        if self.unflatten:
            x = x.transpose(1, 2).reshape(x.shape[0], -1, *self.grid)  # (B, N, C) -> (B, C, H, W)
        return x


class ComposedNet(nn.Module):
    """A network composed from a blueprint: stem -> stages -> head."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.name = plan.name
        self.stem = plan.stem.build(plan.input_shape[0])
        self.stages = nn.Sequential(*(Stage(sp) for sp in plan.stages))
        self.head = Head(plan.head, plan.stages[-1].out_channels, plan.classes)
        self.num_features = self.head.num_features
        self.num_classes = plan.classes
        self.input_shape = plan.input_shape
        self.fixed_size = fixed_size_reason(plan)
        self.feature_info = FeatureInfo.from_plan(plan)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.input_shape, self.fixed_size)
        return self.stages(self.stem(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, *,
                              blocks: bool = False, intermediates_only: bool = False, stop_early: bool = False):
        """Feature maps of chosen stages (or, with `blocks=True`, chosen blocks numbered across the
        network) as (B, C, H, W), class tokens dropped; returns (final features, maps), or only the
        maps with `intermediates_only` (see composer.features)."""
        return forward_intermediates(self, x, indices, blocks=blocks, intermediates_only=intermediates_only,
                                     stop_early=stop_early)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(module: nn.Module) -> None:
    """Truncated-normal Linear weights and token parameters (std 0.02), as in ViT/DeiT; then each
    layer's own initialisation where it has one (`local_init`, e.g. ConViT's local attention)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, Stage):
            for p in (m.cls_token, m.pos_embed):
                if p is not None:
                    nn.init.trunc_normal_(p, std=0.02)
    for m in module.modules():
        if hasattr(m, "local_init"):
            m.local_init()


_T = torch.Tensor
# in-place writes of values; on the meta device there are no values, only shapes, which these keep
# (torch.nn.init's functions come through as themselves: what they call inside is not seen again)
_VALUE_WRITES = {_T.uniform_, _T.normal_, _T.fill_, _T.zero_, _T.copy_, _T.erfinv_, _T.mul_, _T.add_, _T.sub_,
                 _T.div_, _T.clamp_, _T.exp_, _T.bernoulli_, _T.random_,
                 *(getattr(nn.init, name) for name in ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_",
                                                       "zeros_", "eye_", "dirac_", "xavier_uniform_", "xavier_normal_",
                                                       "kaiming_uniform_", "kaiming_normal_", "orthogonal_")
                   if hasattr(nn.init, name))}


class _SkipValueWrites(TorchFunctionMode):
    """While building on the meta device, skip the in-place initialisation of parameters: each would
    otherwise run through PyTorch's Python meta kernels, and for nothing (about half the build time)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _VALUE_WRITES and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Construction creates tens of thousands of objects and no garbage; the cyclic collector would
    otherwise scan every object of torch again and again (about 45% of a 1000-block meta build)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def build(plan: Plan, *, device: str | torch.device | None = None, seed: int | None = 0) -> ComposedNet:
    """Build the network of `plan`. On the meta device no weights are allocated (for profiling).

    With a seed (default 0) the initial weights are deterministic and the global RNG is untouched.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "meta":
        with _no_gc_pauses(), torch.device("meta"), _SkipValueWrites():
            return ComposedNet(plan)
    with _no_gc_pauses(), torch.random.fork_rng(devices=[]), torch.device(device):
        if seed is not None:
            torch.manual_seed(seed)
        net = ComposedNet(plan)
        init_weights(net)
    return net
