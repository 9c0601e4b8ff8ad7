"""composer: compose vision networks from YAML blueprints; validate, build and profile them.

    import composer
    net = composer.build("blueprints/coatnet0.yaml")
    report = composer.profile("blueprints/coatnet0.yaml")

`import composer` does not import torch: the names below load their module on first use (PEP 562),
so reading, validating and planning a blueprint stay light; building and tracing import torch.
No module of the package is named like one of these functions, so `import composer.X as M` always
gives a module.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> module that defines it
_HOMES = {
    **dict.fromkeys(["apply_overrides", "build", "check", "load", "load_model", "loads", "plan", "profile", "save",
                     "train_memory"], "api"),
    **dict.fromkeys(["BLOCKS", "BlockConfig", "BlockContext", "register_block"], "blocks"),
    **dict.fromkeys(["Blueprint", "BlueprintError", "Problem"], "blueprint"),
    "ComposerError": "errors", "ArgumentError": "blueprint.arguments",
    "ComposedNet": "network.composed", "FeatureNet": "network.features", "InputSizeError": "network.features",
    "Plan": "planning.planner", "Profile": "analysis.tracing", "LoadReport": "weights", "WeightsError": "weights",
}

__all__ = [
    "load", "loads", "plan", "build", "profile", "check", "train_memory", "save", "load_model", "apply_overrides",
    "ComposerError", "ArgumentError", "Blueprint", "BlueprintError", "Problem", "Plan", "Profile", "ComposedNet",
    "BLOCKS", "BlockConfig", "BlockContext", "register_block", "LoadReport", "WeightsError",
    "FeatureNet", "InputSizeError",
]


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # the next look-up is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:
    from .api import apply_overrides, build, check, load, load_model, loads, plan, profile, save, train_memory
    from .blueprint.arguments import ArgumentError
    from .blocks import BLOCKS, BlockConfig, BlockContext, register_block
    from .blueprint import Blueprint, BlueprintError, Problem
    from .network.composed import ComposedNet
    from .errors import ComposerError
    from .network.features import FeatureNet, InputSizeError
    from .planning.planner import Plan
    from .analysis.tracing import Profile
    from .weights import LoadReport, WeightsError
