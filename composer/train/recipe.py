"""Training recipes: YAML validated exactly like blueprints (same loader, same located errors, JSON
Schema for editors, `--set` overrides).

A recipe says how to train (optimizer, schedule, augmentation, precision); the blueprint says what
to train. `batch` is the global batch of one optimizer step: it is split over the devices and then
over `accumulate` micro-batches, so a recipe means the same thing on one device or eight.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Discriminator, Field, Strict, Tag, ValidationError, model_validator

from ..api import apply_overrides
from ..blueprint import BlueprintError, Problem
from ..blueprint.loader import Source, load_text, read_file
from ..blueprint.validate import located_problems
from ..blocks.base import StrictModel

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


class _Model(StrictModel):
    """The blueprints' scalar policy: no bool or string as a number, finite floats, unknown keys refused."""


class AdamWConfig(_Model):
    type: Literal["adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (reached at the end of warm-up).")
    weight_decay: float = Field(0.05, ge=0, description="Decoupled weight decay; norms, biases, class tokens and position embeddings are excluded.")
    betas: Annotated[tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]], Strict(False)] = Field(
        (0.9, 0.999), description="Adam's running-average coefficients.")
    eps: float = Field(1e-8, gt=0, description="Adam's denominator term.")


class SGDConfig(_Model):
    type: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0, description="Peak learning rate (reached at the end of warm-up).")
    weight_decay: float = Field(1e-4, ge=0, description="L2 weight decay; norms, biases, class tokens and position embeddings are excluded.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum.")
    nesterov: bool = Field(True, description="Nesterov momentum.")


def _type_or(default: str):
    """Discriminate a union by `type`, taking `default` when a mapping leaves it out."""
    def tag(value: Any) -> Any:
        if isinstance(value, dict):
            return value.get("type", default)
        return getattr(value, "type", None)
    return Discriminator(tag)


OptimizerConfig = Annotated[Union[Annotated[AdamWConfig, Tag("adamw")], Annotated[SGDConfig, Tag("sgd")]], _type_or("adamw")]


class ScheduleConfig(_Model):
    warmup_epochs: float = Field(5, ge=0, description="Linear warm-up from `warmup_lr` to the optimizer's `lr`, in epochs.")
    warmup_lr: float = Field(1e-6, ge=0, description="Learning rate at the first step.")
    min_lr: float = Field(1e-5, ge=0, description="Learning rate at the end of the cosine decay.")


class RandAugmentConfig(_Model):
    type: Literal["randaugment"] = "randaugment"
    n: int = Field(2, ge=1, le=10, description="Operations applied per image.")
    m: int = Field(9, ge=0, le=30, description="Magnitude of each operation (0-30).")


class TrivialAugmentConfig(_Model):
    type: Literal["trivialaugment"] = "trivialaugment"


AutoAugmentConfig = Annotated[Union[Annotated[RandAugmentConfig, Tag("randaugment")],
                                     Annotated[TrivialAugmentConfig, Tag("trivialaugment")]], _type_or("randaugment")]


class CropConfig(_Model):
    scale: Annotated[tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]], Strict(False)] = Field(
        (0.08, 1.0), description="Range of the crop's area as a fraction of the image.")
    ratio: Annotated[tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]], Strict(False)] = Field(
        (0.75, 4 / 3), description="Range of the crop's aspect ratio.")


class MixupConfig(_Model):
    p: float = Field(1.0, ge=0, le=1, description="Probability that a batch is mixed.")
    lam: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]], Strict(False)] = Field(
        (0.0, 1.0), description="Range of the mixing weight, drawn uniformly per image.")


class CutmixConfig(_Model):
    p: float = Field(1.0, ge=0, le=1, description="Probability that a batch is cut-mixed.")
    beta: float = Field(1.0, gt=0, description="Beta distribution parameter of the pasted area.")


class AugmentConfig(_Model):
    crop: Optional[CropConfig] = Field(default_factory=CropConfig, description="RandomResizedCrop; null keeps the whole (resized) image.")
    hflip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    auto: Optional[AutoAugmentConfig] = Field(None, description="RandAugment or TrivialAugment; null for none.")
    color_jitter: float = Field(0.0, ge=0, le=1, description="Brightness, contrast and saturation jitter strength; 0 for none.")
    mixup: Optional[MixupConfig] = Field(None, description="Mixup of image pairs; null for none.")
    cutmix: Optional[CutmixConfig] = Field(None, description="CutMix of image pairs; null for none. With mixup too, each batch uses one of them.")
    erasing: float = Field(0.0, ge=0, le=1, description="Probability of random erasing per image.")
    mean: Annotated[tuple[float, float, float], Strict(False)] = Field((0.485, 0.456, 0.406), description="Normalisation mean per channel (0-1 scale).")
    std: Annotated[tuple[float, float, float], Strict(False)] = Field((0.229, 0.224, 0.225), description="Normalisation standard deviation per channel.")
    crop_pct: float = Field(0.875, gt=0, le=1, description="Evaluation: resize the shorter side to size / crop_pct, then centre-crop to size.")


