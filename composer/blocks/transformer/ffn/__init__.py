"""Feed-forward kinds of the Transformer block: one file each, registered in `FFNS` by their `type`.

A kind is a config (`FfnConfig` subclass) whose module maps the block's tokens (B, N, C) to its
FFN output (no residual). Every module of this package is imported when the registry is first used.
"""

from ...base import Registry

FFNS = Registry("ffn", package=__name__, default="mlp")

__all__ = ["FFNS"]
