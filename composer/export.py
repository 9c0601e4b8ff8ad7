"""export: a built network -> an ONNX file (checked with onnxruntime) or a torch.export program (.pt2).

    export_onnx(net, "net.onnx")      torch.onnx (dynamo exporter), then onnxruntime vs PyTorch
    export_program(net, "net.pt2")    torch.export.save, then torch.export.load vs PyTorch

Both take a built network (composer.build / composer.load_model) and export it in eval mode for the
input size it was built for (or `size`), batch 1 unless told otherwise; `dynamic_batch` leaves the
batch dimension free. The file is written atomically and only after the check passed: a file whose
outputs differ from PyTorch's by more than `tolerance` is never written. When the exporter fails,
the parts of the network are exported one by one to name the block that cannot be exported.

The file says how to use the network: the input is named `images` and the output `logits`, and
the facts a user needs travel inside it (`ExportFacts`: class names when the model knows them,
mean, std, input size, crop_pct): ONNX metadata_props (strings, lists as JSON), and in a `.pt2`
the extra file `composer.json` (`torch.export.load(f, extra_files={"composer.json": ""})`).

ONNX needs the optional `export` extra (onnx, onnxscript, onnxruntime); `import composer` does not
import them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from .blueprint.errors import printable
from .errors import ComposerError
from .network.features import check_input
from .io.files import atomic_write
from .network.parts import Parts

TOLERANCE = 1e-4
ONNX_LIMIT = 2**31 - 1  # protobuf's limit on one serialised ONNX model
FORMATS = {"onnx": ".onnx", "export": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "images", "logits"
FACTS_FILE = "composer.json"  # the facts inside a .pt2 archive
MAX_SIDE = 16384  # the blueprint language's limit on input.size


class ExportError(ComposerError):
    """The network could not be exported, or the exported file does not match PyTorch."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    format: str  # "onnx" or "export"
    input_shape: tuple[int, int, int, int]  # (B, C, H, W) of the example the network was traced with
    dynamic_batch: bool
    max_abs_diff: float  # exported outputs vs PyTorch's, on the check input
    tolerance: float
    bytes: int
    checked_with: str  # "onnxruntime 1.x" or "torch.export.load"
    facts: "ExportFacts | None" = None


@dataclass(frozen=True)
class ExportFacts:
    """What a user of the exported file needs to feed it and read its answer."""

    input_size: tuple[int, int, int]  # (C, H, W) of `images`
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float
    classes: tuple[str, ...] | None = None  # None: the model does not know its class names
    normalisation_from: str = "composer's default recipe"  # or "the training recipe"
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        """String keys and values (ONNX metadata_props); lists as JSON."""
        out = {
            "producer": "composer",
            "input": f"{INPUT_NAME}: float32 (batch, {', '.join(map(str, self.input_size))}), RGB scaled to 0-1, "
                     "then (x - mean) / std per channel",
            "output": f"{OUTPUT_NAME}: float32 (batch, {self.num_classes}), before softmax"
                      if self.num_classes else f"{OUTPUT_NAME}: float32 (batch, features); the network has no classifier",
            "input_size": json.dumps(list(self.input_size)),
            "num_classes": str(self.num_classes),
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "crop_pct": repr(self.crop_pct),
            "normalisation_from": self.normalisation_from,
        }
        if self.classes is not None:
            out["classes"] = json.dumps(list(self.classes), ensure_ascii=False)
        else:
            out["classes_note"] = ("the model does not know its class names (a blueprint or a built model); "
                                   "outputs are class indices 0 to num_classes - 1")
        return {**self.extra, **out}

    def summary(self) -> str:
        names = (f"{len(self.classes)} class names" if self.classes is not None
                 else "no class names (export a training checkpoint for them)")
        return (f"metadata: {names}, mean {list(self.mean)}, std {list(self.std)} ({self.normalisation_from}), "
                f"input {'x'.join(map(str, self.input_size))}, crop_pct {self.crop_pct:g}; "
                f"`{INPUT_NAME}` -> `{OUTPUT_NAME}`")


def facts_for(net: nn.Module, entries: Mapping[str, Any] | None = None,
              size: int | tuple[int, int] | None = None) -> ExportFacts:
    """The facts of `net` from a saved model's entries (a training checkpoint holds its class names
    and recipe); what the entries do not say comes from composer's default recipe."""
    from .train.recipe import AugmentConfig

    entries = entries or {}
    c, h, w = net.input_shape
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    recipe = entries.get("recipe")
    augment, origin = AugmentConfig(), "composer's default recipe"
    if isinstance(recipe, Mapping) and isinstance(recipe.get("augment", {}), Mapping):
        try:
            augment, origin = AugmentConfig.model_validate(recipe.get("augment", {})), "the training recipe"
        except ValueError as exc:  # refused, not replaced by the defaults: the metadata would lie
            first = exc.errors()[0] if hasattr(exc, "errors") else {}
            where = ".".join(str(x) for x in first.get("loc", ()))
            raise ExportError(f"the checkpoint's recipe has a preprocessing composer does not read "
                              f"({where}: {first.get('msg', exc)})") from None
    if not all(math.isfinite(s) and s > 0 for s in augment.std):
        raise ExportError(f"the training recipe's normalisation std {list(augment.std)} is not positive: "
                          "the exported network would divide by zero")
    names = entries.get("classes")
    n = int(getattr(net, "num_classes", 0) or 0)
    if names is not None:  # a training checkpoint's class names: they must fit its head, or the metadata lies
        if not isinstance(names, (list, tuple)) or not all(isinstance(x, str) for x in names):
            raise ExportError("the checkpoint's class names are not a list of strings")
        if len(names) != n:
            raise ExportError(f"the checkpoint names {len(names)} classes but its head has {n} outputs")
        if len(set(names)) != len(names):
            twice = next(x for i, x in enumerate(names) if x in names[:i])
            raise ExportError(f"the checkpoint names the class `{printable(twice[:60], keep_newlines=False)}` twice")
    classes = tuple(names) if names is not None and n else None
    return ExportFacts((c, h, w), n, tuple(augment.mean), tuple(augment.std), float(augment.crop_pct), classes, origin)


