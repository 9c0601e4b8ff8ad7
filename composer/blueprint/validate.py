"""validate: plain data + source map -> a checked blueprint, or every problem located in the file."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ..blocks.base import BlockConfig, Variant
from ..budgets import MAX_BLOCKS, MAX_STAGES
from .errors import BlueprintError, Problem, suggest
from .loader import Source
from .schema import LAYOUT_RE, block_adapter, block_union, blueprint_model, merged_block, parse_layout


@dataclass(frozen=True)
class Blueprint:
    """A validated blueprint: the parsed model, and each stage's resolved block config."""

    model: Any  # the pydantic Blueprint model instance
    letters: list[str]
    stage_blocks: list[BlockConfig]
    source: Source
    stage_overrides: tuple[dict, ...] = ()  # each stage's `block:` overrides, as written

    def where(self, stage: int, option: str) -> tuple:
        """The key path of a stage's option in the blueprint: the stage's own (`channels`), its
        `block:` override, or its legend entry. `option` may be dotted (`attention.kernel`)."""
        if option in ("channels", "stride", "depth", "transition", "class_token", "pos_embed"):
            return ("stages", stage, option)
        path = tuple(option.split("."))
        node = self.stage_overrides[stage] if stage < len(self.stage_overrides) else {}
        for i, key in enumerate(path):
            if not isinstance(node, dict) or key not in node:
                break
            if i == len(path) - 1:
                return ("stages", stage, "block", *path)
            node = node[key]
        return ("blocks", self.letters[stage], *path)

    @property
    def name(self) -> str:
        if self.model.name:
            return self.model.name
        if self.source.file:
            return self.source.file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return "unnamed"


# --- mapping pydantic's error locations back to the file -----------------------------------------

def _unwrap(t: Any) -> Any:
    """The type under `Annotated`; a `Variant(...)` field is the union of its registry's kinds."""
    while get_origin(t) is typing.Annotated:
        variant = next((m for m in get_args(t)[1:] if isinstance(m, Variant)), None)
        t = variant.registry.union() if variant is not None else get_args(t)[0]
    return t


def _field_type(info: Any) -> Any:
    """A model field's type; a field typed `Variant(...)` is the union of its registry's kinds."""
    variant = next((m for m in info.metadata if isinstance(m, Variant)), None)
    return variant.registry.union() if variant is not None else info.annotation


def _unknown_option_hint(key: str, parent: Any, field: str | None) -> str | None:
    """Where an option not of `parent` lives now: a moved spelling, or another kind of the same sort."""
    moved = getattr(parent, "moved_options", {}).get(key)
    if moved:
        return f"`{key}` moved: write `{moved}`"
    registry = getattr(parent, "registry", None)
    if registry is not None and field is not None and registry is not _block_registry():
        owners = registry.owners(key)
        if owners:
            kinds = " or ".join(f"`{field}: {{type: {o}, {key}: ...}}`" for o in owners)
            return f"`{key}` is an option of {registry.sort} {', '.join(f'`{o}`' for o in owners)}, not " \
                   f"`{parent.type_name()}`: write {kinds}"
    return None


def _block_registry():
    from ..blocks import BLOCKS

    return BLOCKS


def _is_union(t: Any) -> bool:
    origin = get_origin(t)
    return origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType")


def _tag(member: Any) -> str | None:
    member = _unwrap(member)
    if isinstance(member, type) and issubclass(member, BaseModel) and "type" in member.model_fields:
        return member.model_fields["type"].default
    return None


