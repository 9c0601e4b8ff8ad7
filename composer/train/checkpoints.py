"""Checkpoints of a run: `composer.save` payloads (atomic; loadable with `composer.load_model`) that
also carry the recipe, class names, optimizer, scheduler, scaler, EMA and RNG states."""

from __future__ import annotations

from pathlib import Path

import torch

from ..blueprint import Blueprint
from ..blueprint.loader import dump_text
from ..weights.read import _check_path, file_kind, load_pickle, weights_error


def blueprint_text(bp: Blueprint) -> str:
    """The blueprint as `composer.save` stores it (with any `--set` values applied)."""
    return dump_text(bp.source.data)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's payload (tensors and plain data only: `weights_only=True`), read the way every
    checkpoint is read (composer.weights: by content, refusing pickles that would run code)."""
    p = Path(path)
    _check_path(p)
    if file_kind(p) not in ("zip", "pickle"):
        raise weights_error(p, "is not a readable checkpoint", "checkpoints are the .pt files `composer train` writes")
    payload = load_pickle(p)
    if not isinstance(payload, dict) or payload.get("format") != "composer/1" or "blueprint" not in payload:
        raise weights_error(p, "is not a composer checkpoint", "checkpoints are the .pt files `composer train` writes")
    return payload


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