def check_room(plan, batch: int = 1) -> None:
    """Refuse, before any tensor exists, an export whose forward pass would not fit in this
    process's memory: weights plus the activations a training step at that size saves (an upper
    bound of a forward pass's), from a count on meta tensors."""
    from .analysis.memory import train_memory
    from .blueprint import BlueprintError
    from .io.room import memory_room

    counted = max(batch, 2)  # BatchNorm in training mode needs two values per channel to be counted
    try:
        memory = train_memory(plan, batch=counted)
    except BlueprintError:
        raise
    except Exception:  # a block that cannot run on meta tensors (data-dependent): the exporter names it
        return
    need = memory.weights + memory.activations * batch / counted
    have = memory_room()[0]
    if need > 0.8 * have:
        c, h, w = plan.input_shape
        raise ExportError(f"exporting at {h}x{w} (batch {batch}) needs about {need / 2**30:.1f} GiB, more than the "
                          f"{have / 2**30:.1f} GiB this process may use; export at a smaller `--size`")


def example_input(net: nn.Module, size: int | tuple[int, int] | None = None, batch: int = 1,
                  dynamic_batch: bool = False) -> torch.Tensor:
    """A fixed (seeded) input of the network's input shape, at `size` if given."""
    from .io.room import memory_room

    c, h, w = net.input_shape
    if dynamic_batch:
        batch = max(batch, 2)  # torch.export specialises a dimension of size 1 to a constant
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):  # before the tensor exists
        from .network.features import InputSizeError
        raise InputSizeError(f"an input of {h}x{w}: each side must be 1 to {MAX_SIDE:,}, as a blueprint's input.size")
    if 4 * (batch + 2) * c * h * w > 0.5 * memory_room()[0]:  # the example and the check input
        raise ExportError(f"an example input of {batch}x{c}x{h}x{w} does not fit in this process's memory; "
                          "export at a smaller `--size`")
    x = torch.randn(batch, c, h, w, generator=torch.Generator().manual_seed(0))
    check_input(x, net.input_shape, getattr(net, "fixed_size", None))
    return x


def export_onnx(net: nn.Module, path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                batch: int = 1, dynamic_batch: bool = False, tolerance: float = TOLERANCE,
                opset: int | None = None, facts: ExportFacts | None = None) -> ExportReport:
    """Export `net` to ONNX with torch.onnx, run the result in onnxruntime on a seeded input and
    compare with PyTorch; write `path` (atomically) only when the outputs agree within `tolerance`.
    The input is named `images`, the output `logits`; `facts` (default: `facts_for(net)`) go into
    the model's metadata_props."""
    ort = require_export_extra()
    import onnx

    x = example_input(net, size, batch, dynamic_batch)
    facts = facts or facts_for(net, size=size)

    def convert(module: nn.Module, args: tuple) -> bytes:
        whole = module is net
        dims = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch and whole else None
        names = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME]) if whole else {}
        with _quiet():
            program = torch.onnx.export(module, args, dynamo=True, dynamic_shapes=dims, opset_version=opset,
                                        verbose=False, **names)
        model = program.model_proto
        if whole:
            onnx.helper.set_model_props(model, facts.metadata())
        return model.SerializeToString()

    with _eval(net):
        data = _export_or_locate(net, x, convert, "ONNX")
        if len(data) > ONNX_LIMIT:
            raise ExportError(f"the ONNX model is {len(data) / 2**30:.1f} GiB, over ONNX's 2 GiB limit on one file; "
                              "export with `--format export` (a .pt2 program) instead")
        check = _check_input(x, dynamic_batch)
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        got = [torch.from_numpy(y) for y in session.run(None, {name: check.numpy()})]
        diff = _max_abs_diff(net, check, got)
        _refuse_mismatch(diff, tolerance, "onnxruntime")
        with atomic_write(path) as fh:
            fh.write(data)
    return ExportReport(Path(path), "onnx", tuple(x.shape), dynamic_batch, diff, tolerance, len(data),
                        f"onnxruntime {ort.__version__}", facts)


