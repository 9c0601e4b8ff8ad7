"""Checkpoints of a run: `composer.save` payloads (atomic; loadable with `composer.load_model`) that
also carry the recipe, class names, optimizer, scheduler, scaler, EMA and RNG states."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..blueprint import Blueprint, Problem
from .data import DataError


def blueprint_text(bp: Blueprint) -> str:
    """The blueprint as `composer.save` stores it (with any `--set` values applied)."""
    return yaml.safe_dump(bp.source.data, sort_keys=False)


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's payload (tensors and plain data only: `weights_only=True`)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several kinds for a file that is not a checkpoint
        raise DataError(Problem(f"not a readable checkpoint ({type(exc).__name__})", (), str(path),
                                hint="checkpoints are the .pt files `composer train` writes")) from None
    if not isinstance(payload, dict) or payload.get("format") != "composer/1" or "blueprint" not in payload:
        raise DataError(Problem("not a composer checkpoint", (), str(path),
                                hint="checkpoints are the .pt files `composer train` writes"))
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
