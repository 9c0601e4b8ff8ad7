"""composer's own saved models: the blueprint text and the state dict, in a torch pickle or safetensors.

    .pt           torch.save({"format": "composer/1", "blueprint": TEXT, "blueprint_file": NAME,
                              "state_dict": {...}, **extra})
    .safetensors  the state dict as tensors; metadata {"format": "composer/1", "blueprint": TEXT,
                  "blueprint_file": NAME, **extra (strings)}

Reading checks the format and the blueprint's size before any tensor is touched (pickles are
memory-mapped, safetensors are read header first), so the caller can refuse a network that would
not fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..blueprint import Blueprint
from ..blueprint.loader import MAX_FILE_BYTES, dump_text
from ..io.files import atomic_write, inputs
from .read import _check_path, check_finite, check_safetensors_header, file_kind, load_pickle, weights_error

FORMAT = "composer/1"


def is_safetensors_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".safetensors")


def save_model(net: torch.nn.Module, blueprint: Blueprint, path: str | os.PathLike, *,
               extra: dict[str, Any] | None = None) -> None:
    """Write the model; never over the blueprint file it was built from (an OSError naming `path`)."""
    with inputs(blueprint.source.file):
        _save_model(net, blueprint, path, extra)


def _save_model(net: torch.nn.Module, blueprint: Blueprint, path: str | os.PathLike,
                extra: dict[str, Any] | None) -> None:
    text = dump_text(blueprint.source.data)  # with any --set overrides applied; reads back exactly as written
    header = {"format": FORMAT, "blueprint": text, "blueprint_file": blueprint.source.file}
    if is_safetensors_path(path):
        from safetensors.torch import save

        from ..blueprint.arguments import check_extra

        check_extra(path, extra)
        metadata = {**(extra or {}), **{k: v or "" for k, v in header.items()}}
        tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
        data = save(tensors, metadata=metadata)
        with atomic_write(path) as fh:
            fh.write(data)
        return
    payload = {**(extra or {}), **header, "state_dict": net.state_dict()}
    with atomic_write(path) as fh:
        torch.save(payload, fh)


@dataclass
class Saved:
    file: str
    blueprint_text: str  # checked for format and size; the caller validates it
    blueprint_name: str
    tensors: Callable[[], dict[str, torch.Tensor]]  # read on demand, after the memory check
    entries: dict[str, Any]

    def unknown_tensors(self, net: torch.nn.Module) -> list[str]:
        own = set(net.state_dict().keys())
        return sorted(k for k in self.tensors() if k not in own)


def _blueprint_text(file: Path, header: dict[str, Any]) -> tuple[str, str]:
    """The embedded blueprint text and the name to report its problems under."""
    fmt = header.get("format")
    if fmt is None:
        raise weights_error(file, "is not a composer model: it has no `format` entry",
                            "a plain checkpoint loads into a blueprint: `composer build BLUEPRINT --weights FILE`")
    if fmt != FORMAT:
        raise weights_error(file, f"has format `{fmt}`, which this composer does not read (it reads `{FORMAT}`)")
    text = header.get("blueprint")
    if not isinstance(text, str):
        raise weights_error(file, "has no blueprint text (`blueprint` entry)")
    if len(text.encode()) > MAX_FILE_BYTES:
        raise weights_error(file, f"its embedded blueprint is larger than {MAX_FILE_BYTES:,} bytes")
    name = header.get("blueprint_file") or None
    return text, f"{file} (blueprint {name or 'text'})"


def read_saved(path: str | os.PathLike) -> Saved:
    p = Path(path)
    _check_path(p)
    kind = file_kind(p)
    if kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import safe_open

        check_safetensors_header(p)
        try:
            with safe_open(str(p), framework="pt") as fh:
                metadata = dict(fh.metadata() or {})
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise weights_error(p, f"not a readable safetensors file (truncated or corrupt?): {exc}") from None
        text, name = _blueprint_text(p, metadata)

        def tensors() -> dict[str, torch.Tensor]:
            from .read import read_safetensors

            tensors = read_safetensors(p).tensors
            check_finite(p, tensors)
            return tensors

        return Saved(str(p), text, name, _once(tensors), metadata)
    if kind == "unknown":
        raise weights_error(p, "is neither a safetensors file nor a torch checkpoint",
                            "composer models are .pt or .safetensors files written by `composer build -o`")
    return saved_from_payload(p, load_pickle(p))  # memory-mapped: no tensor is copied yet


def saved_from_payload(path: str | os.PathLike, payload: Any) -> Saved:
    """A torch pickle's payload, already read from `path`, as a saved model (checked as `read_saved`
    checks it): for a caller that has read the checkpoint for its other entries."""
    p = Path(path)
    if not isinstance(payload, dict):
        raise weights_error(p, f"holds a {type(payload).__name__}, not a composer model")
    text, name = _blueprint_text(p, payload)
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise weights_error(p, "has no `state_dict` of tensors")

    def checked() -> dict[str, torch.Tensor]:
        check_finite(p, state)
        return state

    return Saved(str(p), text, name, _once(checked), payload)


def _once(fn: Callable[[], Any]) -> Callable[[], Any]:
    cache: list = []

    def wrapper() -> Any:
        if not cache:
            cache.append(fn())
        return cache[0]
    return wrapper
