"""Foreign checkpoint layouts -> ours, one mechanism for every library whose names the parts state.

Every part of a plan says how a library names its tensors: the block families through a method
named after the library (`timm_names(ctx, layout)`, `transformers_names(ctx, layout)`), and so do
the stems, heads and transitions. A `Spelling` names that method, the library's numberings of
blocks (`block_layouts`) and the names of a stage's own tensors (class token, position embedding).
Here those names are put together, and the spelling that matches the checkpoint best is chosen
part by part.

A name is our key (or a module prefix of it) -> the library's key, `(key, convert)` where `convert`
turns the library's tensor into ours, or `((key, key, ...), convert)` where `convert` joins several
of the library's tensors into one of ours (separate query, key and value Linears into one qkv).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Union

import torch

from ..plan import Plan

Theirs = Union[str, tuple[str, ...]]
Rule = tuple[Theirs, Callable | None]  # the library's key(s), and how to turn its tensor(s) into ours
Alternatives = list[dict]


@dataclass(frozen=True)
class Spelling:
    """How one library names a network's tensors."""

    name: str  # the layout's name in reports: "timm", "transformers"
    method: str  # the parts' method that states the names: "timm_names"
    # the library's numbering of the blocks of stage s (block i of the stage, g of the network)
    block_layouts: dict[str, Callable[[int, int, int], str]]
    # names of a stage's own tensors (class token, position embedding), keys relative to the
    # stage, values relative to the network; alternatives
    stage_names: Callable[[int], Alternatives]

    def names(self, part, *args) -> Alternatives:
        """A part's names in this spelling, always as a list of alternatives."""
        method = getattr(part, self.method, None)
        names = method(*args) if method is not None else {}
        return names if isinstance(names, list) else [names]


def _keys(theirs: Theirs) -> tuple[str, ...]:
    return (theirs,) if isinstance(theirs, str) else theirs


def _join(prefix: str, name: str) -> str:
    """prefix + name, where each leading `../` of the name moves up one level of the prefix (a block's
    tensors that the library keeps in its next block: `stages.2.0.` + `../1.conv` = `stages.2.1.conv`)."""
    while name.startswith("../") and prefix:
        prefix = prefix[:-1].rpartition(".")[0]
        prefix = prefix + "." if prefix else ""
        name = name[3:]
    return prefix + name


def _prefixed(theirs: Theirs, prefix: str) -> Theirs:
    return _join(prefix, theirs) if isinstance(theirs, str) else tuple(_join(prefix, t) for t in theirs)


def _resolve(key: str, names: dict, theirs_prefix: str = "") -> Rule | None:
    """Our key (relative to a part) -> the library's key through the part's names: a full-key entry,
    or the longest module-prefix entry."""
    if key in names:
        value = names[key]
        if isinstance(value, str):
            return _join(theirs_prefix, value), None
        return _prefixed(value[0], theirs_prefix), value[1]
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in names and isinstance(names[prefix], str):
            return _join(theirs_prefix, names[prefix] + "." + ".".join(parts[cut:])), None
    return None


def _found(rule: Rule, available: set[str]) -> bool:
    return all(k in available for k in _keys(rule[0]))


def _best(keys: Iterable[str], alternatives: Alternatives, available: set[str], prefix: str = "") -> dict[str, Rule]:
    """The alternative spelling under which most of `keys` are found in the checkpoint."""
    keys = list(keys)
    best: dict[str, Rule] = {}
    best_hits = -1
    for names in alternatives:
        rules = {k: r for k in keys if (r := _resolve(k, names, prefix)) is not None}
        hits = sum(_found(r, available) for r in rules.values())
        if hits > best_hits:
            best, best_hits = rules, hits
    return best


def _by_part(own_keys: Iterable[str]) -> dict[str, list[str]]:
    """Our keys grouped by part: `stem`, `head`, `block.S.I`, `stage.S` (keys relative to the part)."""
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
    return by_part


def rules(plan: Plan, own_keys: Iterable[str], available: set[str], spelling: Spelling) -> dict[str, Rule]:
    """For each of our state-dict keys, the library's key(s) and conversion (keys it has no name for
    are absent)."""
    by_part = _by_part(own_keys)
    out: dict[str, Rule] = {}
    for part in ("stem", "head"):
        for key, rule in _best(by_part.get(part, []), spelling.names(getattr(plan, part)), available).items():
            out[f"{part}.{key}"] = rule

    # one block numbering for the whole network: the one that finds most tensors
    best_hits, block_rules = -1, {}
    for layout, where in spelling.block_layouts.items():
        found, hits, g = {}, 0, 0
        for sp in plan.stages:
            for i, ctx in enumerate(sp.contexts):
                prefix = where(sp.index, i, g) + "."
                keys = by_part.get(f"block.{sp.index}.{i}", [])
                for rest, rule in _best(keys, spelling.names(sp.block, ctx, layout), available, prefix).items():
                    found[f"stages.{sp.index}.blocks.{i}.{rest}"] = rule
                    hits += _found(rule, available)
                g += 1
        if hits > best_hits:
            best_hits, block_rules = hits, found
    out |= block_rules

    for sp in plan.stages:
        keys = by_part.get(f"stage.{sp.index}", [])
        transition = [k for k in keys if k.startswith("transition.")]
        own = [k for k in keys if not k.startswith("transition.")]
        for key, rule in _best(own, spelling.stage_names(sp.index), available).items():
            out[f"stages.{sp.index}.{key}"] = rule
        alternatives = [{f"transition.{k}": v for k, v in names.items()}
                        for names in spelling.names(sp.transition, sp.index)]
        for key, rule in _best(transition, alternatives, available).items():
            out[f"stages.{sp.index}.{key}"] = rule
    return out


def convert(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor], spelling: Spelling
            ) -> tuple[dict[str, torch.Tensor], set[str]]:
    """The library's tensors -> ours (converted where a part says how); also the library's keys used."""
    out, used = {}, set()
    for ours, (theirs, fn) in rules(plan, own_keys, set(tensors), spelling).items():
        keys = _keys(theirs)
        if not all(k in tensors for k in keys):
            continue
        sources = [tensors[k] for k in keys]
        t = sources[0]
        if fn is not None:
            try:
                t = fn(*sources)
            except (RuntimeError, ValueError, IndexError):
                # tensors of other shapes: reported as a mismatch when loaded (the first, unconverted)
                pass
        out[ours] = t
        used.update(keys)
    return out, used


def hits(plan: Plan, own_keys: Iterable[str], tensors: dict[str, torch.Tensor], spelling: Spelling) -> int:
    """How many of our tensors the checkpoint holds under the library's names."""
    return sum(_found(rule, set(tensors)) for rule in rules(plan, own_keys, set(tensors), spelling).values())
