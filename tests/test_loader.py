"""load: safe YAML with a source map; every unreadable input is a located BlueprintError."""

import time

import pytest

from composer.blueprint import BlueprintError, load_text, read_file


def test_source_map_points_at_keys_and_list_items():
    src = load_text("name: x\nstages:\n  - {depth: 2, channels: 96}\n  - depth: 3\n    channels: 192\n")
    assert src.position(("name",)) == (1, 1)
    assert src.position(("stages", 0, "channels")) == (3, 16)
    assert src.position(("stages", 1, "channels")) == (5, 5)
    assert src.position(("stages", 1, "missing", "deeper")) == (4, 5)  # nearest existing parent


def only_problem(exc_info):
    assert len(exc_info.value.problems) == 1
    return exc_info.value.problems[0]


def test_syntax_error_has_yaml_position():
    with pytest.raises(BlueprintError) as e:
        load_text("name: x\nstages: [1, 2\nlayout: C\n", "f.yaml")
    p = only_problem(e)
    assert p.file == "f.yaml" and p.line == 3 and "syntax" in p.message


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(text):
    with pytest.raises(BlueprintError, match="empty"):
        load_text(text)


def test_top_level_must_be_mapping():
    with pytest.raises(BlueprintError, match="must be a mapping, found list"):
        load_text("- a\n- b\n")


def test_object_constructing_tags_are_refused():
    start = time.perf_counter()
    for text in ("x: !!python/object/apply:os.system ['echo hi']\n", "x: !!python/name:os.system\n", "x: !custom 1\n"):
        with pytest.raises(BlueprintError, match="tag .* is not allowed") as e:
            load_text(text)
        assert only_problem(e).line == 1
    assert time.perf_counter() - start < 1.0


def test_alias_bomb_is_refused_quickly():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    start = time.perf_counter()
    with pytest.raises(BlueprintError, match="expands to more than"):
        load_text("\n".join(lines) + "\n")
    assert time.perf_counter() - start < 1.0


def test_duplicate_keys_are_errors():
    with pytest.raises(BlueprintError, match="duplicate key `name`") as e:
        load_text("name: a\nname: b\n")
    assert only_problem(e).line == 2


def test_missing_file_directory_and_bad_bytes(tmp_path):
    with pytest.raises(BlueprintError, match="no such file"):
        read_file(tmp_path / "nope.yaml")
    with pytest.raises(BlueprintError, match="is a directory"):
        read_file(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\nlayout: \xff\xfe\n")
    with pytest.raises(BlueprintError, match="not UTF-8") as e:
        read_file(bad)
    assert only_problem(e).line == 2


def test_file_size_limit(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * 1_100_000 + "\n")
    with pytest.raises(BlueprintError, match="larger than"):
        read_file(big)


def test_exponent_floats_are_numbers():
    assert load_text("a: 1e-6\nb: -2.5E+3\nc: 1e6x\n").data == {"a": 1e-6, "b": -2500.0, "c": "1e6x"}
