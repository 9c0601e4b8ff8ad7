"""validate + plan: every mistake is reported with file:line:column, key path and a hint."""

import pytest
import torch

import composer
from composer.blueprint import BlueprintError


def problems(path):
    with pytest.raises(BlueprintError) as e:
        composer.plan(composer.load(path))
    return e.value.problems


def test_valid_tiny_blueprint(write, tiny_text):
    plan = composer.plan(composer.load(write(tiny_text)))
    assert [s.output_shape for s in plan.stages] == [[16, 8, 8], [32, 4, 4]]


def test_unknown_option_is_located_with_suggestion(write, tiny_text):
    path = write(tiny_text.replace("kernel: 3", "kernal: 3"))
    [p] = problems(path)
    assert (p.line, p.column) == (7, 32)
    assert p.path == ("blocks", "C", "kernal")
    assert "unknown option `kernal`" in p.message and p.hint == "did you mean `kernel`?"
    assert str(p).startswith(f"{path}:7:32: blocks.C.kernal: ")


def test_unknown_block_type_suggests_closest(write, tiny_text):
    [p] = problems(write(tiny_text.replace("type: mbconv", "type: mbconvv")))
    assert p.path == ("blocks", "C", "type") and p.line == 7
    assert "unknown type `mbconvv`" in p.message and p.hint == "did you mean `mbconv`?"


def test_wrong_types_and_ranges_all_reported(write, tiny_text):
    text = tiny_text.replace("depth: 1,", "depth: 0,").replace("channels: 32,", "channels: many,")
    ps = problems(write(text))
    assert [(p.path, p.line) for p in ps] == [(("stages", 0, "depth"), 10), (("stages", 1, "channels"), 11)]
    assert "greater than or equal to 1" in ps[0].message
    assert "found 'many'" in ps[1].message


def test_literal_choice_suggestion(write, tiny_text):
    [p] = problems(write(tiny_text.replace("type: relative", "type: relativ")))
    assert p.path == ("blocks", "T", "attention", "type") and p.hint == "did you mean `relative`?"
    assert "expected one of `conv`, `gpsa`, `plain`, `relative`" in p.message


def test_kind_shorthand_is_located_like_its_mapping(write, tiny_text):
    """`attention: relativ` (a bare kind name) is refused at the name, as `{type: relativ}` would be."""
    [p] = problems(write(tiny_text.replace("{type: relative, head_dim: 8}", "relativ")))
    assert p.path[:3] == ("blocks", "T", "attention") and p.line == 8 and p.hint == "did you mean `relative`?"


def test_layout_letter_without_legend_and_stage_count(write, tiny_text):
    ps = problems(write(tiny_text.replace("layout: C-T", "layout: C-X-T")))
    messages = [p.message for p in ps]
    assert any("layout letter `X` has no entry in `blocks`" in m for m in messages)
    assert any("has 3 stages but `stages` lists 2" in m for m in messages)
    assert all(p.line in (5, 9) for p in ps)


def test_bad_layout_grammar(write, tiny_text):
    [p] = problems(write(tiny_text.replace("layout: C-T", "layout: C--T")))
    assert p.path == ("layout",) and "joined by `-`" in p.message


def test_stage_override_error_points_at_the_override(write, tiny_text):
    text = tiny_text.replace("{depth: 2, channels: 32, stride: 2}",
                             "{depth: 2, channels: 32, stride: 2, block: {ffn: {ration: 2}}}")
    [p] = problems(write(text))
    assert p.path == ("stages", 1, "block", "ffn", "ration") and p.line == 11
    assert p.hint == "did you mean `ratio`?"


def test_heads_mismatch_suggests_nearest_width(write, tiny_text):
    [p] = problems(write(tiny_text.replace("channels: 32, stride: 2}", "channels: 36, stride: 2}")))
    assert p.path == ("stages", 1, "channels") and p.line == 11
    assert "not divisible by head_dim=8" in p.message and "32 or 40" in p.hint


def test_conv_networks_take_any_size_and_round_up(write, tiny_text):
    """Strided convs with "same" padding and ceil-mode pooling give ceil(n / s): 30 -> 15 -> 8 -> 4."""
    plan = composer.plan(composer.load(write(tiny_text.replace("size: 32", "size: 30"))))
    assert [s.out_resolution for s in plan.stages] == [(8, 8), (4, 4)]
    net = composer.build(plan)
    assert net.forward_features(torch.randn(1, 3, 30, 30)).shape == (1, 32, 4, 4)
    assert composer.profile(plan).parts[2].output_shape == [32, 4, 4]


def test_patch_stem_needs_a_divisible_size(write):
    text = """layout: T
input: {size: 100}
stem: {type: patch, channels: 32, patch: 16}
blocks: {T: {type: transformer, attention: {heads: 2}}}
stages: [{depth: 1, channels: 32}]
"""
    [p] = problems(write(text))
    assert p.path == ("input", "size") and p.line == 2
    assert "patch size 16" in p.message and p.hint == "nearest valid sizes: 96 or 112"


def test_even_kernel_rejected_by_plan(write, tiny_text):
    [p] = problems(write(tiny_text.replace("kernel: 3", "kernel: 4")))
    assert p.path == ("blocks", "C", "kernel") and "odd" in p.message and "3 or 5" in p.hint