class DataConfig(_Model):
    val_split: float = Field(0.1, gt=0, lt=1, description="Fraction of the training images held out for validation when the data has no `val` folder.")
    bad_images: Literal["refuse", "skip"] = Field(
        "refuse", description="Unreadable or truncated images: refuse to start, or skip them and report the count.")
    workers: int = Field(4, ge=0, le=256, description="DataLoader worker processes per device (decoding).")


class Recipe(_Model):
    name: str = Field("", description="Name of the recipe.")
    epochs: int = Field(100, ge=1, le=100_000, description="Training epochs.")
    batch: int = Field(128, ge=1, le=1_000_000, description="Global batch of one optimizer step (split over devices and `accumulate` micro-batches).")
    accumulate: int = Field(1, ge=1, le=1024, description="Micro-batches whose gradients are summed into one optimizer step.")
    seed: int = Field(0, ge=0, description="Seed of weights, data order and augmentation.")
    optimizer: OptimizerConfig = Field(default_factory=AdamWConfig, description="The optimizer.")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="Warm-up then cosine decay, stepped every optimizer step.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the cross-entropy loss.")
    clip_grad: Optional[float] = Field(None, gt=0, description="Clip the gradients' global norm to this value; null for no clipping.")
    ema: Optional[float] = Field(None, gt=0, lt=1, description="Decay of an exponential moving average of the weights (e.g. 0.9998); null for none.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="fp32, or mixed precision: bf16 autocast, fp16 autocast with loss scaling.")
    channels_last: bool = Field(False, description="Keep activations in channels-last memory format (faster convolutions on GPUs).")
    compile: bool = Field(False, description="Compile the model with torch.compile.")
    sync_bn: bool = Field(False, description="Synchronise batch-norm statistics across devices (DDP only).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training augmentation (kornia, on the training device).")
    data: DataConfig = Field(default_factory=DataConfig, description="Data loading.")

    @model_validator(mode="after")
    def _warmup_within_epochs(self) -> "Recipe":
        if self.schedule.warmup_epochs > self.epochs:
            raise ValueError(f"schedule.warmup_epochs ({self.schedule.warmup_epochs:g}) is longer than epochs ({self.epochs}); "
                             f"shorten the warm-up, e.g. `--set recipe.schedule.warmup_epochs={self.epochs / 5:g}`")
        return self


class RecipeError(BlueprintError):
    """Mistakes in a recipe, located like blueprint mistakes."""

    subject = "in the recipe"


def validate_recipe(source: Source) -> Recipe:
    """Check a loaded recipe; raise RecipeError listing every problem with its line and column."""
    try:
        return Recipe.model_validate(source.data)
    except ValidationError as exc:
        raise RecipeError(located_problems(exc, Recipe, source)) from None


def _with_sections(source: Source, keys: list[str]) -> Source:
    """A recipe may leave a section out and still take `--set optimizer.lr=...`: create the missing
    mappings on the way to each overridden key (the schema then checks the names)."""
    data = copy.deepcopy(source.data)
    for dotted in keys:
        node = data
        for part in dotted.split(".")[:-1]:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node.get(part) if isinstance(node, dict) else None
    return Source(data, source.file, source.text, source.keys, source.values)


def load_recipe(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and validate a recipe file (None: every default)."""
    overrides = overrides or {}
    try:  # the file's own problems (unreadable, not YAML) are the recipe's too
        source = read_file(path) if path is not None else load_text("{}", "<default recipe>")
        source = apply_overrides(_with_sections(source, list(overrides)), overrides)
    except BlueprintError as exc:
        raise RecipeError([Problem(p.message.replace("in the blueprint", "in the recipe"), p.path, p.file, p.line,
                                   p.column, p.hint) for p in exc.problems]) from None
    return validate_recipe(source)


def recipe_json_schema_text() -> str:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "composer training recipe"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
