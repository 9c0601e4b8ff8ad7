"""The block library. Importing this package registers the built-in block families."""

from .base import BLOCKS, BlockConfig, BlockContext, Complaint, register_block
from . import convnext, mbconv, metaformer, mobilevit, resnet, transformer  # noqa: F401  (registration)

__all__ = ["BLOCKS", "BlockConfig", "BlockContext", "Complaint", "register_block"]
