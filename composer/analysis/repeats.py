"""Counting a stage's repeated blocks once.

Within a stage every block after the first sees the same config and the same context (widths,
stride 1, grid, class tokens): it does exactly the work of the block before it. Tracing each of
them on meta tensors costs about 10 ms a block (every operator goes through PyTorch's Python meta
kernels under the counting mode), so a 1000-block network took minutes to profile. Instead the
counts of one such block are taken once and added again for each repeat, which makes profiling and
the training-memory estimate cost the same whatever the depth.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import torch
from torch import nn

from ..planning.planner import StagePlan


class Ledger(Protocol):
    """What is being counted: `mark()` takes a snapshot, `since(mark)` the counts added after it,
    `add(delta)` adds those counts once more."""

    def mark(self) -> Any: ...
    def since(self, mark: Any) -> Any: ...
    def add(self, delta: Any) -> None: ...
    # optionally `block(delta, input_shape)`: told of each block, run or replayed (checkpointing's estimate)


def _key(ctx) -> Any:
    # the drop-path rate changes from block to block but only whether there is one changes the work;
    # of the block's place in its stage only the first, and odd against even (Swin's alternate
    # shifted windows), can change it
    place = 0 if ctx.index == 0 else 1 + ctx.index % 2
    return dataclasses.replace(ctx, drop_path=float(ctx.drop_path > 0), index=place)


class CountedBlocks(nn.Module):
    """Stands in for a stage's `blocks` while counting: runs each distinct block, replays repeats."""

    def __init__(self, blocks: nn.Sequential, sp: StagePlan):
        super().__init__()
        self.inner = blocks
        self.keys = [_key(ctx) for ctx in sp.contexts]
        self.ledger: Ledger | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen: dict[tuple, Any] = {}  # (block key, input shape) -> its counts, for blocks that keep the shape
        told = getattr(self.ledger, "block", None)
        for block, key in zip(self.inner, self.keys):
            shape = tuple(x.shape)
            if (key, shape) in seen:
                delta = seen[key, shape]
                self.ledger.add(delta)  # same block, same input: the same work again
                if told:
                    told(delta, shape)
                continue
            mark = self.ledger.mark()
            x = block(x)
            delta = self.ledger.since(mark)
            if told:
                told(delta, shape)
            if tuple(x.shape) == shape:
                seen[key, shape] = delta
        # `x` is the output of the last block traced: as the real last output, nothing has saved it yet
        # unless the block itself did (an in-place activation), so the next part counts it as it would
        return x


def count_repeats_once(net: nn.Module, ledger: Ledger) -> None:
    """Replace the blocks of each stage of a throw-away (meta) `net` by CountedBlocks on `ledger`."""
    for part in net.parts.top:
        if part.kind == "stage":
            stage = part.module(net)
            stage.blocks = CountedBlocks(stage.blocks, part.config)
            stage.blocks.ledger = ledger
