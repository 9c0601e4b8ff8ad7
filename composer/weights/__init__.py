"""weights: load checkpoints into a built network (our layout or timm's), resize, transplant.

    net = composer.build("blueprints/timm/convnext_tiny.yaml", weights="convnext_tiny.safetensors")
    print(net.weights_report.summary())

Takes a built network and its plan; never reaches back to the blueprint.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Literal, Mapping, Union

import torch

from ..network.composed import ComposedNet
from ..network.parts import network_parts
from ..planning.planner import Plan
from .loading import LoadReport, load_tensors
from .read import Checkpoint, WeightsError, read_checkpoint, weights_error
from .timm import from_timm, timm_hits
from .transformers import from_transformers, transformers_hits
from .part_transplant import transplant

if TYPE_CHECKING:
    from ..network.composed import ComposedNet

Source = Union[str, os.PathLike, Mapping[str, torch.Tensor], Checkpoint]
Layout = Literal["auto", "composer", "timm", "transformers"]
LAYOUTS = ("auto", "composer", "timm", "transformers")

__all__ = ["load_weights", "transplant_weights", "to_our_layout", "LoadReport", "WeightsError", "Checkpoint",
           "read_checkpoint"]


def _checkpoint(source: Source) -> Checkpoint:
    if isinstance(source, Checkpoint):
        return source
    if isinstance(source, Mapping):
        tensors = dict(source)
        bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise weights_error("<state dict>", f"entries that are not tensors: {', '.join(map(str, bad[:5]))}")
        return Checkpoint("<state dict>", tensors)
    return read_checkpoint(source)


def to_our_layout(plan: Plan, net: ComposedNet, ckpt: Checkpoint, layout: Layout = "auto"
                  ) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """The checkpoint's tensors under our names, the layout it was in, and the tensors nothing used."""
    own = list(net.state_dict().keys())
    if layout == "auto":
        # the layout that names most of our tensors; composer's wins ties
        found = {"composer": sum(k in ckpt.tensors for k in own), "timm": timm_hits(plan, own, ckpt.tensors)}
        if not any(k.startswith(_TRANSFORMERS_ROOTS) for k in ckpt.tensors):
            found["transformers"] = 0  # cheap: no need to spell the names out
        else:
            found["transformers"] = transformers_hits(plan, own, ckpt.tensors)
        layout = max(found, key=found.get)
        if found[layout] == 0:
            raise weights_error(ckpt.file, "none of its tensors has a name of this blueprint's tensors, in composer's "
                                           "layout, timm's or Hugging Face transformers'",
                                "is it a checkpoint of this architecture? e.g. "
                                f"{', '.join(list(ckpt.tensors)[:3]) or 'no tensors'}")
    if layout == "composer":
        tensors = ckpt.tensors
        return tensors, "composer", sorted(k for k in tensors if k not in set(own))
    tensors, used = (from_timm if layout == "timm" else from_transformers)(plan, own, ckpt.tensors)
    return tensors, layout, sorted(k for k in ckpt.tensors if k not in used)


# the first names of transformers' image classifiers' state dicts
_TRANSFORMERS_ROOTS = ("cvt.", "vit.", "convnext.", "resnet.", "mobilenet_v2.", "efficientnet.")


def load_weights(net: ComposedNet, plan: Plan, source: Source, *, layout: Layout = "auto",
                 strict: bool = True) -> LoadReport:
    """Load a checkpoint (path, state dict or Checkpoint) into `net`, built from `plan`.

    `layout`: "composer" (our key names), "timm" (timm's), "transformers" (Hugging Face
    transformers' image classifiers), or "auto" (whichever names most of our tensors). Strict:
    every tensor must be found and fit, except a classifier for another class count
    (re-initialised) and position tables for another grid (resized); `strict=False` loads what
    fits and reports the rest.
    """
    if layout not in LAYOUTS:
        raise weights_error(None, f"unknown checkpoint layout `{layout}`", "use auto, composer, timm or transformers")
    ckpt = _checkpoint(source)
    tensors, layout, ignored = to_our_layout(plan, net, ckpt, layout)
    droppable: set[str] = set()
    if plan.classes == 0:  # a feature extractor: the checkpoint's classifier has no place
        head = network_parts(plan)["head"]
        for names in [{"fc": "head.fc"}, *head.config.timm_names(head.context), *head.config.transformers_names(head.context)]:
            droppable |= {f"{names['fc']}.weight", f"{names['fc']}.bias"} if "fc" in names else set()
    return load_tensors(net, tensors, file=ckpt.file, layout=layout, strict=strict, ignored=ignored,
                        droppable=droppable)


def transplant_weights(net: ComposedNet, plan: Plan, source: Source, parts: list, *, source_plan: Plan | None = None,
                       layout: Layout = "auto", strict: bool = True) -> LoadReport:
    """Initialise `parts` of `net` ("stem", "head", stage indices) from the same parts of a checkpoint of
    another architecture (`source_plan`: its plan, needed for timm's layout). See weights/transplant.py."""
    return transplant(net, plan, _checkpoint(source), list(parts), source_plan=source_plan, layout=layout,
                      strict=strict)
