"""timm's layout -> ours: every part of the plan says how timm names its tensors (the block families'
`timm_names`, the stems', heads' and transitions'); here those names are put together with timm's
numbering of blocks, and the spelling that matches the checkpoint best is chosen part by part.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..plan import Plan

# timm's numbering of the blocks of stage s (block i of the stage, g of the network)
BLOCK_LAYOUTS: dict[str, Callable[[int, int, int], str]] = {
    "resnet": lambda s, i, g: f"layer{s + 1}.{i}",
    "efficientnet": lambda s, i, g: f"blocks.{s}.{i}",
    "stages": lambda s, i, g: f"stages.{s}.blocks.{i}",
    "vit": lambda s, i, g: f"blocks.{g}",
}

Rule = tuple[str, Callable | None]  # timm's key, and how to turn timm's tensor into ours


def _resolve(key: str, names: dict, theirs_prefix: str = "") -> Rule | None:
    """Our key (relative to a part) -> timm's key through the part's names: a full-key entry, or the
    longest module-prefix entry."""
    if key in names:
        value = names[key]
        return (theirs_prefix + value, None) if isinstance(value, str) else (theirs_prefix + value[0], value[1])
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in names and isinstance(names[prefix], str):
            return theirs_prefix + names[prefix] + "." + ".".join(parts[cut:]), None
    return None


def _best(keys: Iterable[str], alternatives: list[dict], available: set[str],
          prefix: str = "") -> dict[str, Rule]:
    """The alternative spelling under which most of `keys` are found in the checkpoint."""
    keys = list(keys)
    best: dict[str, Rule] = {}
    best_hits = -1
    for names in alternatives:
        rules = {k: r for k in keys if (r := _resolve(k, names, prefix)) is not None}
        hits = sum(r[0] in available for r in rules.values())
        if hits > best_hits:
            best, best_hits = rules, hits
    return best


def timm_rules(plan: Plan, own_keys: Iterable[str], available: set[str]) -> dict[str, Rule]:
    """For each of our state-dict keys, timm's key and conversion (keys timm has no name for are absent)."""
    by_part: dict[str, list[str]] = {}
    for key in own_keys:
        head, _, rest = key.partition(".")
        if head == "stages":
            s, _, rest = rest.partition(".")
            part, _, rest = rest.partition(".")
            if part == "blocks":
                i, _, rest = rest.partition(".")
                by_part.setdefault(f"block.{s}.{i}", []).append(rest)
            else:
                by_part.setdefault(f"stage.{s}", []).append(part + ("." + rest if rest else ""))
        else:
            by_part.setdefault(head, []).append(rest)

    rules: dict[str, Rule] = {}
    for key, rule in _best(by_part.get("stem", []), plan.stem.timm_names(), available).items():
        rules[f"stem.{key}"] = rule
    for key, rule in _best(by_part.get("head", []), plan.head.timm_names(), available).items():
        rules[f"head.{key}"] = rule

    # one block numbering for the whole network: the one that finds most tensors
    best_hits, block_rules = -1, {}
    for layout, where in BLOCK_LAYOUTS.items():
        found, hits, g = {}, 0, 0
        for sp in plan.stages:
            for i, ctx in enumerate(sp.contexts):
                names = sp.block.timm_names(ctx, layout)
                prefix = where(sp.index, i, g) + "."
                for rest in by_part.get(f"block.{sp.index}.{i}", []):
                    rule = _resolve(rest, names, prefix)
                    if rule is not None:
                        found[f"stages.{sp.index}.blocks.{i}.{rest}"] = rule
                        hits += rule[0] in available
                g += 1
        if hits > best_hits:
            best_hits, block_rules = hits, found
    rules |= block_rules

    for sp in plan.stages:
        names = {"cls_token": "cls_token", "pos_embed": "pos_embed"}
        names |= {f"transition.{k}": v for k, v in sp.transition.timm_names(sp.index).items()}
        for rest in by_part.get(f"stage.{sp.index}", []):
            rule = _resolve(rest, names)
            if rule is not None:
                rules[f"stages.{sp.index}.{rest}"] = rule
    return rules


def from_timm(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]
              ) -> tuple[dict[str, torch.Tensor], set[str]]:
    """timm-named tensors -> ours (converted where a family says how); also the timm keys used."""
    rules = timm_rules(plan, own_keys, set(tensors))
    out, used = {}, set()
    for ours, (theirs, convert) in rules.items():
        if theirs in tensors:
            t = tensors[theirs]
            if convert is not None:
                try:
                    t = convert(t)
                except (RuntimeError, ValueError):
                    pass  # a tensor of another shape: reported as a mismatch when it is loaded
            out[ours] = t
            used.add(theirs)
    return out, used


def timm_hits(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor]) -> int:
    """How many of our tensors the checkpoint holds under timm's names."""
    rules = timm_rules(plan, own_keys, set(tensors))
    return sum(theirs in tensors for theirs, _ in rules.values())