def _walk_loc(root: Any, loc: tuple) -> tuple[tuple, Any]:
    """Pydantic `loc` -> (key path in the data, the type found there). Union tags are dropped."""
    t, path = root, []
    for part in loc:
        t = _unwrap(t)
        if _is_union(t):
            members = [_unwrap(m) for m in get_args(t) if m is not type(None)]
            tagged = [m for m in members if _tag(m) == part]
            if tagged:
                t = tagged[0]
                continue
            if isinstance(part, str) and not any(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
                t = None  # a smart-union member name such as `int` or `tuple[int, int]`
                continue
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            t = models[0] if len(models) == 1 else None
            t = _unwrap(t) if t is not None else None
        if isinstance(t, type) and issubclass(t, BaseModel):
            path.append(part)
            t = _field_type(t.model_fields[part]) if part in t.model_fields else None
        elif get_origin(t) in (dict, list, tuple):
            path.append(part)
            args = get_args(t)
            t = args[-1] if args else None
        else:
            path.append(part)
            t = None
    return tuple(path), _unwrap(t)


def _kind_label(t: Any) -> str:
    registry = getattr(t, "registry", None)
    return f"{registry.sort} `{t.type_name()}`" if registry is not None else "this section"


def _fields(t: Any) -> list[str]:
    t = _unwrap(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return list(t.model_fields)
    if _is_union(t):
        return [tag for m in get_args(t) if (tag := _tag(m))]
    return []


def _short_text(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _problems_from(exc: ValidationError, root: Any, source: Source, remap=None) -> list[Problem]:
    out: dict[tuple, Problem] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind, ctx = err["type"], err.get("ctx") or {}
        path, _ = _walk_loc(root, loc)
        _, parent_type = _walk_loc(root, loc[:-1]) if loc else ((), root)
        hint = None
        if kind == "extra_forbidden":
            key = path[-1] if path else "?"
            allowed = _fields(parent_type)
            field = path[-2] if len(path) > 1 and isinstance(path[-2], str) else None
            moved = _unknown_option_hint(key, parent_type, field)
            message = f"unknown option `{key}`" + (f" for {_kind_label(parent_type)}" if moved else "")
            hint = moved or suggest(key, allowed) or (f"allowed: {', '.join(allowed)}" if allowed else None)
        elif kind == "missing":
            message = f"missing required key `{path[-1]}`" if path else "missing required key"
        elif kind == "union_tag_invalid":
            tag = ctx.get("tag")
            tags = sorted(t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(","))
            path = path + ("type",)
            message = f"unknown type `{tag}`; expected one of {', '.join(f'`{t}`' for t in tags)}"
            hint = suggest(tag, tags)
        elif kind == "union_tag_not_found":
            path = path + ("type",)
            message = "missing `type`; it says which kind this entry is"
            allowed = _fields(_walk_loc(root, loc)[1])
            hint = f"one of {', '.join(allowed)}" if allowed else None
        elif kind == "literal_error":
            expected = str(ctx.get("expected", ""))
            choices = [c.strip(" '\"") for c in expected.replace(" or ", ",").split(",")]
            message = f"`{err['input']}` is not allowed; expected {expected}"
            hint = suggest(str(err["input"]), choices)
        else:
            msg = err["msg"].removeprefix("Value error, ")
            message = f"{msg[0].lower()}{msg[1:]}, found {_short(err['input'])}"
        full = remap(path) if remap is not None else path
        out.setdefault(full, source.problem(full, message, hint))
    return list(out.values())


def located_problems(exc: ValidationError, model: Any, source: Source) -> list[Problem]:
    """Pydantic errors of validating `source.data` against `model`, each located in the source file
    (shared by blueprints and training recipes)."""
    return sorted(_problems_from(exc, model, source), key=_order)


# --- the public function -------------------------------------------------------------------------

def validate(source: Source) -> Blueprint:
    """Check a loaded blueprint against the schema; raise BlueprintError listing every problem."""
    model_cls = blueprint_model()
    data = source.data
    try:
        model = model_cls.model_validate(data)
    except ValidationError as exc:
        problems = _problems_from(exc, model_cls, source)
        problems += _cross_checks(source, data, skip_blocks=True)
        raise BlueprintError(sorted(problems, key=_order)) from None
    problems = _cross_checks(source, data) or _budgets(source, model)
    if problems:
        raise BlueprintError(sorted(problems, key=_order))

    letters = parse_layout(model.layout)
    stage_blocks, problems, overrides = [], [], []
    adapter = block_adapter()
    for i, letter in enumerate(letters):
        override = data["stages"][i].get("block", {}) if isinstance(data["stages"][i], dict) else {}
        overrides.append(override)
        raw = merged_block(data["blocks"][letter], override)
        try:
            stage_blocks.append(adapter.validate_python(raw))
        except ValidationError as exc:
            def remap(path, i=i, letter=letter, override=override):
                return _origin(path, override, ("stages", i, "block"), ("blocks", letter))
            problems += _problems_from(exc, block_union(), source, remap)
    if problems:
        raise BlueprintError(sorted(problems, key=_order))
    return Blueprint(model, letters, stage_blocks, source, tuple(overrides))


def _origin(path: tuple, override: Any, stage: tuple, legend: tuple) -> tuple:
    """A merged block option's path -> where it was written: the stage's override when the override
    holds it (or the deepest part of it that the override holds), else the legend entry."""
    node, depth = override, 0
    for key in path:
        if not isinstance(node, dict) or key not in node:
            break
        node, depth = node[key], depth + 1
    return (stage if depth else legend) + tuple(path)


def _order(p: Problem) -> tuple:
    return (p.line or 0, p.column or 0)


def _budgets(source: Source, model: Any) -> list[Problem]:
    """The size budgets of composer/budgets.py that the schema alone cannot see (totals)."""
    stages = model.stages
    if len(stages) > MAX_STAGES:
        return [source.problem(("layout",), f"the layout has {len(stages):,} stages, over the budget of {MAX_STAGES} "
                               "stages per blueprint", "published networks have 1 to 5 stages")]
    total = sum(s.depth for s in stages)
    if total > MAX_BLOCKS:
        worst = max(range(len(stages)), key=lambda i: stages[i].depth)
        return [source.problem(("stages", worst, "depth"), f"the network has {total:,} blocks, over the budget of "
                               f"{MAX_BLOCKS:,} blocks per blueprint; stage {worst} has {stages[worst].depth}",
                               "use fewer or shallower stages")]
    return []


def _cross_checks(source: Source, data: Any, skip_blocks: bool = False) -> list[Problem]:
    """Layout letters against the legend, and the stage count against the layout."""
    if not isinstance(data, dict):
        return []
    layout, blocks, stages = data.get("layout"), data.get("blocks"), data.get("stages")
    if not isinstance(layout, str) or not isinstance(blocks, dict):
        return []
    if not LAYOUT_RE.match(layout):  # the schema reports a malformed layout
        return []
    letters = parse_layout(layout)
    if len(letters) > MAX_STAGES:
        return [source.problem(("layout",), f"the layout has {len(letters):,} stages, over the budget of {MAX_STAGES} "
                               "stages per blueprint", "published networks have 1 to 5 stages")]
    problems = []
    for letter in dict.fromkeys(letters):
        if letter not in blocks:
            hint = suggest(letter, blocks) or f"add `{letter}: {{type: ...}}` under `blocks`"
            problems.append(source.problem(("layout",), f"layout letter `{letter}` has no entry in `blocks`", hint))
    if isinstance(stages, list) and len(stages) != len(letters):
        problems.append(source.problem(
            ("stages",), f"the layout `{_short_text(layout)}` has {len(letters)} stages but `stages` lists {len(stages)}",
            "give one entry under `stages` per letter of the layout"))
    return problems
