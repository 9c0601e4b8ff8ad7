"""Hostile cases for the typed sub-configs (attention, ffn, norm, se, head conv): stage overrides and
`--set` through sub-configs, shorthands, error wording and locations, the editor schema, search spaces.

Tests marked as problems fail on the code as it stands; the others pin behaviour worth keeping."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.blocks import BLOCKS

from .conftest import BLUEPRINTS


def run(*args: str):
    return CliRunner().invoke(app, list(args))


def located(output: str, path, option: str) -> tuple[int, int] | None:
    """(line, column) of the first `path:line:col: ...option` in an error report."""
    found = re.search(rf"{re.escape(str(path))}:(\d+):(\d+): \S*{re.escape(option)}\b", output)
    return (int(found.group(1)), int(found.group(2))) if found else None


def write(tmp_path, name: str, old: str, new: str, source: str | None = None):
    text = (BLUEPRINTS / f"{source or name}.yaml").read_text()
    assert old in text, old
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


# ---------------------------------------------------------------------------------------------
# Every moved flat option, in the legend and in a stage's `block:` override, is refused at its own
# line and column with the new spelling as the hint (pins behaviour that holds today).

VALUES = {"se_from": "in", "se_at": "end", "se_act": "relu", "se_gate": "sigmoid", "pre_norm_act": "true",
          "project_bias": "false", "shortcut_bias": "false", "pool": "avg", "heads": "12", "head_dim": "64",
          "qkv_bias": "true", "scale": "head_dim", "attn_width": "in", "locality_strength": "1.0",
          "proj_kernel": "3", "kv_stride": "2", "mlp_ratio": "4", "act": "gelu", "ffn_kernel": "3",
          "ffn_se_reduction": "4", "bn_eps": "1e-5"}
FAMILIES = {"transformer": "vit_b16", "mbconv": "mobilenetv2", "bottleneck": "resnet50", "convnext": "convnext_tiny"}
MOVED = [(family, option, where) for family in FAMILIES for option in BLOCKS[family].moved_options
         for where in ("legend", "stage")]


@pytest.mark.parametrize("family,option,where", MOVED, ids=[f"{f}-{o}-{w}" for f, o, w in MOVED])
def test_every_moved_option_is_refused_at_its_token_with_the_new_spelling(tmp_path, family, option, where):
    lines = (BLUEPRINTS / f"{FAMILIES[family]}.yaml").read_text().splitlines()
    if where == "legend":
        row = next(i for i, t in enumerate(lines) if re.match(rf"\s+\w+: {{type: {family}\b", t))
        lines[row] = lines[row].rstrip()[:-1] + f", {option}: {VALUES[option]}}}"
    else:
        row = next(i for i, t in enumerate(lines) if t.strip().startswith("- {depth"))
        if "block: {" in lines[row]:
            lines[row] = lines[row].replace("block: {", f"block: {{{option}: {VALUES[option]}, ", 1)
        else:
            lines[row] = lines[row].rstrip()[:-1] + f", block: {{{option}: {VALUES[option]}}}}}"
    path = tmp_path / "moved.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run("validate", str(path))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    where_ = located(r.output, path, option)
    assert where_ and where_[0] == row + 1 and lines[row][where_[1] - 1:].startswith(option), r.output
    assert BLOCKS[family].moved_options[option] in r.output, r.output


# ---------------------------------------------------------------------------------------------
# Shapes a sub-config field must refuse, located at the field's token, no traceback.

BAD_VALUES = [
    ("vit_b16", "attention: {type: plain, heads: 12, qkv_bias: true}", "attention: 7", "attention"),
    ("vit_b16", "attention: {type: plain, heads: 12, qkv_bias: true}", "attention: null", "attention"),
    ("vit_b16", "attention: {type: plain, heads: 12, qkv_bias: true}", "attention: [plain]", "attention"),
    ("vit_b16", "attention: {type: plain, heads: 12, qkv_bias: true}", "attention: sideways", "attention"),
    ("seresnet50", "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: true", "se"),
    ("seresnet50", "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: -1", "se"),
    ("seresnet50", "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: {ratio: 0.5, reduction: 4}", "se"),
    ("seresnet50", "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: {ratio: 0.25, from: sideways}", "from"),
    ("efficientnet_b0", "conv: {channels: 1280, act: silu}", "conv: 0", "conv"),
    ("efficientnet_b0", "conv: {channels: 1280, act: silu}", "conv: {}", "conv"),
]


@pytest.mark.parametrize("name,old,new,option", BAD_VALUES, ids=[c[2] for c in BAD_VALUES])
def test_a_bad_sub_config_value_is_located_and_refused(tmp_path, name, old, new, option):
    path = write(tmp_path, name, old, new)
    r = run("validate", str(path))
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    row = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if new in t)
    where = located(r.output, path, option)
    assert where and where[0] == row, r.output


@pytest.mark.parametrize("new", ["attention: 7", "attention: null", "attention: [plain]"])
def test_a_wrong_shape_for_a_kind_field_names_the_kinds_not_pydantic(tmp_path, new):
    """PROBLEM: `attention: 7` says "input should be a valid dictionary or object to extract fields
    from": pydantic's wording, and no word that a kind name (`plain`, `gpsa`, ...) is the shorthand."""
    path = write(tmp_path, "vit_b16", "attention: {type: plain, heads: 12, qkv_bias: true}", new)
    r = run("validate", str(path))
    assert r.exit_code == 1
    assert "object to extract fields from" not in r.output, r.output
    assert "gpsa" in r.output and "relative" in r.output, r.output


