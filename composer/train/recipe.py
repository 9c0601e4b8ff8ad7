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

from pydantic import Discriminator, Field, PrivateAttr, Strict, Tag, ValidationError, field_validator

from ..blueprint import BlueprintError, Problem
from ..blueprint.loader import Source, load_text, read_file
from ..blueprint.overrides import apply_overrides
from ..blueprint.validation import located_problems
from ..blueprint.scalars import StrictModel

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
DEFAULT_RECIPE = "<default recipe>"  # where the values of no recipe file come from


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


def _low_high(value: tuple) -> tuple:
    """A `[low, high]` range: refused when reversed (the sampler would draw from an empty range)."""
    if value[0] > value[1]:
        raise ValueError(f"a range is `[low, high]`; {value[0]:g} is above {value[1]:g} (write `[{value[1]:g}, {value[0]:g}]`)")
    return value


class CropConfig(_Model):
    scale: Annotated[tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]], Strict(False)] = Field(
        (0.08, 1.0), description="Range `[low, high]` of the crop's area as a fraction of the image.")
    ratio: Annotated[tuple[Annotated[float, Field(gt=0, le=100)], Annotated[float, Field(gt=0, le=100)]], Strict(False)] = Field(
        (0.75, 4 / 3), description="Range `[low, high]` of the crop's aspect ratio (width / height).")

    _ordered = field_validator("scale", "ratio")(_low_high)


class MixupConfig(_Model):
    p: float = Field(1.0, ge=0, le=1, description="Probability that a batch is mixed.")
    lam: Annotated[tuple[Annotated[float, Field(ge=0, le=1)], Annotated[float, Field(ge=0, le=1)]], Strict(False)] = Field(
        (0.0, 1.0), description="Range `[low, high]` of the mixing weight, drawn uniformly per image.")

    _ordered = field_validator("lam")(_low_high)


class CutmixConfig(_Model):
    p: float = Field(1.0, ge=0, le=1, description="Probability that a batch is cut-mixed.")
    beta: float = Field(1.0, gt=0, description="Beta distribution parameter of the pasted area.")


_Unit = Annotated[float, Field(ge=0, le=1)]
_Spread = Annotated[float, Field(gt=0, le=1)]


class AugmentConfig(_Model):
    crop: Optional[CropConfig] = Field(default_factory=CropConfig, description="RandomResizedCrop; null keeps the whole (resized) image.")
    hflip: float = Field(0.5, ge=0, le=1, description="Probability of a horizontal flip.")
    auto: Optional[AutoAugmentConfig] = Field(None, description="RandAugment or TrivialAugment; null for none.")
    color_jitter: float = Field(0.0, ge=0, le=1, description="Brightness, contrast and saturation jitter strength; 0 for none.")
    mixup: Optional[MixupConfig] = Field(None, description="Mixup of image pairs; null for none.")
    cutmix: Optional[CutmixConfig] = Field(None, description="CutMix of image pairs; null for none. With mixup too, each batch uses one of them.")
    erasing: float = Field(0.0, ge=0, le=1, description="Probability of random erasing per image.")
    mean: Annotated[tuple[_Unit, _Unit, _Unit], Strict(False)] = Field(
        (0.485, 0.456, 0.406), description="Normalisation mean per channel (0-1 scale).")
    std: Annotated[tuple[_Spread, _Spread, _Spread], Strict(False)] = Field(
        (0.229, 0.224, 0.225), description="Normalisation standard deviation per channel (above 0: images are divided by it).")
    crop_pct: float = Field(0.875, gt=0, le=1, description="Evaluation: resize the shorter side to size / crop_pct, then centre-crop to size.")


class DataConfig(_Model):
    val_split: float = Field(0.1, gt=0, lt=1, description="Fraction of the training images held out for validation when the data has no `val` folder.")
    bad_images: Literal["refuse", "skip"] = Field(
        "refuse", description="Unreadable or truncated images: refuse to start, or skip them and report the count.")
    workers: int = Field(4, ge=0, le=256, description="DataLoader worker processes per device (decoding).")


class EarlyStopConfig(_Model):
    patience: int = Field(10, ge=1, le=100_000, description="Epochs without a validation top-1 gain before the run stops.")
    min_delta: float = Field(0.0, ge=0, lt=1, description="The smallest top-1 gain (a fraction, 0.001 = 0.1 points) that counts.")


class Recipe(_Model):
    name: str = Field("", description="Name of the recipe.")
    epochs: int = Field(100, ge=1, le=100_000, description="Training epochs.")
    batch: int = Field(128, ge=1, le=1_000_000, description="Global batch of one optimizer step (split over devices and `accumulate` micro-batches).")
    accumulate: int = Field(1, ge=1, le=1024, description="Micro-batches whose gradients are summed into one optimizer step.")
    lr_scale: Literal["linear", "sqrt", "none"] = Field(
        "sqrt", description="How the learning rate follows a batch other than `batch` (`--batch N` or `auto`): "
                            "lr x new / batch (linear, usual for SGD), lr x sqrt(new / batch) (sqrt, usual for Adam), or unchanged.")
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
    grad_checkpointing: bool = Field(
        False, description="Recompute each block's activations in the backward pass instead of keeping them "
                           "(less memory, about a third more compute); `--batch auto` counts what it keeps.")
    sync_bn: bool = Field(False, description="Synchronise batch-norm statistics across devices (DDP only).")
    augment: AugmentConfig = Field(default_factory=AugmentConfig, description="Training augmentation (kornia, on the training device).")
    data: DataConfig = Field(default_factory=DataConfig, description="Data loading.")
    keep_top: int = Field(1, ge=1, le=100, description="Checkpoints kept of the best epochs by validation top-1: best.pt, "
                                                       "and with more than 1 also `top-E.pt` for each of them (E: the epoch).")
    early_stop: Optional[EarlyStopConfig] = Field(
        None, description="Stop when validation top-1 has not improved for `patience` epochs; null to run every epoch.")

    _source: Any = PrivateAttr(default=None)  # where each value was written (located messages)

    def problem(self, path: tuple, message: str, hint: str | None = None) -> Problem:
        """A problem located at the recipe line (or `--set` flag) that gave `path`."""
        if self._source is not None:
            found = self._source.problem(path, message, hint)
            if found.file == DEFAULT_RECIPE:  # a default value has no line
                return Problem(message, path, DEFAULT_RECIPE, hint=hint)
            return found
        return Problem(message, path, "<recipe>", hint=hint)


