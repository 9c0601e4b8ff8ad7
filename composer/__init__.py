"""composer: compose vision networks from YAML blueprints; validate, build and profile them.

    import composer
    net = composer.build("blueprints/coatnet0.yaml")
    report = composer.profile("blueprints/coatnet0.yaml")
"""

from .api import apply_overrides, build, check, load, load_model, loads, plan, profile, save, train_memory
from .blocks import BLOCKS, BlockConfig, BlockContext, register_block
from .blueprint import Blueprint, BlueprintError, Problem
from .build import ComposedNet
from .features import FeatureNet, InputSizeError
from .plan import Plan
from .profile import Profile
from .weights import LoadReport, WeightsError

__version__ = "0.1.0"

__all__ = [
    "load", "loads", "plan", "build", "profile", "check", "train_memory", "save", "load_model", "apply_overrides",
    "Blueprint", "BlueprintError", "Problem", "Plan", "Profile", "ComposedNet",
    "BLOCKS", "BlockConfig", "BlockContext", "register_block", "LoadReport", "WeightsError",
    "FeatureNet", "InputSizeError",
]
