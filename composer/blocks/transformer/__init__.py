"""Pre-norm Transformer block, with the attention and feed-forward kinds of the lecture's hybrids.

Data flow: x + Attn(Norm(x)), then x + FFN(Norm(x)), on tokens (B, N, C).
A block that downsamples (the first of a CoAtNet stage) computes Proj(Pool(x)) + Attn(Pool(Norm(x)));
the shortcut projects only when the width changes.

Attention kinds (`attention`, one file each in `attention/`): `plain` (ViT), `relative` (CoAtNet:
a learned bias per relative offset), `gpsa` (ConViT: gated positional self-attention), `conv` (CvT:
depthwise conv + BN projections, keys and values strided). FFN kinds (`ffn`, in `ffn/`): `mlp`
(ViT), or `conv` (LocalViT: 1x1 -> depthwise -> SE -> 1x1 on the token map, with no LayerNorm
before it). Class tokens bypass every convolution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, Variant, register_block
from .attention import ATTENTIONS
from .attention.base import AttentionConfig, num_heads  # noqa: F401  (num_heads: for callers)
from .ffn import FFNS
from .ffn.base import FfnConfig

if TYPE_CHECKING:
    from torch import nn

_ATTENTION = "attention: {type: %s, %s: %s}"
_FFN = "ffn: {type: %s, %s: %s}"


@register_block
class TransformerConfig(BlockConfig):
    """Pre-norm Transformer block; its attention and FFN are kinds of their own (`attention`, `ffn`)."""

    data_format = "tokens"
    moved_options = {
        "heads": "attention: {heads: 12}", "head_dim": "attention: {head_dim: 64}",
        "qkv_bias": "attention: {qkv_bias: false}", "scale": "attention: {scale: embed_dim}",
        "attn_width": _ATTENTION % ("relative", "attn_width", "in"),
        "locality_strength": _ATTENTION % ("gpsa", "locality_strength", 1.0),
        "proj_kernel": _ATTENTION % ("conv", "kernel", 3), "kv_stride": _ATTENTION % ("conv", "kv_stride", 2),
        "mlp_ratio": "ffn: {ratio: 4}", "act": "ffn: {act: gelu}",
        "ffn_kernel": _FFN % ("conv", "kernel", 3), "ffn_se_reduction": "ffn: {type: conv, se: {reduction: 192}}",
        "bn_eps": "attention: {type: conv, norm_eps: 1e-5} or ffn: {type: conv, norm_eps: 1e-5}",
    }

    type: Literal["transformer"] = Field("transformer", description="Block family: pre-norm Transformer.")
    attention: Annotated[AttentionConfig, Variant(ATTENTIONS)] = Field(
        default_factory=lambda: ATTENTIONS["plain"](),
        description="The attention kind and its options: `plain` (ViT), `relative` (CoAtNet's relative position "
                    "bias), `gpsa` (ConViT's gated positional attention), `conv` (CvT's convolutional projection), "
                    "... (`composer blocks` lists them). A bare name takes the kind's defaults.")
    ffn: Annotated[FfnConfig, Variant(FFNS)] = Field(
        default_factory=lambda: FFNS["mlp"](),
        description="The feed-forward kind and its options: `mlp` (LayerNorm + MLP, ViT) or `conv` (LocalViT's "
                    "convolutional FFN on the map, no LayerNorm before it).")
    shortcut_bias: bool = Field(True, description="Bias on the shortcut's projection (used when the width changes).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorms.")
    layer_scale: float | None = Field(None, gt=0, le=1, description="Initial value of a per-channel layer scale; none when unset.")
    pool: Literal["avg", "max"] = Field("max", description="Pooling of a downsampling block (CoAtNet).")

    def unused(self, ctx: BlockContext) -> set[str]:
        out = {f"attention.{o}" for o in self.attention.unused(ctx)}
        if ctx.stride == 1:
            out.add("pool")
        if ctx.in_channels == ctx.out_channels:
            out.add("shortcut_bias")
        return out

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = [_within("attention", c) for c in self.attention.check(ctx)]
        out += [_within("ffn", c) for c in self.ffn.check(ctx)]
        if ctx.stride > 1 and ctx.prefix_tokens:
            out.append(Complaint("stride", "a transformer stage cannot downsample while it carries a class token",
                                 "downsample in an earlier stage, or with a `transition`"))
        return out

    def describe(self, ctx: BlockContext) -> str:
        ffn = "" if self.ffn.type_name() == "mlp" else f" {self.ffn.describe(ctx)}"
        return f"transformer {self.attention.describe(ctx)}{ffn}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, p = ctx.in_channels, ctx.out_channels, ctx.prefix_tokens
        (h, w), (ho, wo) = ctx.resolution, ctx.out_resolution
        n_in, n = p + h * w, p + ho * wo
        total = C.layernorm(c_in, n_in) + self.attention.cost(ctx) + self.ffn.cost(ctx)
        if c_in != c:
            total += C.linear(c_in, c, n, self.shortcut_bias)
        if self.ffn.pre_norm:
            total += C.layernorm(c, n)
        if self.layer_scale:
            total += C.Cost(2 * c)
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import TransformerBlock

        return TransformerBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ViT / ConViT blocks, or (`stages` layout) MaxxVit's TransformerBlock2d."""
        names: CheckpointNames = {"norm1": "norm1", "norm2": "norm2", "ls1.gamma": "ls1.gamma", "ls2.gamma": "ls2.gamma"}
        if layout == "stages":
            names |= {"norm1": "norm1.norm" if ctx.stride > 1 else "norm1", "shortcut.proj": "shortcut.expand"}
        names |= _under("attn", self.attention.timm_names(ctx, layout))
        return names | _under("ffn", self.ffn.timm_names(ctx, layout))

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `CvtLayer` (`cvt` layout) and `ViTLayer` (`vit`, `vit_layers`)."""
        if layout not in ("cvt", "vit", "vit_layers"):
            return {}
        names: CheckpointNames = {"norm1": "layernorm_before", "norm2": "layernorm_after"}
        names |= _under("attn", self.attention.transformers_names(ctx, layout))
        return names | _under("ffn", self.ffn.transformers_names(ctx, layout))


def _within(field: str, c: Complaint) -> Complaint:
    """A sub-config's complaint, located under its field; the stage's own options stay the stage's."""
    if c.option in ("channels", "stride", "depth"):
        return c
    return Complaint(f"{field}.{c.option}", c.message, c.hint)


def _under(module: str, names: CheckpointNames) -> CheckpointNames:
    """A sub-part's names (keys relative to its module) -> keys relative to the block."""
    return {f"{module}.{ours}": theirs for ours, theirs in names.items()}


_MODULES = ("TransformerBlock", "TokenPool", "LayerScale")


def __getattr__(name: str):
    """The nn.Modules live in `.module`, which imports torch; they load on first use."""
    if name in _MODULES:
        from . import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
