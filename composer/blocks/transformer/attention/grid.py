"""`grid`: MaxViT's grid attention (Tu et al. 2022): the grid is cut into a G x G lattice of cells,
and the tokens at the same place of every cell attend to each other, a sparse mix across the whole
grid. A relative position bias per head and lattice offset, as in `window`; the lattice shrinks to
a smaller grid. The grid must be a multiple of G."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from ...base import BlockContext, Complaint
from . import ATTENTIONS
from .window import WindowAttention, grids_that_work


@ATTENTIONS.register
class GridAttention(WindowAttention):
    """Multi-head self-attention among the tokens that share their place in a G x G lattice of cells."""

    type: Literal["grid"] = Field("grid", description="Attention kind: MaxViT's grid attention.")
    window: int = Field(7, ge=1, le=64, description="Lattice size G (square): each attention group has G x G tokens, "
                                                   "one from each cell.")
    shift: bool = Field(False, description="Not used by grid attention; must stay false.")
    partition: ClassVar[str] = "grid"

    def check(self, ctx: BlockContext) -> list[Complaint]:
        out = super().check(ctx)
        if self.shift:
            out.append(Complaint("shift", "grid attention does not shift", "remove `shift`"))
        return [c for c in out if c.option != "window"] + self._lattice(ctx)

    def _lattice(self, ctx: BlockContext) -> list[Complaint]:
        grid = ctx.out_resolution
        for axis, g in zip(("height", "width"), grid):
            if g > self.window and g % self.window:
                return [Complaint("window", f"a {self.window}x{self.window} lattice does not divide this stage's "
                                  f"{grid[0]}x{grid[1]} grid: its {axis} {g} is not a multiple of {self.window}",
                                  f"a grid of {grids_that_work(self.window, g)} works: change the input size, or "
                                  "the window")]
        return []

    def describe(self, ctx: BlockContext) -> str:
        (wh, ww), _ = self.windows(ctx)
        return f"grid{wh} h{self.heads_in(ctx)}"
