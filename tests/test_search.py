"""`composer search`: spaces, budgets, the Pareto front, and figures equal to `profile`'s."""

import functools
import json

import jsonschema
import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.blueprint import BlueprintError, load_text
from composer.blueprint.jsonschema import space_json_schema_text
from composer.search import Budget, find_choices, parse_budget, pareto_front, search

from .conftest import ROOT

runner = CliRunner()
SPACES = ROOT / "spaces"

SPACE = """\
name: small
input: {channels: 3, size: 32}
classes: 10
stem: {type: conv, channels: [16], stride: 2}
layout: {one_of: [C-T, C-C]}
blocks:
  C: {type: mbconv, expand: 2, kernel: {one_of: [3, 5]}, se: {one_of: [0, 0.25]}}
  T: {type: transformer, attention: {type: relative, head_dim: 16}}
stages:
  - {depth: {range: [1, 2]}, channels: 32, stride: 2}
  - {depth: 1, channels: {range: [32, 64, 16]}, stride: 2}
head: {type: pool}
"""


@functools.lru_cache(maxsize=None)
def brute_force(text):
    """Every candidate of SPACE profiled the ordinary way, keyed by its choices."""
    source = load_text(text)
    choices = find_choices(source)
    out = {}
    for c in search(source, Budget(params=1e18)).fitting:
        bp = composer.loads(json.dumps(c.data))
        out[c.index] = (composer.profile(bp), composer.train_memory(bp, batch=4))
    return choices, out


def test_space_choices_and_every_candidate_matches_profile():
    choices, every = brute_force(SPACE)
    assert [".".join(map(str, c.path)) for c in choices] == [
        "layout", "blocks.C.kernel", "blocks.C.se", "stages.0.depth", "stages.1.channels"]
    assert len(every) == 2 * 2 * 2 * 2 * 3
    result = search(load_text(SPACE), Budget(train_memory=1e18, batch=4))
    assert result.evaluated == result.size == 48 and not result.sampled and result.invalid == 0
    for c in result.fitting:
        report, memory = every[c.index]
        assert (c.params, c.macs, c.train_memory) == (report.params, report.macs, memory.total)


