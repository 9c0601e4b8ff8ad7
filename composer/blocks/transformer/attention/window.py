"""`window`: self-attention inside windows of the token grid, shifted on alternate blocks (Swin,
Liu et al. 2021), with a learned bias per head and relative offset inside the window.

A window larger than the grid shrinks to the grid and is not shifted (Swin's last stage at 224);
otherwise the grid must be a multiple of the window. Shifted blocks (the 2nd, 4th, ... of a stage)
roll the grid by half a window first and mask the pairs the roll brought together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ... import cost as C
from ...base import BlockContext, CheckpointNames, Complaint
from . import ATTENTIONS
from .base import AttentionConfig

if TYPE_CHECKING:
    import torch
    from torch import nn


def grids_that_work(window: int, size: int) -> str:
    """`21 or 28` for a window of 7 and a grid of 24: the nearest grid sizes the window tiles."""
    low = (size // window) * window
    return f"{low} or {low + window}" if low > window else f"at most {window}, or {low + window}"


@ATTENTIONS.register
class WindowAttention(AttentionConfig):
    """Multi-head self-attention within non-overlapping windows, with a relative position bias table."""

    type: Literal["window"] = Field("window", description="Attention kind: Swin's (shifted) window attention.")
    window: int = Field(7, ge=1, le=64, description="Window size (square); a grid smaller than the window is one "
                                                   "window of the grid's size.")
    shift: bool = Field(True, description="Shift the windows by half a window on every second block of the stage "
                                          "(Swin); no shift where the window covers the whole grid.")
    # how the grid is cut: `window` (neighbours) or `grid` (a lattice; the `grid` kind)
    partition: ClassVar[str] = "window"

    def windows(self, ctx: BlockContext) -> tuple[tuple[int, int], tuple[int, int]]:
        """(window, shift) per axis in `ctx`: the window shrinks to a smaller grid, and then does not shift."""
        grid = ctx.out_resolution
        window = tuple(min(self.window, g) for g in grid)
        shifted = self.shift and self.partition == "window" and getattr(ctx, "index", 0) % 2 == 1
        shift = tuple(self.window // 2 if shifted and g > self.window else 0 for g in grid)
        return window, shift

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = super().check(ctx) + self.grid_only(ctx)
        grid = ctx.out_resolution
        for axis, g in zip(("height", "width"), grid):
            if g > self.window and g % self.window:
                out.append(Complaint("window", f"window {self.window} does not tile this stage's {grid[0]}x{grid[1]} "
                                     f"grid: its {axis} {g} is not a multiple of {self.window}",
                                     f"a grid of {grids_that_work(self.window, g)} works: change the input size, "
                                     "or the window"))
                break
        return out

    def describe(self, ctx: BlockContext) -> str:
        window, shift = self.windows(ctx)
        return f"window{window[0]}{' shifted' if any(shift) else ''} h{self.heads_in(ctx)}"

    def cost(self, ctx: BlockContext) -> C.Cost:
        """qkv and output projections, and QK^T and AV within each window (n x window area x width each)."""
        (h, w), width = ctx.out_resolution, self.width(ctx)
        (wh, ww), _ = self.windows(ctx)
        n = h * w
        table = (2 * wh - 1) * (2 * ww - 1) * self.heads_in(ctx)
        return (C.linear(ctx.in_channels, 3 * width, n, self.qkv_bias) + C.linear(width, ctx.out_channels, n)
                + C.Cost(table, 2 * n * wh * ww * width))

    def build(self, ctx: BlockContext) -> nn.Module:
        from ....layers.window_attention import WindowAttention as Module

        window, shift = self.windows(ctx)
        return Module(ctx.in_channels, self.width(ctx), self.heads_in(ctx), ctx.out_resolution, window, shift,
                      self.partition, qkv_bias=self.qkv_bias, scale=self.logit_scale(ctx), out_dim=ctx.out_channels)

    def timm_names(self, ctx: BlockContext, layout: str) -> CheckpointNames:
        """timm's Swin `WindowAttention` (a table of (offsets, heads)), or (`stages` layout) MaxxVit's
        partition attention with TensorFlow's table, (heads, 2h - 1, 2w - 1) indexed by key - query."""
        if layout == "stages":
            return {"qkv": "attn.qkv", "proj": "attn.proj",
                    "relative.table": ("attn.rel_pos.relative_position_bias_table", tf_table)}
        return {"qkv": "attn.qkv", "proj": "attn.proj",
                "relative.table": ("attn.relative_position_bias_table", transposed)}


def transposed(t: torch.Tensor) -> torch.Tensor:
    """Swin's relative table is (offsets, heads); ours is (heads, offsets)."""
    return t.t()


def tf_table(t: torch.Tensor) -> torch.Tensor:
    """TensorFlow's table (heads, 2h - 1, 2w - 1), indexed by the key's offset from the query, -> ours,
    (heads, offsets) indexed by the query's offset from the key: the same table flipped."""
    return t.flip(-2, -1).reshape(t.shape[0], -1)
