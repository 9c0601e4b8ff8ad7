"""Names of the training-memory choices (dtypes, optimizers), kept free of torch so that the command
line can offer them, and check them, without importing it; composer.analysis.memory maps them to torch."""

from __future__ import annotations

DTYPE_NAMES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
# optimizer -> state tensors kept per parameter
OPTIMIZER_STATES = {"sgd": 0, "momentum": 1, "adamw": 2, "adam": 2}