def test_budget_keeps_exactly_what_fits_and_the_front_is_pareto():
    _, every = brute_force(SPACE)
    macs = sorted(r.macs for r, _ in every.values())
    params = sorted(r.params for r, _ in every.values())
    budget = Budget(macs=macs[len(macs) // 2], params=params[-5])
    result = search(load_text(SPACE), budget)
    fits = {i for i, (r, _) in every.items() if r.macs <= budget.macs and r.params <= budget.params}
    assert {c.index for c in result.fitting} == fits and fits
    front = {c.index for c in result.front}
    figures = {c.index: (c.macs, c.params) for c in result.fitting}

    def dominates(a, b):
        return all(x >= y for x, y in zip(a, b)) and a != b

    for i in front:  # nothing within the budget is larger everywhere
        assert not any(dominates(figures[j], figures[i]) for j in fits)
    for i in fits - front:  # everything else is matched or exceeded by a member
        assert any(dominates(figures[j], figures[i]) or figures[j] == figures[i] for j in front)


def test_large_spaces_are_sampled_reproducibly():
    a = search(load_text(SPACE), Budget(params=1e18), limit=10, seed=3)
    b = search(load_text(SPACE), Budget(params=1e18), limit=10, seed=3)
    assert a.sampled and a.evaluated == 10 and a.size == 48
    assert [c.index for c in a.fitting] == [c.index for c in b.fitting]
    assert len({c.index for c in a.fitting}) == 10


def test_invalid_candidates_are_counted_with_an_example():
    text = SPACE.replace("head_dim: 16", "head_dim: 24")  # 32 and 64 channels are not multiples of 24
    result = search(load_text(text), Budget(params=1e18))
    assert result.invalid == 16 and len(result.fitting) == 32  # C-T with 48 channels passes
    assert "head_dim=24" in result.invalid_examples[0] and ":" in result.invalid_examples[0]


@pytest.mark.parametrize("bad, message", [
    ("{range: [5, 1]}", "is empty"),
    ("{range: [1, 2, 3, 4]}", "two or three whole numbers"),
    ("{one_of: []}", "non-empty list"),
    ("{one_of: [1, 2], range: [1, 2]}", "single key"),
])
def test_malformed_choices_are_located(bad, message):
    text = SPACE.replace("{range: [1, 2]}", bad)
    with pytest.raises(BlueprintError) as info:
        find_choices(load_text(text, "space.yaml"))
    p = info.value.problems[0]
    assert message in p.message and p.line == 10 and p.path[:2] == ("stages", 0)


def test_budget_text():
    b = parse_budget("macs=4.5G,params=30M,train_memory=24GiB@128")
    assert (b.macs, b.params, b.train_memory, b.batch) == (4.5e9, 30e6, 24 * 2**30, 128)
    for bad, message in [("macs=4.5Q", "not a number with a unit"), ("train_memory=8GiB", "after @"),
                         ("flops=1G", "unknown budget"), ("macs", "KEY=VALUE"), ("macs=1G,macs=2G", "twice")]:
        with pytest.raises(ValueError, match=message):
            parse_budget(bad)


def test_pareto_front_keeps_one_of_equal_candidates():
    from composer.search import Candidate
    a, b, c = (Candidate(i, {}, "n", p, m) for i, (p, m) in enumerate([(10, 5), (10, 5), (5, 10)]))
    assert [x.index for x in pareto_front([a, b, c])] == [2, 0]


def test_space_schema_is_current_and_accepts_the_shipped_spaces():
    assert (SPACES / "space.schema.json").read_text() == space_json_schema_text(), \
        "regenerate: composer schema --space -o spaces/space.schema.json"
    schema = json.loads(space_json_schema_text())
    for path in SPACES.glob("*.yaml"):
        assert path.read_text().startswith("# yaml-language-server: $schema=space.schema.json")
        jsonschema.validate(load_text(path.read_text()).data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(load_text(SPACE.replace("{one_of: [3, 5]}", "{one_of: [3, 5], x: 1}")).data, schema)


def test_search_command_emits_blueprints_with_the_reported_figures(tmp_path, write):
    space = write(SPACE, "space.yaml")
    r = runner.invoke(app, ["search", str(space), "--budget", "macs=1.0M,train_memory=2MB@4", "--top", "3",
                            "--emit", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert len(d["front"]) == 3 and len(d["emitted"]) == 3 and d["combinations"] == 48
    for row, path in zip(d["front"], d["emitted"]):
        report = composer.profile(path)
        memory = composer.train_memory(path, batch=4)
        assert (row["params"], row["macs"], row["train_memory"]) == (report.params, report.macs, memory.total)
        assert row["macs"] <= 1e6 and row["train_memory"] <= 2e6
    r = runner.invoke(app, ["search", str(space), "--budget", "params=200K", "--top", "2"])
    assert r.exit_code == 0 and "on the Pareto front" in r.stdout and "layout=" in r.stdout


def test_search_command_errors(write, tmp_path):
    space = write(SPACE, "space.yaml")
    r = runner.invoke(app, ["search", str(space), "--budget", "macs=lots"])
    assert r.exit_code == 1 and "--budget macs=lots" in r.output
    r = runner.invoke(app, ["search", str(write(SPACE.replace("{range: [1, 2]}", "{range: [2, 1]}"), "b.yaml")),
                            "--budget", "macs=1G"])
    assert r.exit_code == 1 and "b.yaml:10:" in r.output


def test_activation_cache_equals_the_whole_network_trace():
    from composer.memory import ActivationCache
    from .conftest import BLUEPRINTS
    cache = ActivationCache(batch=2, dtype="bf16")
    for path in sorted(BLUEPRINTS.glob("*.yaml")):
        p = composer.plan(composer.load(path, overrides={"input.size": 64, "drop_path": 0.1}))
        assert cache.activations(p) == composer.train_memory(p, batch=2, dtype="bf16").activations, path.name
    traced = len(cache.parts)
    again = composer.plan(composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"input.size": 64, "drop_path": 0.1}))
    cache.activations(again)
    assert len(cache.parts) == traced  # seen before: nothing traced again


def test_a_space_with_no_valid_candidate_is_an_error_and_nested_choices_are_refused(write):
    text = SPACE.replace("head_dim: 16", "head_dim: 7").replace("layout: {one_of: [C-T, C-C]}", "layout: C-T")
    with pytest.raises(BlueprintError) as info:
        search(load_text(text, "space.yaml"), Budget(params=1e18))
    assert "head_dim=7" in info.value.problems[0].message and info.value.problems[0].line
    r = runner.invoke(app, ["search", str(write(text, "s.yaml")), "--budget", "macs=1G"])
    assert r.exit_code == 1 and "s.yaml:" in r.output
    with pytest.raises(BlueprintError, match="cannot hold another choice"):
        find_choices(load_text(SPACE.replace("{range: [1, 2]}", "{one_of: [1, {one_of: [2, 3]}]}")))


MEMORY_SPACE = SPACE.replace("stem: {type: conv, channels: [16], stride: 2}",
                             "stem: {type: conv, channels: {one_of: [[8], [16], [24]]}, stride: {one_of: [1, 2]}}")


def test_memory_is_a_cost_no_front_member_is_beaten():
    """With a memory budget, b beats a when b has at least a's parameters and MACs and needs no more
    memory (better on one): no front member is beaten by any candidate within the budget."""
    from composer.search import dominates

    result = search(load_text(MEMORY_SPACE), Budget(train_memory=1e18, batch=4))
    fitting, front = result.fitting, result.front
    assert len(fitting) == 48 * 6 and 1 < len(front) < len(fitting)

    def beats(b, a):
        return (b.params >= a.params and b.macs >= a.macs and b.train_memory <= a.train_memory
                and (b.params, b.macs, b.train_memory) != (a.params, a.macs, a.train_memory))

    for a in front:
        assert not any(beats(b, a) for b in fitting), a.index
    members = {c.index for c in front}
    for a in fitting:  # everything off the front is beaten by a member, or equals one
        if a.index not in members:
            assert any(beats(b, a) or (b.params, b.macs, b.train_memory) == (a.params, a.macs, a.train_memory)
                       for b in front)
    assert all(dominates(b, a) == beats(b, a) for a in fitting[:20] for b in fitting[:20])


def test_more_memory_is_no_merit():
    from composer.search import Candidate
    small_hungry = Candidate(0, {}, "n", 10, 10, train_memory=100)  # smaller, cheaper, needs more memory
    big_lean = Candidate(1, {}, "n", 20, 20, train_memory=50)
    lean_small = Candidate(2, {}, "n", 5, 5, train_memory=10)  # smaller but needs less: a different trade
    assert [c.index for c in pareto_front([small_hungry, big_lean, lean_small])] == [1, 2]


def test_search_plot_shows_the_memory_axis(tmp_path, write):
    import xml.etree.ElementTree as ET

    space = write(SPACE, "space.yaml")
    out = tmp_path / "front.svg"
    r = runner.invoke(app, ["search", str(space), "--budget", "train_memory=1GiB@4", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    words = " ".join(t.text or "" for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text"))
    assert "training memory (GiB) at batch 4" in words and "parameters (M)" in words