def test_se_true_names_the_accepted_shapes_not_a_class():
    """PROBLEM: `se: true` says "a valid dictionary or instance of SEConfig": a Python class name."""
    text = (BLUEPRINTS / "seresnet50.yaml").read_text().replace(
        "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: true")
    with pytest.raises(composer.BlueprintError) as err:
        composer.loads(text, file="x.yaml")
    assert "SEConfig" not in str(err.value) and "ratio" in str(err.value), str(err.value)


# ---------------------------------------------------------------------------------------------
# Stage overrides merged into sub-configs.

def test_stage_override_that_only_tweaks_the_kind_keeps_the_legend():
    """Pinned: `block: {attention: {heads: 3}}` over `{type: conv, ...}` keeps conv and its options."""
    bp = composer.load(BLUEPRINTS / "cvt13.yaml")
    assert [(b.attention.type, b.attention.kv_stride, b.attention.heads) for b in bp.stage_blocks] == \
        [("conv", 2, 1), ("conv", 2, 3), ("conv", 2, 6)]


def test_stage_override_that_switches_the_kind_refuses_the_old_kinds_options(tmp_path):
    """Pinned: a stage override naming gpsa over a conv legend is a gpsa; conv's options in that same
    override are refused, naming the kind they belong to."""
    path = write(tmp_path, "cvt13", "block: {attention: {heads: 1}}",
                 "block: {attention: {type: gpsa, heads: 1, kv_stride: 2}}")
    r = run("validate", str(path))
    assert r.exit_code == 1 and "an option of attention `conv`, not `gpsa`" in r.output, r.output
    ok = composer.load(BLUEPRINTS / "cvt13.yaml", overrides={"stages.0.block.attention": "gpsa"})
    assert ok.stage_blocks[0].attention.type == "gpsa" and ok.stage_blocks[1].attention.type == "conv"


def test_a_bare_kind_name_in_a_stage_override_of_the_same_kind_keeps_the_legends_options():
    """PROBLEM: `block: {attention: plain}` over `attention: {type: plain, heads: 12, ...}` is the same
    kind (merged_block's docstring: a bare kind name counts as `{type: name}`), yet the legend's
    `heads: 12` is dropped. composer/blueprint/schema.py `_merged` returns a non-mapping override as is."""
    bp = composer.load(BLUEPRINTS / "convit_tiny.yaml", overrides={"stages.1.block": {"attention": "plain"}})
    assert bp.stage_blocks[1].attention.heads == 4


def test_a_typed_override_over_a_typeless_legend_of_the_default_kind_merges():
    """PROBLEM: legend `ffn: {ratio: 3, act: relu}` is an mlp (the default kind); a stage override
    `ffn: {type: mlp}` names the same kind, yet ratio and act fall back to 4 and gelu: `_merged`
    compares `legend.get("type")` (None) with `mlp`."""
    text = (BLUEPRINTS / "vit_b16.yaml").read_text().replace("ffn: {ratio: 4}", "ffn: {ratio: 3, act: relu}")
    text = text.replace("pos_embed: true}", "pos_embed: true, block: {ffn: {type: mlp}}}")
    ffn = composer.loads(text).stage_blocks[0].ffn
    assert (ffn.type, ffn.ratio, ffn.act) == ("mlp", 3, "relu")


