"""Checkpoints of a run: `composer.save` payloads (atomic; loadable with `composer.load_model`) that
also carry the recipe, class names, optimizer, scheduler, scaler, EMA and RNG states."""

from __future__ import annotations

from pathlib import Path

import torch

from ..blueprint import Blueprint
from ..blueprint.errors import printable
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
    if not isinstance(payload, dict) or payload.get("format") != "composer/1" or not isinstance(payload.get("blueprint"), str) \
            or not isinstance(payload.get("state_dict"), dict):
        raise weights_error(p, "is not a composer checkpoint", "checkpoints are the .pt files `composer train` writes")
    _check_head(payload, p)
    return payload


def _check_head(payload: dict, p: Path) -> None:
    """The head's width, the blueprint's `classes` and the class names (when there are any) agree."""
    from ..blueprint.reading import parse_blueprint
    from ..blueprint import BlueprintError
    origin = payload.get("blueprint_file")
    try:  # the blueprint's own errors are located in the checkpoint, not in the file it was once read from
        declared = parse_blueprint(payload["blueprint"], file=f"{p} (blueprint {origin})" if isinstance(origin, str) else str(p)).model.classes
    except BlueprintError:
        raise
    except Exception:
        raise weights_error(p, "holds a blueprint that does not validate", "use a checkpoint that composer wrote") from None
    classes = payload.get("classes")
    if classes is not None and (not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes)):
        raise weights_error(p, "has class names that are not strings", "use a checkpoint that composer wrote")
    twice = next((c for i, c in enumerate(classes or []) if c in classes[:i]), None)
    if twice is not None:
        raise weights_error(p, f"names the class `{printable(twice[:60], keep_newlines=False)}` twice",
                            "the file was changed after training; use another checkpoint")
    # the classifier: the last 2-d weight of the head, in the modules' order
    weights = [v for k, v in payload["state_dict"].items() if isinstance(k, str) and k.startswith("head.")
               and k.endswith(".weight") and isinstance(v, torch.Tensor) and v.ndim == 2]
    width = weights[-1].shape[0] if weights else None
    names = len(classes) if classes is not None else declared
    if width is not None and names != width:
        raise weights_error(p, f"names {names} classes but its head has {width} outputs",
                            "the file was changed after training; use another checkpoint")
    if declared != names or (width is not None and width != declared):
        raise weights_error(p, f"does not agree with itself: {names} class names, a blueprint of {declared} classes"
                               + (f", a head of {width} outputs" if width is not None else ""),
                            "the file was changed after training; use another checkpoint")


# what a training checkpoint holds, and the type of each entry
TRAINING_KEYS = {"state_dict": dict, "blueprint": str, "classes": list, "epoch": int, "best_top1": float, "recipe": dict,
                 "optimizer": dict, "scheduler": dict, "scaler": dict, "rng": dict}


def check_checkpoint(payload: dict, path: str | Path) -> dict:
    """A training checkpoint's declared shape, checked before use: every entry there with its type,
    class names that are distinct strings, and a head as wide as the class names and the blueprint."""
    p = Path(path)
    for key, kind in TRAINING_KEYS.items():
        value = payload.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is float and not isinstance(value, (int, float))):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            raise weights_error(p, f"is not a training checkpoint of `composer train`: its `{key}` is "
                                   f"{'missing' if value is None else type(value).__name__}",
                                "resume from the last.pt a run wrote, or start a new run")
    _check_head(payload, p)
    if not isinstance(payload["epoch"], int) or payload["epoch"] < 0:
        raise weights_error(p, "has a negative epoch", "resume from the last.pt a run wrote")
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
