"""build: plan -> ComposedNet (stem -> stages -> head), an ordinary nn.Module."""


import contextlib
import gc
import math
from typing import Iterator, Sequence

import torch
import torch.utils.checkpoint
from torch import nn
from torch.overrides import TorchFunctionMode

from .features import check_input, feature_levels, fixed_size_reason, forward_intermediates, resolve_indices
from ..layers.tokens import map_to_tokens, resize_pos_embed, square_grid, tokens_to_map
from .parts import children, network_parts
from ..planning.planner import Plan, StagePlan

torch.fx.wrap("check_input")  # a leaf for torch.fx: the input-size guard runs on the real input

# preprocessing a network expects when nothing else is known: the training recipes' defaults
DEFAULT_PREPROCESSING = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 0.875,
                         "interpolation": "bilinear"}


class Stage(nn.Module):
    """Transition -> (class token, position embedding) -> blocks, converting map <-> tokens as planned."""

    def __init__(self, sp: StagePlan, device=None):
        super().__init__()
        parts = children(sp)
        self.transition = parts[0].build() if parts[0].kind == "transition" else nn.Identity()
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
        self.pos_grid = grid_in
        self.blocks = nn.Sequential(*(p.build() for p in parts if p.kind == "block"))
        self.grad_checkpointing = False

    def fit_tensor(self, name: str, tensor: torch.Tensor) -> torch.Tensor | None:
        """A checkpoint's position embedding for another grid, resized to this stage's (class tokens
        kept): fine-tuning at another input size. None when it is no such embedding."""
        if name != "pos_embed" or self.pos_embed is None or tensor.ndim != 3 or tensor.shape[2] != self.pos_embed.shape[2]:
            return None
        n = self.pos_embed.shape[1] - self.prefix
        grid = self.pos_grid if self.pos_grid[0] * self.pos_grid[1] == n else square_grid(n)
        return resize_pos_embed(tensor, self.prefix, grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.enter(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            for block in self.blocks:
                x = self.run_block(block, x)
        else:
            x = self.blocks(x)
        return self.leave(x)

    @torch.jit.unused
    def run_block(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One block; with gradient checkpointing (while gradients are recorded) its activations are
        recomputed in the backward pass instead of kept."""
        if self.grad_checkpointing and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return block(x)

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """What comes before the blocks: transition, map -> tokens, class token, position embedding."""
        x = self.transition(x)
        if self.flatten:
            x = map_to_tokens(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return x

    def leave(self, x: torch.Tensor) -> torch.Tensor:
        """What comes after the blocks: tokens -> map where the next stage (or the head) wants a map."""
        if self.unflatten:
            x = tokens_to_map(x, self.grid)
        return x


class ComposedNet(nn.Module):
    """A network composed from a blueprint: stem -> stages -> head.

    It has timm's model API, so code written for a timm model takes it unchanged: `num_classes`,
    `num_features` (the width of `forward_features`' output), `head_hidden_size` (the width before
    the classifier), `feature_info`, `pretrained_cfg` / `default_cfg`, `get_classifier`,
    `reset_classifier`, `forward_features` / `forward_head`, `forward_intermediates`,
    `prune_intermediate_layers`, `set_grad_checkpointing`, `group_matcher` and `no_weight_decay`.
    """

    def __init__(self, plan: Plan):
        super().__init__()
        self.name = plan.name
        self.parts = network_parts(plan)  # what each submodule is, as planned (composer/network/parts.py)
        top = {p.kind: p for p in self.parts.top if p.kind != "stage"}
        self.stem = top["stem"].build()
        self.stages = nn.Sequential(*(p.build() for p in self.parts.top if p.kind == "stage"))
        self.head = top["head"].build()
        self.num_classes = plan.classes
        self.num_features = plan.stages[-1].out_channels
        self.input_shape = plan.input_shape
        self.fixed_size = fixed_size_reason(plan)
        self.feature_info, self.feature_taps = feature_levels(plan, self.stem)
        self.grad_checkpointing = False
        c, h, w = plan.input_shape
        reduction = plan.stem.total_stride * math.prod(sp.stride for sp in plan.stages)
        self.pretrained_cfg = {
            "architecture": plan.name, "url": "", "num_classes": plan.classes, "input_size": (c, h, w),
            "pool_size": (math.ceil(h / reduction), math.ceil(w / reduction)), **DEFAULT_PREPROCESSING,
            "fixed_input_size": self.fixed_size is not None, "first_conv": _first_conv(self), "classifier": "head.fc"}
        self.default_cfg = self.pretrained_cfg  # timm's older name; the same dict
        self.head_hidden_size = self.head.num_features  # the width the classifier takes (pre-logits)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = check_input(x, self.input_shape, self.fixed_size)
        return self.stages(self.stem(x))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, *,
                              norm: bool = False, stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False, blocks: bool = False):
        """Maps of chosen feature levels (`feature_info`; or, with `blocks=True`, of chosen blocks
        numbered across the network) as (B, C, H, W), class tokens dropped; returns (final features,
        maps), or only the maps with `intermediates_only` (see composer.network.features)."""
        return forward_intermediates(self, x, indices, norm=norm, stop_early=stop_early, output_fmt=output_fmt,
                                     intermediates_only=intermediates_only, blocks=blocks)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- timm's model API ---------------------------------------------------------------------------------

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for `num_classes` (0: none, the pre-logits features come out), and
        optionally another pooling: "avg" or "max" for a pool head, "token" or "avg" for a token head,
        "" for none (the head then works at every position: maps or tokens come out)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            from ..blueprint.arguments import argument_error

            raise argument_error(f"`num_classes`: expected a whole number >= 0, not {num_classes!r}",
                                 at="reset_classifier()")
        self.head.reset(num_classes, global_pool)
        self.num_classes = num_classes
        self.pretrained_cfg["num_classes"] = num_classes

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them
        (torch.utils.checkpoint, per block): less memory, about one more forward pass of time."""
        if not isinstance(enable, bool):
            from ..blueprint.arguments import argument_error

            raise argument_error(f"`enable`: expected True or False, not {enable!r}", at="set_grad_checkpointing()")
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        """Parameter groups for layer-wise learning-rate decay, as timm's `group_parameters` reads them."""
        if coarse:
            return {"stem": r"^stem", "blocks": r"^stages\.(\d+)"}
        return {"stem": r"^stem", "blocks": [(r"^stages\.(\d+)\.(?:transition|cls_token|pos_embed)", (0,)),
                                              (r"^stages\.(\d+)\.blocks\.(\d+)", None)]}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of the parameters weight decay should leave alone: class tokens, position embeddings
        and relative-position tables."""
        skip = set()
        for name, _ in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf in ("cls_token", "pos_embed") or name.endswith("relative.table"):
                skip.add(name)
        return skip

    @torch.jit.ignore
    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop everything after the last feature level of `indices` (timm's convention); with
        `prune_head` the head too (forward then gives the last kept map or tokens, normed at each
        position by the head's norm where it has one of that width), with `prune_norm` the head's
        norm. Returns the levels taken, for `forward_intermediates(indices=...)`."""
        take = resolve_indices(indices, len(self.feature_taps), "indices", "prune_intermediate_layers()")
        last = self.feature_taps[take[-1]]
        if last.where == "stem":
            self.stages = nn.Sequential()
        else:
            self.stages = self.stages[: last.stage + 1]
            if last.where == "block":
                self.stages[-1].blocks = self.stages[-1].blocks[: last.index + 1]
        self.feature_info = self.feature_info.select(range(take[-1] + 1))
        self.feature_taps = self.feature_taps[: take[-1] + 1]
        width = self.feature_info[-1]["num_chs"]
        if prune_head:
            self.head.strip(width, keep_norm=not prune_norm)
            self.num_classes, self.num_features, self.head_hidden_size = 0, width, width
            self.pretrained_cfg["num_classes"] = 0
        elif prune_norm:
            self.head.drop_norm()
        return list(take)


def _first_conv(net: nn.Module) -> str:
    """Name of the first convolution (or Linear) that sees the input, as timm's `first_conv`."""
    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            return name
    return ""


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
