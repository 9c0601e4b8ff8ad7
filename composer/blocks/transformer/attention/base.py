"""What every attention kind shares: the heads, the query/key/value bias and the logit scale."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import Field, field_validator

from ...base import BlockContext, Complaint, Part, divisors_near


def num_heads(heads: int | None, head_dim: int | None, channels: int) -> int:
    if heads is not None:
        return heads
    return max(1, channels // (head_dim or 64))


class AttentionConfig(Part):
    """Base of every attention kind. Methods take the block's context: the attention works on the
    block's output grid (after a downsampling block's pooling), from its input width to its output width."""

    exclusive_options = (("heads", "head_dim"),)

    heads: int | None = Field(None, ge=1, le=65536, description="Number of attention heads (or give `head_dim`).")
    head_dim: int | None = Field(None, ge=1, le=65536, description="Width per head; heads = width / head_dim. Default 64.")
    qkv_bias: bool = Field(True, description="Bias on the query/key/value projections.")
    scale: Union[Literal["head_dim", "embed_dim"], float] = Field(
        "head_dim", description="Factor on the attention logits QK^T: `head_dim`: 1/sqrt(width per head) (ViT, "
                                "CoAtNet, ConViT); `embed_dim`: 1/sqrt(width of Q, all heads together) (CvT's "
                                "published code); or a number (above 0, at most 1000).")

    @field_validator("scale")
    @classmethod
    def _positive_scale(cls, value):
        if not isinstance(value, str) and not 0 < value <= 1000:
            raise ValueError("a number for `scale` must be above 0 and at most 1000")
        return value

    def width(self, ctx: BlockContext) -> int:
        """Width of queries, keys and values."""
        return ctx.out_channels

    def heads_in(self, ctx: BlockContext) -> int:
        return num_heads(self.heads, self.head_dim, self.width(ctx))

    def logit_scale(self, ctx: BlockContext) -> float:
        """The factor on QK^T that `scale` asks for, in `ctx`."""
        if not isinstance(self.scale, str):
            return float(self.scale)
        width = self.width(ctx)
        if self.scale == "embed_dim":
            return width ** -0.5
        return (width // self.heads_in(ctx)) ** -0.5

    def check(self, ctx: BlockContext) -> list[Complaint]:
        heads, head_dim, channels = self.heads, self.head_dim, self.width(ctx)
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

    def describe(self, ctx: BlockContext) -> str:
        return f"{self.type_name()} h{self.heads_in(ctx)}"

    def grid_only(self, ctx: BlockContext) -> list[Complaint]:
        """For kinds that work on the token grid: a class token cannot join."""
        if ctx.prefix_tokens:
            return [Complaint("type", f"`{self.type_name()}` attention works on the token grid and cannot take a "
                              "class token", "insert the class token in a later stage, or use `attention: plain`")]
        return []
