"""Reading checkpoint files safely: safetensors, or torch pickles restricted to tensors.

A pickle is only ever opened with `torch.load(..., weights_only=True)`; one that would construct
other objects (run code) is refused. Large files are memory-mapped, so nothing is copied into memory
before the caller has checked that the network fits.
"""

from __future__ import annotations

import os
import pickle
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..blueprint import BlueprintError, Problem

SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library's own limit on the JSON header

# budgets decided from a file's directory before its contents are read (published checkpoints hold at
# most a few thousand tensors, and a pickle's object stream of well under a megabyte)
MAX_HEADER_BYTES = 16 << 20  # a safetensors JSON header
MAX_TENSORS = 100_000  # tensors in one checkpoint
MAX_PICKLE_BYTES = 256 << 20  # the object stream (data.pkl) of a torch zip checkpoint, uncompressed
MAX_ZIP_ENTRIES = 200_000


class WeightsError(BlueprintError):
    """A checkpoint that cannot be read, or whose tensors do not fit the blueprint."""

    subject = "with the weights"

    def __str__(self) -> str:
        n = len(self.problems)
        return f"{n} problem{'s' if n != 1 else ''} with weights:\n" + "\n".join(f"  {p}" for p in self.problems)


def weights_error(file: str | os.PathLike | None, message: str, hint: str | None = None) -> WeightsError:
    return WeightsError(Problem(message, (), str(file) if file is not None else "<weights>", hint=hint))


@dataclass
class Checkpoint:
    """What a checkpoint file holds: tensors by name, text metadata, and (pickles) other entries."""

    file: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    entries: dict[str, Any] = field(default_factory=dict)  # a pickle's top-level entries besides the tensors


def file_kind(path: Path) -> str:
    """`safetensors`, `zip` (torch.save), `pickle` (legacy torch.save) or `unknown`, from the first bytes."""
    with path.open("rb") as fh:
        head = fh.read(9)
    # safetensors first: its 8-byte header length may well start with 0x80, a pickle's first byte
    if len(head) == 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < SAFETENSORS_HEADER_LIMIT:
        return "safetensors"
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _check_path(path: Path) -> None:
    if not path.exists():
        raise weights_error(path, "no such file")
    if path.is_dir():
        raise weights_error(path, "is a directory, not a checkpoint file")
    if path.stat().st_size == 0:
        raise weights_error(path, "the file is empty")


def check_safetensors_header(path: Path) -> None:
    """The header's size and tensor count within budget, read before the safetensors library parses it."""
    import json

    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
        if n > MAX_HEADER_BYTES:
            raise weights_error(path, f"its safetensors header is {n:,} bytes, over the budget of {MAX_HEADER_BYTES:,}")
        if n + 8 > size:
            raise weights_error(path, f"not a readable safetensors file (truncated or corrupt?): the header says "
                                      f"{n:,} bytes, the file has {size - 8:,} after its length")
        try:
            header = json.loads(fh.read(n))
        except (ValueError, RecursionError) as exc:
            raise weights_error(path, f"not a readable safetensors file (truncated or corrupt?): its header is not "
                                      f"JSON ({str(exc)[:100]})") from None
    if not isinstance(header, dict):
        raise weights_error(path, "not a readable safetensors file: its header is not a JSON object")
    count = len(header) - ("__metadata__" in header)
    if count > MAX_TENSORS:
        raise weights_error(path, f"holds {count:,} tensors, over the budget of {MAX_TENSORS:,}")


def check_zip_directory(path: Path) -> None:
    """From the zip directory, before torch reads anything: entry count, the object stream's
    uncompressed size, and compressed entries (torch writes entries stored; a compressed one would
    be inflated into memory) against the memory this process may use."""
    from ..io.room import memory_room

    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise weights_error(path, f"not a readable torch checkpoint (truncated or corrupt?): {exc}") from None
    if len(entries) > MAX_ZIP_ENTRIES:
        raise weights_error(path, f"its archive holds {len(entries):,} entries, over the budget of {MAX_ZIP_ENTRIES:,}")
    pickles = [e for e in entries if e.filename.endswith(".pkl")]
    stream = sum(e.file_size for e in pickles)
    if stream > MAX_PICKLE_BYTES:
        raise weights_error(path, f"its object stream is {stream:,} bytes uncompressed, over the budget of "
                                  f"{MAX_PICKLE_BYTES:,}", "a checkpoint's tensors are stored beside it, not in it")
    inflated = sum(e.file_size for e in entries if e.compress_type != zipfile.ZIP_STORED)
    have, why = memory_room()
    if inflated > 0.5 * have:
        raise weights_error(path, f"its compressed entries inflate to {inflated / 2**30:.1f} GiB, more than this "
                                  f"process may use ({have / 2**30:.1f} GiB; {why})")