def test_se_in_a_stage_override_merges_into_the_legends_se():
    """PROBLEM: SE is not merged by stage overrides: `block: {se: {gate: hardsigmoid}}` over
    `se: {ratio: 0.0625, act: relu, gate: sigmoid}` (SE-ResNet-50) silently widens SE to ratio 0.25
    (4x the parameters). `_merged` merges only fields typed `Variant(...)`; `se` is a plain sub-config."""
    bp = composer.load(BLUEPRINTS / "seresnet50.yaml", overrides={"stages.0.block": {"se": {"gate": "hardsigmoid"}}})
    se = bp.stage_blocks[0].se
    assert (se.ratio, se.act, se.gate) == (0.0625, "relu", "hardsigmoid")


def test_se_number_shorthand_in_the_legend_merges_with_a_stage_override():
    """PROBLEM: legend `se: 0.0625` then `block: {se: {gate: hardsigmoid}}`: the ratio becomes 0.25."""
    text = (BLUEPRINTS / "seresnet50.yaml").read_text().replace(
        "se: {ratio: 0.0625, act: relu, gate: sigmoid}", "se: 0.0625")
    text = text.replace("  - {depth: 3,", "  - {block: {se: {gate: hardsigmoid}}, depth: 3,", 1)
    se = composer.loads(text).stage_blocks[0].se
    assert (se.ratio, se.gate) == (0.0625, "hardsigmoid")


def test_se_off_in_a_stage_override():
    """Pinned: `block: {se: 0}` turns SE off in that stage only."""
    bp = composer.load(BLUEPRINTS / "seresnet50.yaml", overrides={"stages.0.block": {"se": 0}})
    assert bp.stage_blocks[0].se is None and bp.stage_blocks[1].se.ratio == 0.0625


def test_switching_the_kind_by_stage_or_by_set_gives_the_same_heads():
    """PROBLEM: two spellings of "make CoAtNet-0's attention gpsa" build different networks: the stage
    override `block: {attention: gpsa}` drops the legend's `head_dim: 32` (6 heads at width 384), while
    `--set blocks.T.attention.type=gpsa` keeps it (12 heads). Options every attention kind has
    (heads, head_dim, qkv_bias, scale) should survive a switch of kind, or both routes should drop them."""
    by_stage = composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"stages.2.block": {"attention": "gpsa"}})
    by_set = composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"blocks.T.attention.type": "gpsa"})
    a, b = by_stage.stage_blocks[2].attention, by_set.stage_blocks[2].attention
    assert (a.type, a.heads, a.head_dim) == (b.type, b.heads, b.head_dim)


# ---------------------------------------------------------------------------------------------
# --set through sub-configs.

def test_set_heads_over_head_dim_replaces_it_as_a_stage_override_does(tmp_path):
    """PROBLEM: `--set blocks.T.attention.heads=3` over `attention: {type: relative, head_dim: 32}`
    fails "give either `heads` or `head_dim`, not both"; the same in a stage override drops head_dim.
    composer/api.py `apply_overrides` ignores the kind's `exclusive_options`."""
    r = run("validate", str(BLUEPRINTS / "coatnet0.yaml"), "--set", "blocks.T.attention.heads=3")
    assert r.exit_code == 0, r.output
    staged = composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"stages.2.block": {"attention": {"heads": 3}}})
    assert (staged.stage_blocks[2].attention.heads, staged.stage_blocks[2].attention.head_dim) == (3, None)


def test_set_reduction_over_ratio_replaces_it():
    """PROBLEM: `--set blocks.B.se.reduction=16` on SE-ResNet-50 fails "give either `ratio` or
    `reduction`" (and blames the file's `se:` token, not the command line)."""
    r = run("validate", str(BLUEPRINTS / "seresnet50.yaml"), "--set", "blocks.B.se.reduction=16")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("name,key", [("coatnet0", "blocks.C.se.gate=hardsigmoid"),
                                      ("mobilenetv2", "blocks.M.se.ratio=0.25")])