# A warm-up longer than this part of the run leaves too little of it for the decay; shorter runs
# (`--epochs 3` with a recipe written for 100) get a warm-up shrunk to it.
WARMUP_SHARE = 0.25


def fitted_warmup(recipe: Recipe) -> float:
    """Warm-up epochs the run uses: the recipe's, at most a quarter of the epochs."""
    return min(recipe.schedule.warmup_epochs, recipe.epochs * WARMUP_SHARE)


def scaled_lr(recipe: Recipe, batch: int) -> float:
    """The peak learning rate for `batch` images per step, from the recipe's at its own `batch`."""
    ratio = batch / recipe.batch
    factor = {"linear": ratio, "sqrt": ratio ** 0.5, "none": 1.0}[recipe.lr_scale]
    return recipe.optimizer.lr * factor


def with_batch(recipe: Recipe, batch: int) -> Recipe:
    """The recipe at another global batch, its learning rate scaled by `lr_scale`."""
    optimizer = recipe.optimizer.model_copy(update={"lr": scaled_lr(recipe, batch)})
    return recipe.model_copy(update={"batch": batch, "optimizer": optimizer})


class RecipeError(BlueprintError):
    """Mistakes in a recipe, located like blueprint mistakes."""

    subject = "in the recipe"


def validate_recipe(source: Source) -> Recipe:
    """Check a loaded recipe; raise RecipeError listing every problem with its line and column."""
    try:
        recipe = Recipe.model_validate(source.data)
    except ValidationError as exc:
        raise RecipeError(located_problems(exc, Recipe, source)) from None
    recipe._source = source
    return recipe


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
        source = read_file(path) if path is not None else load_text("{}", DEFAULT_RECIPE)
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


# --- the reference page (docs/recipes.md), written from the JSON Schema ---------------------------

def _schema_type(node: dict, defs: dict) -> tuple[str, list[str]]:
    """A property's type in words, and the sections (definitions) it refers to."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return f"[{_section_title(name)}](#{_anchor(name)})", [name]
    for key in ("anyOf", "oneOf"):
        if key in node:
            words, refs = [], []
            for option in node[key]:
                w, r = _schema_type(option, defs)
                words.append(w)
                refs += r
            return " or ".join(words), refs
    if "enum" in node:
        return " / ".join(f"`{v}`" for v in node["enum"]), []
    if "const" in node:
        return f"`{node['const']}`", []
    kind = node.get("type", "any")
    if kind == "array":
        items = node.get("prefixItems") or ([node["items"]] if "items" in node else [])
        return f"[{', '.join(_schema_type(i, defs)[0] + _bounds(i) for i in items)}]", []
    return {"number": "number", "integer": "integer", "boolean": "true / false", "string": "text", "null": "null"}.get(kind, kind), []


def _bounds(node: dict) -> str:
    parts = []
    for key, sign in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in node:
            v = node[key]
            parts.append(f"{sign} {v:,}" if isinstance(v, int) else f"{sign} {v:g}")
    return f" ({', '.join(parts)})" if parts else ""


def _section_title(name: str) -> str:
    return {"Recipe": "Recipe (top level)"}.get(name, name.removesuffix("Config"))


def _anchor(name: str) -> str:
    return _section_title(name).lower().replace(" ", "-").replace("(", "").replace(")", "")


def _default(node: dict) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if isinstance(value, dict):
        return "(see section)" if value else "{}"
    return f"`{json.dumps(value)}`"


def recipe_markdown() -> str:
    """docs/recipes.md: every recipe option with its type, default and description, one table per section."""
    schema = Recipe.model_json_schema()
    defs = schema.get("$defs", {})
    lines = ["# Training recipes", "",
             "<!-- generated by `composer schema --recipe --markdown`; do not edit by hand -->", "",
             "A recipe says how to train (the blueprint says what): `composer train BLUEPRINT --recipe FILE`, "
             "and `--set recipe.KEY=VALUE` for one value. `recipes/` holds worked examples; "
             "`recipes/recipe.schema.json` lets editors check a file as it is typed. "
             "Numbers follow the blueprints' rules (no booleans or strings as numbers, finite floats); "
             "unknown keys are refused with the nearest spelling.", ""]
    queue, done = ["Recipe"], set()
    while queue:
        name = queue.pop(0)
        if name in done:
            continue
        done.add(name)
        node = schema if name == "Recipe" else defs[name]
        lines += [f"## {_section_title(name)}", ""]
        if name != "Recipe" and node.get("description"):
            lines += [node["description"].strip(), ""]
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        for key, prop in node.get("properties", {}).items():
            kind, refs = _schema_type(prop, defs)
            queue += [r for r in refs if r not in done]
            text = prop.get("description", "").replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{key}` | {kind}{_bounds(prop)} | {_default(prop)} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
