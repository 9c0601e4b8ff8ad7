"""MaxViT's block (Tu et al. 2022): an MBConv, then block attention (local windows), then grid
attention (a sparse global lattice), each attention a pre-norm Transformer layer with its FFN.

Data flow: x -> MBConv (may downsample and widen) -> tokens -> x + WindowAttn(Norm(x)) -> x + FFN(Norm(x))
-> x + GridAttn(Norm(x)) -> x + FFN(Norm(x)) -> map.

The MBConv is any `mbconv` config (`conv:`); the two attention layers share the partition size,
heads and FFN, and are Transformer blocks with `window` (unshifted) and `grid` attention. MaxViT
needs a grid that is a multiple of the partition size in every stage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, Variant, register_block
from ..mbconv import MBConvConfig, PreNorm
from ..transformer import TransformerConfig
from ..transformer.attention import ATTENTIONS
from ..transformer.ffn import FFNS
from ..transformer.ffn.base import FfnConfig

if TYPE_CHECKING:
    from torch import nn


def _default_conv() -> MBConvConfig:
    return MBConvConfig(expand=4, kernel=3, se={"ratio": 0.25, "act": "silu"}, act="gelu", stride_on="depthwise",
                        norm=PreNorm(pool="avg"))


@register_block
class MaxViTConfig(BlockConfig):
    """MBConv + block attention + grid attention (MaxViT's `MaxxVitBlock`)."""

    type: Literal["maxvit"] = Field("maxvit", description="Block family: MaxViT (MBConv, block and grid attention).")
    conv: MBConvConfig = Field(
        default_factory=_default_conv,
        description="The MBConv in front (an `mbconv` block config without `type`; default: expansion 4, SE 0.25 "
                    "with SiLU, GELU, stride on the depthwise conv, pre-norm with average-pooled shortcut).")
    window: int = Field(7, ge=1, le=64, description="Partition size P: block attention in P x P windows, grid "
                                                   "attention over a P x P lattice.")
    heads: int | None = Field(None, ge=1, le=65536, description="Number of attention heads (or give `head_dim`).")
    head_dim: int | None = Field(None, ge=1, le=65536, description="Width per head (MaxViT: 32); heads = width / head_dim.")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projections.")
    ffn: Annotated[FfnConfig, Variant(FFNS)] = Field(
        default_factory=lambda: FFNS["mlp"](), description="The FFN kind of both attention layers (default `mlp`, "
                                                           "ratio 4, GELU).")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the attention layers' LayerNorms.")
    layer_scale: float | None = Field(None, gt=0, le=1, description="Initial value of a per-channel layer scale in "
                                                                    "the attention layers; none when unset.")

    exclusive_options = (("heads", "head_dim"),)

    def layer(self, kind: str) -> TransformerConfig:
        """The attention layer `kind` (`window` or `grid`) as a Transformer block config."""
        heads = {"heads": self.heads} if self.heads is not None else {"head_dim": self.head_dim or 32}
        attention = ATTENTIONS[kind](window=self.window, shift=False, qkv_bias=self.qkv_bias, **heads)
        return TransformerConfig(attention=attention, ffn=self.ffn, norm_eps=self.norm_eps,
                                 layer_scale=self.layer_scale)

    @staticmethod
    def inner(ctx: BlockContext) -> BlockContext:
        """The attention layers' context: after the MBConv, at the output width and grid."""
        return BlockContext(ctx.out_channels, ctx.out_channels, 1, ctx.out_resolution, 0, ctx.drop_path)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = [_within("conv", c) for c in self.conv.check(ctx)]
        inner = self.inner(ctx)
        for kind in ("window", "grid"):
            for c in self.layer(kind).check(inner):
                option = c.option.split(".")[-1] if c.option.startswith("attention.") else c.option
                if not any(o.message == c.message for o in out):
                    out.append(Complaint(option, c.message, c.hint))
        return out

    def describe(self, ctx: BlockContext) -> str:
        return f"maxvit {self.conv.describe(ctx)} p{self.window} h{self.layer('window').attention.heads_in(self.inner(ctx))}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        inner = self.inner(ctx)
        return self.conv.cost(ctx) + self.layer("window").cost(inner) + self.layer("grid").cost(inner)

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import MaxViTBlock

        return MaxViTBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's `MaxxVitBlock` (TF weights: qkv channels in (3, heads, head_dim) order, TF's relative table)."""
        inner = self.inner(ctx)
        names = {f"conv.{k}": (f"conv.{v}" if isinstance(v, str) else (f"conv.{v[0]}", v[1]))
                 for k, v in self.conv.timm_names(ctx, layout).items()}
        for ours, theirs, kind in (("attn_block", "attn_block", "window"), ("attn_grid", "attn_grid", "grid")):
            for k, v in self.layer(kind).timm_names(inner, "stages").items():
                names[f"{ours}.{k}"] = f"{theirs}.{v}" if isinstance(v, str) else (f"{theirs}.{v[0]}", v[1])
        return names


def _within(field: str, c: Complaint) -> Complaint:
    if c.option in ("channels", "stride", "depth"):
        return c
    return Complaint(f"{field}.{c.option}", c.message, c.hint)


def __getattr__(name: str):
    if name == "MaxViTBlock":
        from .module import MaxViTBlock

        return MaxViTBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