def export_program(net: nn.Module, path: str | os.PathLike, *, size: int | tuple[int, int] | None = None,
                   batch: int = 1, dynamic_batch: bool = False, tolerance: float = TOLERANCE,
                   facts: ExportFacts | None = None) -> ExportReport:
    """Export `net` with torch.export and save the program (`.pt2`); the saved bytes are loaded back
    with torch.export.load and compared with PyTorch before `path` is written (atomically). The
    input is named `images`; `facts` (default: `facts_for(net)`) are the archive's extra file
    `composer.json`, as JSON (the same keys and values as the ONNX metadata)."""
    x = example_input(net, size, batch, dynamic_batch)
    facts = facts or facts_for(net, size=size)

    def convert(module: nn.Module, args: tuple) -> bytes:
        whole = module is net
        dims = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch and whole else None
        with _quiet():  # the whole network's argument is called `images`, as in the ONNX file
            program = torch.export.export(_Named(module) if whole else module, args, dynamic_shapes=dims)
        buf = io.BytesIO()
        torch.export.save(program, buf, extra_files={FACTS_FILE: json.dumps(facts.metadata(), ensure_ascii=False)}
                          if whole else None)
        return buf.getvalue()

    with _eval(net):
        data = _export_or_locate(net, x, convert, "torch.export")
        check = _check_input(x, dynamic_batch)
        reloaded = torch.export.load(io.BytesIO(data)).module()
        with torch.no_grad():
            got = reloaded(check)
        diff = _max_abs_diff(net, check, got)
        _refuse_mismatch(diff, tolerance, "the reloaded program")
        with atomic_write(path) as fh:
            fh.write(data)
    return ExportReport(Path(path), "export", tuple(x.shape), dynamic_batch, diff, tolerance, len(data),
                        "torch.export.load", facts)


class _Named(nn.Module):
    """The network with its input called `images` (torch.export names inputs after the arguments)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def require_export_extra():
    """Import the ONNX tool chain, or say how to install it."""
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(missing)}: pip install -e '.[export]' in composer's clone")
    import onnxruntime

    return onnxruntime


def _check_input(x: torch.Tensor, dynamic_batch: bool) -> torch.Tensor:
    """The input the exported file is checked on: a different batch size when the batch is dynamic."""
    if not dynamic_batch:
        return x
    return torch.randn(x.shape[0] + 2, *x.shape[1:], generator=torch.Generator().manual_seed(1))


def _max_abs_diff(net: nn.Module, x: torch.Tensor, got) -> float:
    with torch.no_grad():
        want = net(x)
    want = want if isinstance(want, (list, tuple)) else [want]
    got = got if isinstance(got, (list, tuple)) else [got]
    if len(got) != len(want) or any(tuple(g.shape) != tuple(w.shape) for g, w in zip(got, want)):
        raise ExportError(f"the exported network returns shapes {[tuple(g.shape) for g in got]}, PyTorch "
                          f"{[tuple(w.shape) for w in want]}")
    return max(float((torch.as_tensor(g).float() - w.float()).abs().max()) for g, w in zip(got, want))


def _refuse_mismatch(diff: float, tolerance: float, checker: str) -> None:
    if not diff <= tolerance:  # also refuses NaN
        raise ExportError(f"outputs of {checker} differ from PyTorch's by up to {diff:.3g}, more than the "
                          f"tolerance {tolerance:g}; nothing was written")


def _export_or_locate(net: nn.Module, x: torch.Tensor, convert: Callable[[nn.Module, tuple], bytes],
                      exporter: str) -> bytes:
    """Export the whole network; if that fails, export its parts one by one to name the first one
    that cannot be exported, and why."""
    try:
        return convert(net, (x,))
    except Exception as whole:
        culprit = _locate(net, x, convert)
        why = _first_line(culprit[1] if culprit else whole)
        where = f"`{culprit[0]}` ({type(net.get_submodule(culprit[0])).__name__})" if culprit else "the network"
        raise ExportError(f"{exporter} cannot export {where}: {why}") from whole


def _parts(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The network's parts in order (composer/network/parts.py): stem, each stage's transition and blocks, head;
    those a pruned network no longer holds are left out."""
    for part in getattr(net, "parts", Parts()).leaves:
        try:
            yield part.path, part.module(net)
        except AttributeError:
            continue


def _locate(net: nn.Module, x: torch.Tensor, convert) -> tuple[str, Exception] | None:
    inputs: dict[str, tuple] = {}
    parts = list(_parts(net))
    hooks = [m.register_forward_pre_hook(lambda _m, args, name=name: inputs.setdefault(name, args))
             for name, m in parts]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    for name, module in parts:
        if name not in inputs:
            continue
        try:
            convert(module, inputs[name])
        except Exception as exc:
            return name, exc
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), type(exc).__name__)
    return line if len(line) <= 300 else line[:297] + "..."


@contextlib.contextmanager
def _eval(net: nn.Module) -> Iterator[None]:
    was = net.training
    net.eval()
    try:
        yield
    finally:
        net.train(was)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch.onnx logs progress and a warning per torchvision operator it cannot register, and the
    exporters warn about their own deprecations; keep the command's own output readable."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.onnx._internal.exporter._registration")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
