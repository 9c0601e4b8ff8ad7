"""Token mixers of the MetaFormer block: one file each, registered in `MIXERS` by their `type`:
`pool` (PoolFormer), `sepconv` (ConvFormer), `attention` (CAFormer). A mixer says whether it works on
the map (B, C, H, W) or on tokens (B, N, C); the block then runs on that format, as timm's MetaFormer
stages do. Every module of this package is imported when the registry is first used: a new mixer is
a new file."""

from ...base import Registry

MIXERS = Registry("token mixer", package=__name__, default="pool")

__all__ = ["MIXERS"]
