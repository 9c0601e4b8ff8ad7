"""Training, evaluation and prediction: data -> recipe -> loop (DDP under torchrun) -> checkpoints.

Consumes a validated blueprint and a recipe; knows nothing of YAML parsing or block internals.
Pillow, kornia, rich and matplotlib (the `train` extra) are imported only when used.
"""

from .data import DataError
from .evaluation import evaluate, predict, write_predictions
from .extras import MissingExtra
from .loop import RunProblems, TrainingError, TrainResult, train
from .recipe import Recipe, RecipeError, load_recipe, recipe_json_schema_text, recipe_markdown

__all__ = ["train", "evaluate", "predict", "write_predictions", "Recipe", "load_recipe", "recipe_json_schema_text",
           "recipe_markdown",
           "TrainResult", "DataError", "RecipeError", "MissingExtra", "RunProblems", "TrainingError"]