def test_class_token_before_conv_blocks(write, tiny_text):
    text = tiny_text.replace("layout: C-T", "layout: T-C").replace("{depth: 1, channels: 16, stride: 2}",
                                                                   "{depth: 1, channels: 16, class_token: true}")
    text = text.replace("attention: relative", "attention: plain")
    ps = problems(write(text))
    assert any(p.path == ("stages", 1, "class_token") and "cannot carry a class token" in p.message for p in ps)


def test_convnext_needs_transition_to_downsample(write):
    text = """\
layout: C-C
blocks: {C: {type: convnext}}
stem: {type: patch, channels: 16, patch: 4}
input: {size: 32}
stages:
  - {depth: 1, channels: 16}
  - {depth: 1, channels: 32, stride: 2}
"""
    ps = problems(write(text))
    assert {p.path for p in ps} == {("stages", 1, "stride"), ("stages", 1, "channels")}
    assert all("transition" in p.hint for p in ps)


def test_token_head_without_class_token(write, tiny_text):
    [p] = problems(write(tiny_text.replace("head: {type: pool", "head: {type: token")))
    assert p.path == ("head", "type") and "needs a class token" in p.message


def test_patch_transition_on_an_odd_grid(write):
    text = """\
layout: X-X
blocks: {X: {type: convnext}}
input: {size: 14}
stem: {type: conv, channels: [8], stride: 2}
stages:
  - {depth: 1, channels: 8}
  - {depth: 1, channels: 16, stride: 2, transition: {type: conv, kernel: 2}}
"""
    [p] = problems(write(text))
    assert p.path == ("stages", 1, "transition", "kernel") and p.line == 7
    assert "needs a grid divisible by 2, but receives 7x7" in p.message


def test_plan_follows_what_a_transition_does(write):
    """A kernel-2 transition at stride 1 grows the grid by one; the plan and the model agree."""
    text = """\
layout: X
blocks: {X: {type: convnext}}
input: {size: 16}
stages:
  - {depth: 1, channels: 8, transition: {type: conv, kernel: 2}}
"""
    plan = composer.plan(composer.load(write(text)))
    assert plan.stages[0].out_resolution == (17, 17)
    assert composer.build(plan).forward_features(torch.randn(1, 3, 16, 16)).shape == (1, 8, 17, 17)


def test_build_refuses_weights_larger_than_memory(write, tiny_text, monkeypatch):
    import composer.api

    monkeypatch.setattr(composer.api, "memory_room", lambda: (100_000, "free memory"))  # bytes
    bp = composer.load(write(tiny_text))
    with pytest.raises(BlueprintError) as e:
        composer.build(bp)
    [p] = e.value.problems
    assert p.path == ("stages", 1, "channels") and p.line == 11
    assert "GiB this process may use (free memory)" in p.message and "composer profile" in p.hint
    assert composer.profile(bp).params > 25_000  # profiling still works: it allocates nothing
    assert composer.build(bp, device="meta") is not None


def test_absurd_depth_is_rejected_by_validate(write, tiny_text):
    [p] = problems(write(tiny_text.replace("depth: 1,", "depth: 1000000000,")))
    assert p.path == ("stages", 0, "depth") and "less than or equal to 1000" in p.message


def test_even_stem_kernel(write, tiny_text):
    [p] = problems(write(tiny_text.replace("stem: {type: conv,", "stem: {type: conv, kernel: 4,")))
    assert p.path == ("stem", "kernel") and p.line == 4 and "must be odd (use 3 or 5)" in p.message


def test_unknown_top_level_key_suggestion(write, tiny_text):
    [p] = problems(write(tiny_text.replace("classes: 10", "clases: 10")))
    assert p.path == ("clases",) and p.line == 3 and p.hint == "did you mean `classes`?"


def test_gpsa_cannot_take_a_class_token(write):
    from .conftest import BLUEPRINTS

    text = (BLUEPRINTS / "convit_tiny.yaml").read_text().replace(
        "{depth: 10, channels: 192, pos_embed: true}", "{depth: 10, channels: 192, pos_embed: true, class_token: true}")
    ps = problems(write(text))
    gpsa = [p for p in ps if p.path[:3] == ("blocks", "G", "attention")]
    assert gpsa and "`gpsa` attention works on the token grid" in gpsa[0].message and gpsa[0].line == 11
    assert any(p.path == ("stages", 1, "class_token") and "already inserted" in p.message for p in ps)


def test_bottleneck_width_must_divide(write):
    text = """\
layout: B
blocks: {B: {type: bottleneck}}
stem: {type: conv, channels: [16]}
input: {size: 32}
stages:
  - {depth: 1, channels: 66}
"""
    ps = problems(write(text))
    assert [(p.path, p.hint) for p in ps] == [(("stages", 0, "channels"), "nearest valid widths: 64 or 68")]


def test_transition_that_leaves_no_grid(write):
    text = """\
layout: X
blocks: {X: {type: convnext}}
input: {size: 2}
stages:
  - {depth: 1, channels: 8, stride: 4, transition: {type: conv, kernel: 7, norm: after}}
"""
    [p] = problems(write(text))
    assert p.path == ("stages", 0, "transition", "kernel") and p.line == 5
    assert "leaves nothing of the 2x2 grid" in p.message and "larger input size" in p.hint