def test_set_into_a_number_shorthand_expands_it(name, key):
    """PROBLEM: `--set blocks.C.se.gate=hardsigmoid` over `se: 0.25` fails "`blocks.C.se` is a single
    value": apply_overrides expands the string shorthand (`attention: relative`) but not SE's number."""
    r = run("validate", str(BLUEPRINTS / f"{name}.yaml"), "--set", key)
    assert r.exit_code == 0, r.output


def test_set_kind_and_option_of_another_kind_are_located_on_the_command_line():
    """Pinned: an option of another kind via --set names the kind it belongs to, on the command line."""
    r = run("validate", str(BLUEPRINTS / "coatnet0.yaml"), "--set", "blocks.T.attention.kv_stride=4")
    assert r.exit_code == 1 and "<command line>" in r.output
    assert "an option of attention `conv`, not `relative`" in r.output, r.output
    r = run("validate", str(BLUEPRINTS / "coatnet0.yaml"), "--set", "blocks.T.attention=gpsa")
    assert r.exit_code == 0, r.output


def test_a_bad_value_set_below_an_option_is_blamed_on_the_command_line():
    """PROBLEM: `--set blocks.T.attention.heads.x=3` is reported at coatnet0.yaml:11:26 (the file's
    `attention`), though the bad value came from the command line."""
    r = run("validate", str(BLUEPRINTS / "coatnet0.yaml"), "--set", "blocks.T.attention.heads.x=3")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "<command line>" in r.output, r.output


# ---------------------------------------------------------------------------------------------
# Options with no effect, and search spaces.

def test_pool_on_a_legend_shared_by_downsampling_and_plain_stages_is_accepted(tmp_path):
    """Pinned: CoAtNet-0's T legend with `pool: avg`, its third stage at stride 1: the fourth stage
    still downsamples, so `pool` has an effect and the blueprint is valid."""
    text = (BLUEPRINTS / "coatnet0.yaml").read_text()
    text = text.replace("ffn: {ratio: 4}}", "ffn: {ratio: 4}, pool: avg}")
    text = text.replace("  - {depth: 5, channels: 384, stride: 2}", "  - {depth: 5, channels: 384, stride: 1}")
    path = tmp_path / "c.yaml"
    path.write_text(text)
    r = run("validate", str(path))
    assert r.exit_code == 0, r.output


SPACE = """name: tiny-space
input: {channels: 3, size: 32}
classes: 10
stem: {type: conv, channels: [8, 8], kernel: 3, stride: 2, act: gelu, last_norm_act: false}
layout: C-T
blocks:
  C: {type: mbconv, expand: 4, kernel: 3, se: 0.25, act: gelu, stride_on: expand}
  T: {type: transformer, attention: {type: relative, head_dim: 8}, ffn: {ratio: 2}, pool: avg}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 1, channels: 32, stride: {one_of: [1, 2]}}
head: {type: pool, norm: layernorm}
"""


def test_a_search_space_candidate_is_not_invalid_for_an_option_without_effect(tmp_path):
    """PROBLEM: a space whose T legend sets `pool: avg` and whose last stage's stride is
    {one_of: [1, 2]}: the stride-1 candidate is counted invalid ("`pool` has no effect here"), so the
    space silently loses every non-downsampling network. An option that applies to only some
    candidates is the point of a space; the `unused` refusal should not judge search candidates."""
    path = tmp_path / "space.yaml"
    path.write_text(SPACE)
    r = run("search", str(path), "--budget", "macs=10G")
    assert r.exit_code == 0, r.output
    assert "1 invalid" not in r.output and "2 within" in r.output, r.output


def test_the_shipped_coatnet_space_has_no_invalid_candidates():
    r = run("search", "spaces/coatnet.yaml", "--budget", "macs=4.5G,params=30M", "--limit", "20", "--seed", "0")
    assert r.exit_code == 0 and " 0 invalid" in r.output, r.output


# ---------------------------------------------------------------------------------------------
# The editor schema.

