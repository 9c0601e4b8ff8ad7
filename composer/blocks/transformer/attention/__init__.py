"""Attention kinds of the Transformer block: one file each, registered in `ATTENTIONS` by their `type`.

A kind is a config (`AttentionConfig` subclass: its options, check, cost, build and checkpoint
names) whose module maps tokens (B, N, C_in) to (B, N, C_out) on the block's output grid. Every
module of this package is imported when the registry is first used: a new kind is a new file.
"""

from ...base import Registry

ATTENTIONS = Registry("attention", package=__name__, default="plain")

__all__ = ["ATTENTIONS"]
