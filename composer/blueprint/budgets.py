"""Budgets: how much work a blueprint may ask for, decided from the file before any work is done.

Every limit of a single option still lets a small file describe an enormous network (thousands of
stages of a thousand blocks each, or attention over a million tokens in every layer). These totals
are checked right after the schema (`validate`) and in the shape pass (`plan`), so that planning,
profiling and building stay bounded in time and memory; the message names the budget it exceeds.
"""

MAX_STAGES = 64  # stages in a layout (published networks have 1 to 5)
MAX_BLOCKS = 1_000  # blocks over all stages (ResNet-152 has 50, CoAtNet-3 28)
MAX_TOKEN_LAYERS = 1 << 24  # sum over token blocks of the tokens each one attends over (ViT-B/16: 2,364)
MAX_BATCH = 1 << 24  # batch size of `profile` and `train_memory`
MAX_TENSOR_BYTES = 1 << 62  # any tensor a count creates on the meta device: 64-bit sizes must not overflow