def _validator():
    import jsonschema

    from composer.blueprint.loader import read_file

    schema = json.loads((BLUEPRINTS / "blueprint.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema), read_file


def test_the_schema_accepts_every_shipped_blueprint():
    validator, read_file = _validator()
    for path in sorted(BLUEPRINTS.rglob("*.yaml")):
        errors = list(validator.iter_errors(read_file(path).data))
        assert not errors, (path, errors[0].message[:300])


EDITOR = [
    (lambda d: d["blocks"]["T"]["attention"].update(locality_strength=50), False),
    (lambda d: d["blocks"]["T"]["attention"].update(kernel=3), False),
    (lambda d: d["blocks"]["T"].update(attention=7), False),
    (lambda d: d["blocks"]["T"].update(attention="sideways"), False),
    (lambda d: d["blocks"]["T"].update(locality_strength=1.0), False),
    (lambda d: d["blocks"]["T"]["ffn"].update(kernel=7), False),
    (lambda d: d["blocks"]["T"].update(attention="gpsa"), True),
    (lambda d: d["blocks"]["T"].update(attention={"heads": 3}), True),
    (lambda d: d["blocks"]["T"].update(ffn={"type": "conv", "se": 0.1}), True),
    (lambda d: d["blocks"].update(B={"type": "bottleneck", "se": True}), False),
    (lambda d: d["blocks"].update(B={"type": "bottleneck", "se": {"from": "sideways"}}), False),
    (lambda d: d["blocks"].update(M={"type": "mbconv", "norm": {"type": "post", "project_bias": False}}), False),
    (lambda d: d["stages"][0].update(block={"attention": {"type": "gpsa", "locality_strength": 2}}), True),
]


@pytest.mark.parametrize("change,valid", EDITOR, ids=[str(i) for i in range(len(EDITOR))])
def test_the_schema_refuses_options_of_the_wrong_kind(change, valid):
    import copy

    validator, read_file = _validator()
    data = copy.deepcopy(read_file(BLUEPRINTS / "vit_b16.yaml").data)
    change(data)
    assert (not list(validator.iter_errors(data))) == valid


@pytest.mark.parametrize("change", [
    lambda d: d.update(head={"type": "pool", "conv": 0}),
    lambda d: d["blocks"].update(B={"type": "bottleneck", "se": {"ratio": 0.5, "reduction": 4}}),
], ids=["conv-0", "se-ratio-and-reduction"])
def test_the_schema_refuses_what_composer_refuses(change):
    """PROBLEM: the editor schema accepts `head: {conv: 0}` (its number shorthand has no minimum) and
    `se: {ratio: 0.5, reduction: 4}`; composer refuses both."""
    import copy

    validator, read_file = _validator()
    data = copy.deepcopy(read_file(BLUEPRINTS / "vit_b16.yaml").data)
    change(data)
    assert list(validator.iter_errors(data))


# ---------------------------------------------------------------------------------------------
# Analytic cost of sub-config combinations no shipped blueprint uses agrees with the trace.

COMBOS = [
    ("efficientnet_b0", ["blocks.M.se={ratio: 0.25, from: out, at: before_norm}"]),
    ("localvit_tiny", ["blocks.T.ffn.se={ratio: 0.25, from: in, gate: sigmoid, act: gelu}", "stages.0.depth=2"]),
    ("cvt13", ["stages.1.block.attention=gpsa", "stages.2.depth=1"]),
    ("vit_b16", ["blocks.T.ffn={type: conv, se: 0.1}", "blocks.T.attention={type: conv, kv_stride: 2}",
                 "blocks.T.attention.heads=2",  # a switch of kind keeps the 12 heads both kinds have
                 "stages.0.depth=1", "stem.patch=8", "stem.channels=128", "stages.0.channels=128"]),
    ("seresnet50", ["blocks.B.se={ratio: 0.25, from: hidden}"] + [f"stages.{i}.depth=1" for i in range(4)]),
]


@pytest.mark.parametrize("name,sets", COMBOS, ids=[c[0] for c in COMBOS])
def test_unshipped_sub_config_combinations_profile_exactly(name, sets):
    argv = ["profile", str(BLUEPRINTS / f"{name}.yaml"), "--check", "--set", "input.size=32"]
    for s in sets:
        argv += ["--set", s]
    r = run(*argv)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    rows = r.output[r.output.index("traced vs analytic"):].splitlines()[2:]
    assert rows and all(row.rstrip().endswith("ok") for row in rows if row.strip() and "%" in row), r.output
