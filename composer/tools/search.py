"""search: a space of blueprints -> each candidate's cost -> those within a budget -> the Pareto front.

The front holds the largest networks the budget affords: capacity (MACs, parameters) is what a budget
buys, training memory what it costs. A candidate is beaten when another has at least its MACs and
its parameters without needing more memory, and is better on one of the three; the front holds the
candidates no other beats. Each member is a different trade (more compute, more weights, less memory).

A space is a blueprint in which some values are choices, spelled as a mapping with one key:

    layout: {one_of: [C-C-T-T, C-T-T-T, C-C-C-T]}
    blocks:
      C: {type: mbconv, kernel: {one_of: [3, 5]}, se: {one_of: [0, 0.25]}}
    stages:
      - {depth: {range: [1, 3]}, channels: {range: [64, 128, 32]}, stride: 2}

`one_of` lists the values (any YAML value, mappings included); `range: [low, high]` or
`[low, high, step]` counts from low to high inclusive. Every combination is a candidate; a space
with more combinations than the limit is sampled (seeded). Each candidate is validated and
planned like a blueprint; parameters and MACs come from the blocks' analytic costs (held to the
traced count by `composer profile --check`), training memory from `memory.ActivationCache`,
which traces each distinct part once. Candidates that do not validate are counted, not fatal, unless none validates: then the first
candidate's problems are raised, located in the space.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..blueprint import BlueprintError, Problem, Source, validate
from ..blueprint.errors import KeyPath
from ..analysis.crosscheck import analytic
from ..planning.planner import plan as make_plan

CHOICE_KEYS = ("one_of", "range")
MAX_RANGE_VALUES = 10_000


@dataclass(frozen=True)
class Choice:
    path: KeyPath
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Budget:
    macs: float | None = None
    params: float | None = None
    train_memory: float | None = None  # bytes of one training step at `batch`
    batch: int | None = None

    @property
    def limits(self) -> dict[str, float]:
        return {k: v for k, v in (("macs", self.macs), ("params", self.params),
                                  ("train_memory", self.train_memory)) if v is not None}


@dataclass
class Candidate:
    index: int  # position in the enumeration of the space
    picks: dict[str, Any]  # dotted path -> chosen value
    name: str
    params: int
    macs: int
    train_memory: int | None = None
    data: dict = field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, float]:
        out = {"macs": self.macs, "params": self.params}
        if self.train_memory is not None:
            out["train_memory"] = self.train_memory
        return out

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "params": self.params, "macs": self.macs,
                "flops": 2 * self.macs, "train_memory": self.train_memory, "choices": self.picks}


@dataclass
class SearchResult:
    name: str
    size: int  # combinations in the space
    evaluated: int
    sampled: bool
    invalid: int
    invalid_examples: list[str]
    fitting: list[Candidate]
    front: list[Candidate]
    budget: Budget

    def to_dict(self, top: int | None = None) -> dict:
        return {"space": self.name, "combinations": self.size, "evaluated": self.evaluated,
                "sampled": self.sampled, "invalid": self.invalid, "invalid_examples": self.invalid_examples,
                "fitting": len(self.fitting), "budget": {**self.budget.limits, "batch": self.budget.batch},
                "front": [c.to_dict() for c in self.front[:top]]}


def dotted(path: KeyPath) -> str:
    return ".".join(str(p) for p in path)


# --- the space --------------------------------------------------------------------------------------

def find_choices(source: Source) -> list[Choice]:
    """The choices of a space in document order; BlueprintError, located, for malformed ones."""
    choices: list[Choice] = []
    problems: list[Problem] = []

    def walk(node: Any, path: KeyPath) -> None:
        if isinstance(node, dict):
            marker = [k for k in CHOICE_KEYS if k in node]
            if marker:
                if len(node) != 1:
                    problems.append(source.problem(path, f"a choice is a mapping with the single key `{marker[0]}`, "
                                                   f"found also {', '.join(f'`{k}`' for k in node if k != marker[0])}",
                                                   "write `{one_of: [a, b]}` or `{range: [low, high, step]}`"))
                    return
                values = _choice_values(source, path + (marker[0],), marker[0], node[marker[0]], problems)
                nested = [i for i, v in enumerate(values) if _holds_choice(v)]
                if nested:
                    problems.append(source.problem(path + (marker[0], nested[0]), "a choice cannot hold another choice",
                                                   "list every value in one `one_of`"))
                elif values:
                    choices.append(Choice(path, values))
                return
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + (i,))

    walk(source.data, ())
    if problems:
        raise BlueprintError(problems)
    return choices


def _holds_choice(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k in value for k in CHOICE_KEYS) or any(_holds_choice(v) for v in value.values())
    return isinstance(value, list) and any(_holds_choice(v) for v in value)


def _choice_values(source: Source, path: KeyPath, kind: str, spec: Any, problems: list[Problem]) -> tuple:
    if kind == "one_of":
        if not isinstance(spec, list) or not spec:
            problems.append(source.problem(path, "`one_of` takes a non-empty list of values", "e.g. `{one_of: [3, 5]}`"))
            return ()
        return tuple(spec)
    ok = (isinstance(spec, list) and len(spec) in (2, 3)
          and all(isinstance(v, int) and not isinstance(v, bool) for v in spec))
    if not ok:
        problems.append(source.problem(path, "`range` takes two or three whole numbers: low, high and a step",
                                       "e.g. `{range: [64, 256, 32]}`"))
        return ()
    low, high, step = (*spec, 1) if len(spec) == 2 else spec
    if step < 1 or low > high:
        problems.append(source.problem(path, f"`range: {spec}` is empty: it needs low <= high and a step of at least 1"))
        return ()
    if (high - low) // step + 1 > MAX_RANGE_VALUES:
        problems.append(source.problem(path, f"`range: {spec}` has more than {MAX_RANGE_VALUES:,} values",
                                       "use a larger step"))
        return ()
    return tuple(range(low, high + 1, step))


def _pick(data: Any, choices: list[Choice], picks: tuple[int, ...]) -> dict:
    out = copy.deepcopy(data)
    for choice, i in zip(choices, picks):
        node = out
        for part in choice.path[:-1]:
            node = node[part]
        node[choice.path[-1]] = copy.deepcopy(choice.values[i])
    return out


def _combinations(choices: list[Choice], limit: int, seed: int) -> tuple[int, bool, Iterator[tuple[int, ...]]]:
    sizes = [len(c.values) for c in choices]
    total = math.prod(sizes)
    if total <= limit:
        return total, False, itertools.product(*(range(n) for n in sizes))

    def sample() -> Iterator[tuple[int, ...]]:
        rng, seen = random.Random(seed), set()
        while len(seen) < limit:
            picks = tuple(rng.randrange(n) for n in sizes)
            if picks not in seen:
                seen.add(picks)
                yield picks

    return total, True, sample()


def _index(picks: tuple[int, ...], choices: list[Choice]) -> int:
    """The position of a combination in the full enumeration (mixed radix)."""
    index = 0
    for choice, i in zip(choices, picks):
        index = index * len(choice.values) + i
    return index


# --- budgets ----------------------------------------------------------------------------------------

_COUNT_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BYTE_UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_budget(text: str) -> Budget:
    """`macs=4.5G,params=30M,train_memory=24GiB@128` -> Budget. ValueError with the reason."""
    values: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = (s.strip() for s in item.partition("="))
        if not sep or not value:
            raise ValueError(f"`{item.strip()}` is not KEY=VALUE")
        if key not in ("macs", "params", "train_memory"):
            raise ValueError(f"unknown budget `{key}`: expected macs, params or train_memory")
        if key in values:
            raise ValueError(f"`{key}` is given twice")
        if key == "train_memory":
            amount, at, batch = value.partition("@")
            if not at or not batch.strip().isdecimal() or int(batch) < 1:
                raise ValueError(f"`train_memory={value}` needs the training batch after @, e.g. `24GiB@128`")
            values["batch"] = int(batch)
            values[key] = _amount(amount, _BYTE_UNITS, key)
        else:
            values[key] = _amount(value, _COUNT_UNITS, key)
    return Budget(**values)


def _amount(text: str, units: dict[str, float], key: str) -> float:
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in units:
        names = ", ".join(u for u in units if u) or "none"
        raise ValueError(f"`{key}={text}` is not a number with a unit ({names})")
    return float(m.group(1)) * units[m.group(2).upper()]


# --- the search -------------------------------------------------------------------------------------

def _merit(c: Candidate) -> tuple:
    """The figures, each oriented so that larger is better: MACs, parameters, and (when estimated)
    training memory negated, because memory is a cost."""
    return (c.macs, c.params) if c.train_memory is None else (c.macs, c.params, -c.train_memory)


def dominates(b: Candidate, a: Candidate) -> bool:
    """b beats a: at least a's MACs and parameters, no more training memory, better on one."""
    mb, ma = _merit(b), _merit(a)
    return all(x >= y for x, y in zip(mb, ma)) and mb != ma


