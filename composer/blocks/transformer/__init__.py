"""Pre-norm Transformer block, with the attention and feed-forward variants of the lecture's hybrids.

Data flow: x + Attn(Norm(x)), then x + FFN(Norm(x)), on tokens (B, N, C).
A block that downsamples (the first of a CoAtNet stage) computes Proj(Pool(x)) + Attn(Pool(Norm(x)));
the shortcut projects only when the width changes.

Attention (`attention`): `plain` (ViT), `relative` (CoAtNet: a learned bias per relative offset),
`gpsa` (ConViT: gated positional self-attention), `conv` (CvT: depthwise conv + BN projections,
keys and values strided). FFN (`ffn`): `mlp` (ViT), or `conv` (LocalViT: 1x1 -> depthwise -> SE ->
1x1 on the token map, with no LayerNorm before it). Class tokens bypass every convolution.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Literal, Union

from pydantic import Field, field_validator

from ...layers.names import Activation
from .. import cost as C
from ..base import (BlockConfig, BlockContext, CheckpointNames, Complaint, divisors_near, odd_kernels, positive_width,
                    register_block)

if TYPE_CHECKING:
    import torch
    from torch import nn


def num_heads(heads: int | None, head_dim: int | None, channels: int) -> int:
    if heads is not None:
        return heads
    return max(1, channels // (head_dim or 64))


def check_heads(heads: int | None, head_dim: int | None, channels: int) -> list[Complaint]:
    if heads is not None and head_dim is not None:
        return [Complaint("heads", "give either `heads` or `head_dim`, not both")]
    if heads is not None and channels % heads:
        return [Complaint("channels", f"width {channels} is not divisible by heads={heads}",
                          f"nearest valid widths: {divisors_near(channels, heads)}")]
    if heads is None:
        hd = head_dim or 64
        if channels % hd:
            return [Complaint("channels", f"width {channels} is not divisible by head_dim={hd}",
                              f"nearest valid widths: {divisors_near(channels, hd)}")]
    return []


@register_block
class TransformerConfig(BlockConfig):
    """Pre-norm Transformer block: plain, relative, gated positional (GPSA) or conv-projection attention."""

    data_format = "tokens"
    exclusive_options = (("heads", "head_dim"),)

    type: Literal["transformer"] = Field("transformer", description="Block family: pre-norm Transformer.")
    attention: Literal["plain", "relative", "gpsa", "conv"] = Field(
        "plain", description="`plain`: ViT; `relative`: CoAtNet's relative position bias; `gpsa`: ConViT's gated "
                             "positional attention; `conv`: CvT's convolutional projection.")
    heads: int | None = Field(None, ge=1, le=65536, description="Number of attention heads (or give `head_dim`).")
    head_dim: int | None = Field(None, ge=1, le=65536, description="Width per head; heads = channels / head_dim. Default 64.")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projections.")
    scale: Union[Literal["head_dim", "embed_dim"], float] = Field(
        "head_dim", description="Factor on the attention logits QK^T: `head_dim`: 1/sqrt(width per head) (ViT, "
                                "CoAtNet, ConViT); `embed_dim`: 1/sqrt(width of Q, all heads together) (CvT's "
                                "published code); or a number (above 0, at most 1000).")
    attn_width: Literal["out", "in"] = Field(
        "out", description="Width of queries, keys and values when the block changes width: the output width "
                           "(the paper: qkv widens) or the input width (timm's `_rw` CoAtNets: the output projection "
                           "widens). Heads = this width / head_dim.")
    shortcut_bias: bool = Field(True, description="Bias on the shortcut's projection (used when the width changes).")
    locality_strength: float = Field(
        1.0, gt=0, le=100, description="`gpsa`: how sharply each head attends around its offset at initialisation.")
    proj_kernel: int = Field(3, ge=1, le=15, description="`conv`: kernel of the depthwise Q/K/V projection convs (odd).")
    kv_stride: int = Field(2, ge=1, le=8, description="`conv`: stride of the key and value projection convs.")
    ffn: Literal["mlp", "conv"] = Field(
        "mlp", description="`mlp`: LayerNorm + MLP (ViT); `conv`: LocalViT's 1x1 -> depthwise -> SE -> 1x1 on the map.")
    mlp_ratio: float = Field(4.0, gt=0, le=64, description="FFN hidden width = mlp_ratio x channels.")
    act: Activation = Field("gelu", description="Activation inside the FFN.")
    ffn_kernel: int = Field(3, ge=1, le=15, description="`ffn: conv`: kernel of the depthwise conv (odd).")
    ffn_se_reduction: int | None = Field(
        None, ge=1, description="`ffn: conv`: SE hidden width = FFN width / this (LocalViT: 192); none when unset.")
    norm_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the LayerNorms.")
    bn_eps: float = Field(1e-5, ge=1e-12, le=1, description="Epsilon of the BatchNorms of `conv` attention and the "
                                                            "`conv` FFN.")
    layer_scale: float | None = Field(None, gt=0, le=1, description="Initial value of a per-channel layer scale; none when unset.")
    pool: Literal["avg", "max"] = Field("max", description="Pooling used by a downsampling block (CoAtNet).")

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, value):
        if not isinstance(value, str) and not 0 < value <= 1000:
            raise ValueError("a number for `scale` must be above 0 and at most 1000")
        return value

    def width(self, ctx: BlockContext) -> int:
        """Width of queries, keys and values."""
        return ctx.in_channels if self.attn_width == "in" else ctx.out_channels

    def attention_scale(self, ctx: BlockContext) -> float:
        """The factor on QK^T that `scale` asks for, in `ctx`."""
        if not isinstance(self.scale, str):
            return float(self.scale)
        width = self.width(ctx)
        if self.scale == "embed_dim":
            return width ** -0.5
        return (width // num_heads(self.heads, self.head_dim, width)) ** -0.5

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = check_heads(self.heads, self.head_dim, self.width(ctx))
        if self.attn_width == "in" and self.attention not in ("plain", "relative"):
            out.append(Complaint("attn_width", "`attn_width: in` is available for `plain` and `relative` attention only",
                                 "use `attn_width: out`"))
        if self.attention in ("relative", "gpsa") and ctx.prefix_tokens:
            out.append(Complaint("attention", f"`{self.attention}` attention works on the token grid and cannot take "
                                 "a class token", "insert the class token in a later stage, or use `attention: plain`"))
        if ctx.stride > 1 and ctx.prefix_tokens:
            out.append(Complaint("stride", "a transformer stage cannot downsample while it carries a class token",
                                 "downsample in an earlier stage, or with a `transition`"))
        out += positive_width("mlp_ratio", ctx.out_channels, self.mlp_ratio, "the FFN width")
        return out + odd_kernels(self, "proj_kernel", "ffn_kernel")

    def describe(self, ctx: BlockContext) -> str:
        h = num_heads(self.heads, self.head_dim, self.width(ctx))
        ffn = " conv-ffn" if self.ffn == "conv" else ""
        return f"transformer {self.attention} h{h}{ffn}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        c_in, c, p = ctx.in_channels, ctx.out_channels, ctx.prefix_tokens
        (h, w), (ho, wo) = ctx.resolution, ctx.out_resolution
        heads = num_heads(self.heads, self.head_dim, self.width(ctx))
        n_in, n = p + h * w, p + ho * wo
        total = C.layernorm(c_in, n_in) + self._attention_cost(c_in, c, heads, p, (ho, wo), self.width(ctx))
        if c_in != c:
            total += C.linear(c_in, c, n, self.shortcut_bias)
        hidden = int(c * self.mlp_ratio)
        if self.ffn == "mlp":
            total += C.layernorm(c, n) + C.linear(c, hidden, n) + C.linear(hidden, c, n)
        else:
            g = ho * wo
            total += (C.conv(c, hidden, 1, (ho, wo)) + C.batchnorm(hidden, g)
                      + C.conv(hidden, hidden, self.ffn_kernel, (ho, wo), groups=hidden) + C.batchnorm(hidden, g)
                      + C.conv(hidden, c, 1, (ho, wo)) + C.batchnorm(c, g))
            if self.ffn_se_reduction:
                total += C.squeeze_excite(hidden, max(1, hidden // self.ffn_se_reduction))
        if self.layer_scale:
            total += C.Cost(2 * c)
        return total

    def _attention_cost(self, c_in: int, c: int, heads: int, prefix: int, grid: tuple[int, int],
                        width: int) -> C.Cost:
        """Projections plus the two attention products, QK^T and AV (N_q x N_k x width MACs each)."""
        n = prefix + grid[0] * grid[1]
        proj = C.linear(c, c, n)
        if self.attention in ("plain", "relative"):
            total = C.linear(c_in, 3 * width, n, self.qkv_bias) + C.linear(width, c, n) + C.Cost(macs=2 * n * n * width)
            if self.attention == "relative":
                total += C.Cost((2 * grid[0] - 1) * (2 * grid[1] - 1) * heads)
            return total
        if self.attention == "gpsa":
            positional = C.linear(3, heads, n * n) + C.Cost(heads)  # scores from (dx, dy, d^2), and the gates
            return (C.linear(c_in, 2 * c, n, self.qkv_bias) + C.linear(c_in, c, n, self.qkv_bias) + proj
                    + positional + C.Cost(macs=2 * n * n * c))
        k, pad = self.proj_kernel, self.proj_kernel // 2
        kv_grid = tuple(C.conv_out(g, k, self.kv_stride, pad) for g in grid)
        n_kv = prefix + kv_grid[0] * kv_grid[1]
        total = proj + C.Cost(macs=2 * n * n_kv * c)
        for g, tokens in ((grid, n), (kv_grid, n_kv), (kv_grid, n_kv)):
            total += (C.conv(c_in, c_in, k, g, groups=c_in) + C.batchnorm(c_in, g[0] * g[1])
                      + C.linear(c_in, c, tokens, self.qkv_bias))
        return total

    def build(self, ctx: BlockContext) -> nn.Module:
        from .module import TransformerBlock

        return TransformerBlock(self, ctx)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's ViT / ConViT blocks, or (`stages` layout) MaxxVit's TransformerBlock2d, whose qkv
        channels are ordered head first and whose relative table is (offsets, heads)."""
        names: CheckpointNames = {
            "norm1": "norm1", "norm2": "norm2", "ffn.fc1": "mlp.fc1", "ffn.fc2": "mlp.fc2", "attn.proj": "attn.proj",
            "attn.qkv": "attn.qkv", "attn.qk": "attn.qk", "attn.v": "attn.v", "attn.pos_proj": "attn.pos_proj",
            "attn.gate": "attn.gating_param", "ls1.gamma": "ls1.gamma", "ls2.gamma": "ls2.gamma"}
        if layout == "stages":
            heads = num_heads(self.heads, self.head_dim, self.width(ctx))
            qkv = partial(_qkv_from_head_first, heads=heads)
            names |= {"norm1": "norm1.norm" if ctx.stride > 1 else "norm1", "shortcut.1": "shortcut.expand",
                      "attn.qkv.weight": ("attn.qkv.weight", qkv), "attn.qkv.bias": ("attn.qkv.bias", qkv),
                      "attn.relative.table": ("attn.rel_pos.relative_position_bias_table", _transposed)}
        return names

    def transformers_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """Hugging Face transformers' `CvtLayer` (`cvt` layout) and `ViTLayer`: as published on the hub
        (`vit`: `attention.attention.query`, ...) and as transformers 5 names it (`vit_layers`:
        `attention.q_proj`, ...); ViT's separate query, key and value Linears are joined into our qkv."""
        common: CheckpointNames = {"norm1": "layernorm_before", "norm2": "layernorm_after"}
        if layout == "cvt":
            names = dict(common, **{"attn.proj": "attention.output.dense", "ffn.fc1": "intermediate.dense",
                                    "ffn.fc2": "output.dense"})
            for ours, theirs in (("q", "query"), ("k", "key"), ("v", "value")):
                conv = f"attention.attention.convolution_projection_{theirs}.convolution_projection"
                names |= {f"attn.conv_{ours}.conv": f"{conv}.convolution",
                          f"attn.conv_{ours}.norm": f"{conv}.normalization",
                          f"attn.{ours}": f"attention.attention.projection_{theirs}"}
            return names
        if layout in ("vit", "vit_layers"):
            if layout == "vit":
                q, k, v = (f"attention.attention.{n}" for n in ("query", "key", "value"))
                names = {"attn.proj": "attention.output.dense", "ffn.fc1": "intermediate.dense",
                         "ffn.fc2": "output.dense"}
            else:
                q, k, v = (f"attention.{n}_proj" for n in "qkv")
                names = {"attn.proj": "attention.o_proj", "ffn.fc1": "mlp.fc1", "ffn.fc2": "mlp.fc2"}
            for t in ("weight", "bias"):
                names[f"attn.qkv.{t}"] = ((f"{q}.{t}", f"{k}.{t}", f"{v}.{t}"), _joined)
            return common | names
        return {}


def _joined(*parts: torch.Tensor) -> torch.Tensor:
    """Separate query, key and value tensors -> one qkv tensor, in that order along the output channels."""
    import torch

    return torch.cat(parts, dim=0)


def _qkv_from_head_first(t: torch.Tensor, heads: int) -> torch.Tensor:
    """qkv output channels ordered (heads, 3, head_dim) -> ours, (3, heads, head_dim)."""
    return t.reshape(heads, 3, -1, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


def _transposed(t: torch.Tensor) -> torch.Tensor:
    """timm's relative table is (offsets, heads); ours is (heads, offsets)."""
    return t.t()


_MODULES = ("TransformerBlock", "TokenPool", "LayerScale")


def __getattr__(name: str):
    """The nn.Modules live in `.module`, which imports torch; they load on first use."""
    if name in _MODULES:
        from . import module

        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
