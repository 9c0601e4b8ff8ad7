"""MetaFormer block (Yu et al. 2022, "MetaFormer is actually what you need for vision"; 2023,
"MetaFormer baselines for vision"): PoolFormer, ConvFormer and CAFormer are this block with another
token mixer.

Data flow: x = res_scale(x) + layer_scale(mixer(norm(x))), then
           x = res_scale(x) + layer_scale(MLP(norm(x))), MLP = 1x1 C -> rC -> act -> 1x1 rC -> C.
The mixer (`mixer`) is a typed sub-config: `pool`, `sepconv` or `attention` (composer/blocks/metaformer/
mixers/). Conv mixers run on the feature map, attention on tokens, and the block with them. Width and
resolution change between stages, through a `transition` (a strided conv, the norm before it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field

from .. import cost as C
from ..base import BlockConfig, BlockContext, CheckpointNames, Complaint, Variant, positive_width, register_block
from .mixers import MIXERS
from .mixers.base import MetaFormerActivation, MixerConfig, act_params

if TYPE_CHECKING:
    from torch import nn


@register_block
class MetaFormerConfig(BlockConfig):
    """MetaFormer block: norm, token mixer, residual; norm, MLP, residual; optional layer and residual scales."""

    can_downsample = False
    can_change_width = False

    type: Literal["metaformer"] = Field("metaformer", description="Block family: MetaFormer.")
    mixer: Annotated[MixerConfig, Variant(MIXERS)] = Field(default_factory=lambda: MIXERS["pool"](), description=(
        "Token mixer: `pool` (PoolFormer; option `size`), `sepconv` (ConvFormer; `kernel`, `expand`, `act`, `act2`, "
        "`bias`) or `attention` (CAFormer; `head_dim`, `heads`, `qkv_bias`, `proj_bias`). A name alone "
        "(`mixer: pool`) takes the mixer's defaults."))
    norm: Literal["layernorm", "groupnorm"] = Field(
        "layernorm", description="Norm before the mixer and before the MLP: `layernorm` over the channels at each "
                                 "position, or `groupnorm` with one group (over all positions and channels; PoolFormer).")
    norm_bias: bool = Field(True, description="Additive term of the norms (the MetaFormer baselines: false).")
    norm_eps: float = Field(1e-6, ge=1e-12, le=1, description="Epsilon of the norms.")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="Hidden width of the MLP = mlp_ratio x channels.")
    act: MetaFormerActivation = Field("starrelu", description="Activation inside the MLP (`starrelu`: s relu(x)^2 + b, "
                                                              "learned s and b).")
    mlp_bias: bool = Field(False, description="Biases on the MLP's two layers.")
    layer_scale: float | None = Field(None, gt=0, le=10, description="Initial value of a per-channel scale on each "
                                                                     "branch; none when unset.")
    res_scale: float | None = Field(None, gt=0, le=10, description="Initial value of a per-channel scale on each "
                                                                   "shortcut; none when unset.")

    @property
    def data_format(self) -> Literal["map", "tokens"]:
        return "map" if self.mixer.on_map else "tokens"

    def hidden(self, ctx: BlockContext) -> int:
        return int(ctx.out_channels * self.mlp_ratio)

    def check(self, ctx: BlockContext) -> list[Complaint]:
        return self.mixer.check(ctx) + positive_width("mlp_ratio", ctx.out_channels, self.mlp_ratio, "the MLP width")

    def describe(self, ctx: BlockContext) -> str:
        return f"metaformer {self.mixer.describe(ctx)}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c, (h, w) = ctx.out_channels, ctx.out_resolution
        n, hidden = h * w, self.hidden(ctx)
        norm = C.Cost(c * (2 if self.norm_bias else 1), 5 * c * n)  # 5 per element with a weight, as LayerNorm
        mlp = (C.linear(c, hidden, n, self.mlp_bias) + C.linear(hidden, c, n, self.mlp_bias)
               + C.Cost(act_params(self.act)))
        scales = C.Cost(2 * c * ((self.layer_scale is not None) + (self.res_scale is not None)))
        return norm * 2 + self.mixer.cost(ctx) + mlp + scales

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import MetaFormerBlock

        return MetaFormerBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's MetaFormerBlock (its mixers name their layers as ours)."""
        names: CheckpointNames = {"norm1": "norm1", "norm2": "norm2", "mlp": "mlp", "ls1": "layer_scale1",
                                  "ls2": "layer_scale2", "rs1": "res_scale1", "rs2": "res_scale2",
                                  "mixer": "token_mixer"}
        return names | {f"mixer.{k}": f"token_mixer.{v}" for k, v in self.mixer.timm_names(ctx, layout).items()}


def __getattr__(name: str):
    """The nn.Module (`MetaFormerBlock`) lives in `.module`, which imports torch; it loads on first use."""
    if name == "MetaFormerBlock":
        from .module import MetaFormerBlock

        return MetaFormerBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