def pareto_front(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats (`dominates`): the largest networks for their memory. Each is a
    different way of spending the budget; largest MACs first. Equal figures keep the first.
    """
    front: list[Candidate] = []
    seen: set[tuple] = set()
    # best first on every oriented figure: whatever beats a candidate comes before it, and if that
    # one is beaten itself, what beats it is already on the front (dominance is transitive)
    for c in sorted(candidates, key=lambda c: tuple(-v for v in _merit(c))):
        f = _merit(c)
        if f in seen:
            continue
        if any(all(a >= b for a, b in zip(_merit(o), f)) for o in front):
            continue
        seen.add(f)
        front.append(c)
    return sorted(front, key=lambda c: (-c.macs, -c.params))


def search(source: Source, budget: Budget, *, limit: int = 10_000, seed: int = 0, dtype: str = "float32",
           optimizer: str = "adamw", progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Evaluate the candidates of the space in `source` (all, or `limit` of them sampled with `seed`)."""
    choices = find_choices(source)
    size, sampled, combos = _combinations(choices, limit, seed)
    name = source.data.get("name") if isinstance(source.data.get("name"), str) else None
    cache = None
    if budget.train_memory is not None:
        from ..analysis.memory import OPTIMIZER_STATES, ActivationCache, DTYPE_ALIASES, DTYPES
        cache = ActivationCache(budget.batch, dtype)
        item = DTYPES[DTYPE_ALIASES.get(dtype, dtype)].itemsize
        per_param = item * (2 + OPTIMIZER_STATES[optimizer])  # weights, gradients, optimizer state
    total = min(size, limit)
    evaluated = invalid = 0
    first_error: BlueprintError | None = None
    examples: list[str] = []
    fitting: list[Candidate] = []
    for picks in combos:
        evaluated += 1
        if progress and evaluated % 250 == 0:
            progress(evaluated, total)
        data = _pick(source.data, choices, picks)
        try:
            # an option that applies to only some candidates (pooling where some downsample) is what a space is for
            p = make_plan(validate(Source(data, source.file, source.text, source.keys, source.values)),
                          unused_options=False)
        except BlueprintError as exc:
            invalid += 1
            first_error = first_error or exc
            if len(examples) < 3 and str(exc.problems[0]) not in examples:
                examples.append(str(exc.problems[0]))
            continue
        costs = analytic(p)
        if any(c is None for _, c in costs):
            from ..analysis.tracing import profile
            report = profile(p)
            params, macs = report.params, report.macs
        else:
            params, macs = sum(c.params for _, c in costs), sum(c.macs for _, c in costs)
        if (budget.params is not None and params > budget.params) or (budget.macs is not None and macs > budget.macs):
            continue
        memory = None
        if cache is not None:
            memory = params * per_param + cache.activations(p)
            if memory > budget.train_memory:
                continue
        picked = {dotted(c.path): c.values[i] for c, i in zip(choices, picks)}
        fitting.append(Candidate(_index(picks, choices), picked, p.name, params, macs, memory, data))
    if progress:
        progress(evaluated, total)
    if first_error is not None and invalid == evaluated:
        raise first_error  # not one candidate is a valid blueprint: the space itself is wrong
    return SearchResult(name or "space", size, evaluated, sampled, invalid, examples, fitting,
                        pareto_front(fitting), budget)


def plot(result: SearchResult, path) -> None:
    """MACs against parameters: every candidate within the budget, the Pareto front highlighted,
    budget limits dashed; written atomically (.png or .svg)."""
    from pathlib import Path

    from .draw import _require_matplotlib, picture_text
    from ..io.files import atomic_write

    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"cannot plot to `{target.name}`: the file must end in .png or .svg")
    plt = _require_matplotlib()
    memory = result.budget.train_memory is not None
    fitting, front = result.fitting, result.front
    with plt.rc_context({"svg.fonttype": "none", "font.size": 9}):
        # with training memory, a second panel puts memory (the cost) against parameters
        fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(13, 5.5) if memory else (7.5, 5.5), squeeze=False)
        ax = axes[0][0]
        ax.scatter([c.macs / 1e9 for c in fitting], [c.params / 1e6 for c in fitting], s=10,
                   color="#9ab6d6", label=f"within budget ({len(fitting):,})")
        # with training memory the front has three figures, so in this plane it is no staircase: markers only
        ax.scatter([c.macs / 1e9 for c in front], [c.params / 1e6 for c in front], s=28,
                   color="#c03020", edgecolors="#601010", label=f"Pareto front ({len(front)})")
        if result.budget.macs is not None:
            ax.axvline(result.budget.macs / 1e9, linestyle="--", color="#555555", linewidth=1)
        if result.budget.params is not None:
            ax.axhline(result.budget.params / 1e6, linestyle="--", color="#555555", linewidth=1)
        ax.set_xlabel("GMACs per image")
        ax.set_ylabel("parameters (M)")
        ax.set_title(f"{picture_text(result.name)}: {result.evaluated:,} candidates evaluated"
                     + (" (sampled)" if result.sampled else ""))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", framealpha=0.9)
        if memory:
            right = axes[0][1]
            right.scatter([c.train_memory / 2**30 for c in fitting], [c.params / 1e6 for c in fitting], s=10,
                          color="#9ab6d6", label="within budget")
            right.scatter([c.train_memory / 2**30 for c in front], [c.params / 1e6 for c in front], s=28,
                          color="#c03020", edgecolors="#601010", label="Pareto front (less memory is better)")
            right.axvline(result.budget.train_memory / 2**30, linestyle="--", color="#555555", linewidth=1)
            right.set_xlabel(f"training memory (GiB) at batch {result.budget.batch}")
            right.set_ylabel("parameters (M)")
            right.set_title("memory is a cost: the front is up and to the left")
            right.grid(True, alpha=0.3)
            right.legend(loc="best", framealpha=0.9)
        try:
            with atomic_write(target, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=150 if fmt == "png" else None, bbox_inches="tight")
        finally:
            plt.close(fig)
