"""The optional dependencies of training (the `train` extra), imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import ComposerError

INSTALL = "pip install 'composer-vision[train]'"


class MissingExtra(ComposerError, ImportError):
    """An optional dependency of training is not installed."""


def require(module: str) -> ModuleType:
    """Import `module` (e.g. "kornia.augmentation"), or fail with the command that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        raise MissingExtra(f"training needs `{top}` ({exc}); install the training extra: {INSTALL}") from None
