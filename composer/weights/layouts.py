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

from ..network.parts import Part, Parts, network_parts
from ..planning.planner import Plan

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


def _by_part(parts: Parts, own_keys: Iterable[str]) -> dict[str, list[str]]:
    """Our keys grouped by the part that holds them (the deepest part whose path prefixes the key;
    a stage holds its own tensors), keys relative to the part."""
    paths = {p.path for p in parts}
    by_part: dict[str, list[str]] = {}
    for key in own_keys:
        pieces = key.split(".")
        for cut in range(len(pieces) - 1, 0, -1):
            owner = ".".join(pieces[:cut])
            if owner in paths:
                by_part.setdefault(owner, []).append(".".join(pieces[cut:]))
                break
    return by_part


def _part_names(part: Part, spelling: Spelling) -> Alternatives:
    """How the library names the tensors of a stem, head or transition (keys relative to the part,
    values to the network)."""
    return spelling.names(part.config, part.context, "")


def rules(plan: Plan, own_keys: Iterable[str], available: set[str], spelling: Spelling) -> dict[str, Rule]:
    """For each of our state-dict keys, the library's key(s) and conversion (keys it has no name for
    are absent). Every part of the network (composer/network/parts.py) names its own tensors."""
    parts = network_parts(plan)
    by_part = _by_part(parts, own_keys)
    out: dict[str, Rule] = {}
    for part in parts:
        if part.kind in ("stem", "head", "transition"):
            alternatives = _part_names(part, spelling)
        elif part.kind == "stage":
            alternatives = spelling.stage_names(part.stage)
        else:
            continue  # blocks: below, under one numbering for the whole network
        for key, rule in _best(by_part.get(part.path, []), alternatives, available).items():
            out[f"{part.path}.{key}"] = rule

    # one block numbering for the whole network: the one that finds most tensors
    blocks = [p for p in parts if p.kind == "block"]
    best_hits, block_rules = -1, {}
    for layout, where in spelling.block_layouts.items():
        found, hits = {}, 0
        for g, part in enumerate(blocks):
            prefix = where(part.stage, part.index, g) + "."
            names = spelling.names(part.config, part.context, layout)
            for rest, rule in _best(by_part.get(part.path, []), names, available, prefix).items():
                found[f"{part.path}.{rest}"] = rule
                hits += _found(rule, available)
        if hits > best_hits:
            best_hits, block_rules = hits, found
    return out | block_rules


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