def check_finite(file: str | os.PathLike, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or infinity, naming the tensors (a diverged run saves such weights)."""
    bad = [k for k, t in tensors.items() if t.is_floating_point() or t.is_complex()
           if t.device.type != "meta" and t.numel() and not bool(torch.isfinite(t).all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise weights_error(file, f"tensor{'s' if len(bad) > 1 else ''} {', '.join(f'`{k}`' for k in bad[:5])}{more} "
                                  f"hold{'' if len(bad) > 1 else 's'} NaN or infinite values",
                            "the run that wrote them diverged; use an earlier checkpoint")


def read_safetensors(path: Path) -> Checkpoint:
    """Open lazily: tensors are memory-mapped views until used."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    check_safetensors_header(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise weights_error(path, f"not a readable safetensors file (truncated or corrupt?): {exc}") from None
    return Checkpoint(str(path), tensors, metadata)


def load_pickle(path: Path) -> Any:
    """`torch.load` with `weights_only=True` (memory-mapped when the file is a zip archive), after the
    budgets of its zip directory (or, for a legacy pickle read whole, its size) are checked."""
    kind = file_kind(path)
    if kind == "zip":
        check_zip_directory(path)
    else:
        from ..io.room import memory_room

        have, why = memory_room()
        if path.stat().st_size > 0.5 * have:
            raise weights_error(path, f"a legacy (non-zip) pickle of {path.stat().st_size / 2**30:.1f} GiB is read whole, "
                                      f"more than this process may use ({why})", "save it again with torch.save")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # protocol notes: a file it cannot read is refused below
            if path.suffix.lower() == ".safetensors":  # torch.load would hand such a name to safetensors
                with path.open("rb") as fh:
                    return torch.load(fh, map_location="cpu", weights_only=True)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()
        reason = next((line for line in first if "GLOBAL" in line or "Unsupported" in line), first[0] if first else "")
        raise weights_error(path, f"refused: the pickle would construct objects other than tensors ({reason.strip()})",
                            "only plain tensors, numbers, strings and containers are loaded; convert the file "
                            "to safetensors with the tool that wrote it") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError,
            IndexError, TypeError, struct.error) as exc:
        raise weights_error(path, f"not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None


def _state_dict_of(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a loaded pickle: the dict itself, or its `state_dict` / `model` / `state_dict_ema` entry."""
    if not isinstance(obj, dict):
        raise weights_error(path, f"holds a {type(obj).__name__}, not a dict of tensors")
    for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return dict(inner), {k: v for k, v in obj.items() if k != key}
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise weights_error(path, "holds no tensors", "expected a state dict (names -> tensors)")
    others = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if others:
        raise weights_error(path, f"mixes tensors with other entries ({', '.join(map(str, others[:5]))})",
                            "expected a state dict, or a dict with a `state_dict` entry")
    return tensors, {}


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a `.safetensors` file or a torch pickle (`.pt`, `.pth`, `.bin`) into named tensors.

    A name `hf-hub:OWNER/NAME` (timm's spelling) is fetched into, or read from, the Hugging Face cache
    (composer/weights/hub.py) and reported under that name.

    Raises WeightsError naming the file for anything unreadable, empty, foreign or unsafe.
    """
    from .hub import is_hub_name, resolve

    if is_hub_name(path):
        ckpt = read_checkpoint(resolve(path))
        ckpt.file = os.fspath(path)
        return ckpt
    p = Path(path)
    _check_path(p)
    kind = file_kind(p)
    if kind == "safetensors":
        ckpt = read_safetensors(p)
        check_finite(p, ckpt.tensors)
        return ckpt
    if kind == "unknown":
        raise weights_error(p, "is neither a safetensors file nor a torch checkpoint",
                            "composer reads .safetensors files and torch.save pickles (.pt, .pth, .bin)")
    tensors, entries = _state_dict_of(load_pickle(p), p)
    for prefix in ("module.", "_orig_mod."):  # DataParallel / torch.compile wrappers
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    if len(tensors) > MAX_TENSORS:
        raise weights_error(p, f"holds {len(tensors):,} tensors, over the budget of {MAX_TENSORS:,}")
    metadata = {k: v for k, v in entries.items() if isinstance(v, str)}
    check_finite(p, tensors)
    return Checkpoint(str(p), tensors, metadata, entries)
