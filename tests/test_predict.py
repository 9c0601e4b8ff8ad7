"""From a run to a submission: class order, the splits a run records, eval --split, predict's
files (labels, indices, probabilities, ensembles, test-time views, id columns), grayscale and
non-square networks end to end. One-epoch runs of a tiny network; the tests check what is written,
not accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cli.app import app
from composer.train.data import class_order, scan_folder
from composer.train.evaluation import safe_cell, write_predictions

from .synthetic import TINY_NET, make_folder, quick_train_args

runner = CliRunner()
NUMBERS = [str(i) for i in range(12)]


def _ok(r) -> None:
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture(scope="module")
def numeric_run(tmp_path_factory) -> dict[str, Path]:
    """A one-epoch run on class folders `0` .. `11`, then its head biased to class `10`."""
    root = tmp_path_factory.mktemp("numeric")
    data = make_folder(root / "data", {"train": 3}, classes=NUMBERS)
    bp = root / "bp.yaml"
    bp.write_text(TINY_NET)
    out = root / "run"
    _ok(runner.invoke(app, quick_train_args(bp, data, out, "--set", "classes=12")))
    biased = root / "biased.pt"
    payload = torch.load(out / "best.pt", weights_only=True)
    payload["state_dict"]["head.fc.bias"][10] += 1000.0  # every image is class `10` now
    torch.save(payload, biased)
    return {"root": root, "data": data, "bp": bp, "run": out, "biased": biased}


def test_integer_class_names_sort_by_value_others_as_strings(tmp_path):
    assert class_order(["10", "2", "0", "1"]) == ["0", "1", "2", "10"]
    assert class_order(["b10", "b2", "a"]) == ["a", "b10", "b2"]
    assert class_order(["-1", "3", "07"]) == ["-1", "3", "07"]
    data = make_folder(tmp_path / "d", {"train": 1}, classes=NUMBERS)
    assert scan_folder(data / "train").classes == NUMBERS


def test_numeric_folders_give_the_folder_number_with_and_without_indices(numeric_run, tmp_path):
    payload = torch.load(numeric_run["run"] / "best.pt", weights_only=True)
    assert payload["classes"] == NUMBERS  # index 10 is the folder `10`
    images = numeric_run["data"] / "train" / "3"
    for extra in ([], ["--indices"]):
        target = tmp_path / f"s{len(extra)}.csv"
        _ok(runner.invoke(app, ["predict", str(numeric_run["biased"]), str(images), "--csv", str(target), *extra]))
        rows = _rows(target)
        assert rows[0] == ["path", "label"] and len(rows) == 4
        assert {label for _, label in rows[1:]} == {"10"}


def test_indices_of_integer_classes_are_their_numbers_else_positions(tmp_path):
    probs = torch.tensor([[0.1, 0.9, 0.0], [0.0, 0.2, 0.8]])
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for classes, expected in ((["1", "5", "12"], ["5", "12"]), (["cat", "dog", "eel"], ["1", "2"])):
        target = tmp_path / "s.csv"
        write_predictions(target, tmp_path, paths, probs, classes, indices=True)
        assert [r[1] for r in _rows(target)[1:]] == expected


def test_runs_record_their_splits_and_eval_scores_exactly_them(numeric_run):
    run = numeric_run["run"]
    val, train = _rows(run / "val.csv"), _rows(run / "train.csv")
    assert val[0] == train[0] == ["path", "label"]
    assert len(val) - 1 == 12 and len(train) - 1 == 24  # one of three images per class held out
    assert not {r[0] for r in val[1:]} & {r[0] for r in train[1:]}
    assert all(Path(p).parent.name == label for p, label in val[1:])
    for split, n in (("val", 12), ("train", 24)):
        r = runner.invoke(app, ["eval", str(run / "best.pt"), "--split", split, "--json"])
        _ok(r)
        d = json.loads(r.stdout)
        assert d["images"] == n
    best = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    d = json.loads(runner.invoke(app, ["eval", str(run / "best.pt"), "--split", "val", "--json"]).stdout)
    assert d["top1"] == pytest.approx(best["val_top1"], abs=1e-9)
    r = runner.invoke(app, ["eval", str(run / "best.pt"), "--split", "val"])
    assert "cross-entropy" in r.output and "without label smoothing" in r.output


def test_eval_needs_data_or_a_split(numeric_run, tmp_path):
    best = str(numeric_run["run"] / "best.pt")
    for extra, needle in (([], "give the images with `--data DIR`"), (["--split", "test"], "expected `val` or `train`"),
                          (["--split", "val", "--data", str(tmp_path)], "one of them")):
        r = runner.invoke(app, ["eval", best, *extra])
        assert r.exit_code == 1 and needle in r.output, r.output
    lone = tmp_path / "lone.pt"
    lone.write_bytes((numeric_run["run"] / "best.pt").read_bytes())
    r = runner.invoke(app, ["eval", str(lone), "--split", "val"])
    assert r.exit_code == 1 and "no record of the `val` split beside the checkpoint" in r.output, r.output


def test_probabilities_ensembles_and_test_time_views(numeric_run, tmp_path):
    best, images = numeric_run["run"] / "best.pt", numeric_run["data"] / "train" / "4"
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    _ok(runner.invoke(app, ["predict", str(best), str(images), "--probs", str(one)]))
    _ok(runner.invoke(app, ["predict", str(best), str(best), str(images), "--probs", str(two)]))
    a, b = _rows(one), _rows(two)
    assert a[0] == ["path", *NUMBERS] and len(a) == 4
    for row_a, row_b in zip(a[1:], b[1:]):
        pa, pb = [float(v) for v in row_a[1:]], [float(v) for v in row_b[1:]]
        assert sum(pa) == pytest.approx(1, abs=1e-4)
        assert pa == pytest.approx(pb, abs=1e-6)  # an ensemble of one model twice is that model
    # flip and three zooms: different numbers, still distributions
    views = tmp_path / "views.csv"
    _ok(runner.invoke(app, ["predict", str(best), str(images), "--probs", str(views), "--tta", "--tta-scales", "0.875,1,1.125"]))
    v = [[float(x) for x in row[1:]] for row in _rows(views)[1:]]
    assert all(sum(p) == pytest.approx(1, abs=1e-4) for p in v)
    assert v != [[float(x) for x in row[1:]] for row in a[1:]]
    # the ensemble of the biased model and the plain one predicts `10`
    mixed = tmp_path / "mixed.csv"
    _ok(runner.invoke(app, ["predict", str(best), str(numeric_run["biased"]), str(images), "--csv", str(mixed)]))
    assert {r[1] for r in _rows(mixed)[1:]} == {"10"}


def test_an_ensemble_of_different_classes_is_refused(numeric_run, tmp_path):
    other = tmp_path / "other.pt"
    payload = torch.load(numeric_run["run"] / "best.pt", weights_only=True)
    payload["classes"] = [f"c{i}" for i in range(12)]
    torch.save(payload, other)
    r = runner.invoke(app, ["predict", str(numeric_run["run"] / "best.pt"), str(other), str(numeric_run["data"]),
                            "--csv", str(tmp_path / "s.csv")])
    assert r.exit_code == 1, r.output
    assert "problem with the models" in r.output and "differ from those of" in r.output
    assert not (tmp_path / "s.csv").exists()


def test_kaggle_style_columns_and_ids(numeric_run, tmp_path):
    target = tmp_path / "submission.csv"
    _ok(runner.invoke(app, ["predict", str(numeric_run["biased"]), str(numeric_run["data"] / "train" / "5"), "--csv",
                            str(target), "--id-column", "id", "--label-column", "digit", "--drop-extension"]))
    assert _rows(target) == [["id", "digit"], ["0", "10"], ["1", "10"], ["2", "10"]]
    clash = tmp_path / "clash"
    clash.mkdir()
    for name in ("a.png", "a.jpg"):
        (clash / name).write_bytes((numeric_run["data"] / "train" / "5" / "0.png").read_bytes())
    r = runner.invoke(app, ["predict", str(numeric_run["biased"]), str(clash), "--csv", str(target), "--drop-extension"])
    assert r.exit_code == 1 and "two images have the id `a`" in r.output, r.output


def test_predict_option_mistakes(numeric_run, tmp_path):
    best, images = str(numeric_run["run"] / "best.pt"), str(numeric_run["data"])
    s = str(tmp_path / "s.csv")
    for args, needle in (([best, images], "nothing to write"),
                         ([images, "--csv", s], "give one or more checkpoints"),
                         ([best, images, "--csv", s, "--probs", s], "name the same file"),
                         ([best, images, "--csv", s, "--tta-scales", "1,nan"], "not a number from 0.25 to 4"),
                         ([best, images, "--csv", s, "--tta-scales", ",".join(["1"] * 9)], "over the limit of 8"),
                         ([best, images, "--csv", s, "--id-column", "x", "--label-column", "x"], "are both `x`")):
        r = runner.invoke(app, ["predict", *args])
        assert r.exit_code == 1 and needle in r.output, (args, r.output)
        assert "internal error" not in r.output


def test_formula_prefixes_are_neutralised():
    assert [safe_cell(c) for c in ("=1+1", "+x", "-x", "@SUM(A1)", "\tx", "\rx", "-1", "+2.5e3", "cat", "a=b")] == \
        ["'=1+1", "'+x", "'-x", "'@SUM(A1)", "'\tx", "'\rx", "-1", "+2.5e3", "cat", "a=b"]
    assert safe_cell("caf\udce9") == "caf\\xe9"  # the byte of a Latin-1 file name, visible and valid UTF-8


@pytest.mark.parametrize("inputs", ["{channels: 3, size: [32, 48]}", "{channels: 1, size: [48, 32]}"])
def test_grayscale_and_non_square_networks_train_eval_and_predict(inputs, tmp_path):
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2})
    bp = tmp_path / "bp.yaml"
    bp.write_text(TINY_NET.replace("{channels: 3, size: 32}", inputs))
    out = tmp_path / "run"
    _ok(runner.invoke(app, quick_train_args(bp, data, out)))
    r = runner.invoke(app, ["eval", str(out / "best.pt"), "--data", str(data), "--json"])
    _ok(r)
    assert json.loads(r.stdout)["images"] == 6
    target = tmp_path / "s.csv"
    _ok(runner.invoke(app, ["predict", str(out / "best.pt"), str(data / "val"), "--csv", str(target), "--tta",
                            "--tta-scales", "1,1.25"]))
    assert len(_rows(target)) == 7


def test_predict_and_eval_never_write_over_their_own_inputs(numeric_run, tmp_path):
    """The output rule of every writer holds for predict and eval: a checkpoint or an image they
    read is never replaced, and the refusal comes before any work."""
    best = numeric_run["run"] / "best.pt"
    image = next(p for p in (numeric_run["data"] / "train").rglob("*") if p.is_file())
    before = {p: p.read_bytes() for p in (best, image)}
    for args in (["predict", str(best), str(numeric_run["data"]), "--csv", str(best)],
                 ["predict", str(best), str(image), "--probs", str(image)],
                 ["eval", str(best), "--data", str(numeric_run["data"]), "--confusion", str(best)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "internal error" not in r.output, (args, r.output)
        assert "reads" in r.output or "input" in r.output, r.output
    assert {p: p.read_bytes() for p in before} == before


def test_an_output_onto_an_image_found_in_a_folder_is_refused(numeric_run, tmp_path):
    """Images found by walking a folder (predict's IMAGES, eval's --data) are inputs too: an output
    named as one of them, in any spelling, is refused and the image kept."""
    best = numeric_run["run"] / "best.pt"
    data = numeric_run["data"]
    image = sorted((data / "train" / "3").iterdir())[0]
    other_spelling = data / "train" / ".." / "train" / "3" / image.name
    before = image.read_bytes()
    for args in (["predict", str(best), str(data), "--csv", str(image)],
                 ["predict", str(best), str(data / "train"), "--probs", str(other_spelling)],
                 ["eval", str(best), "--data", str(data / "train"), "--confusion", str(image)]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "internal error" not in r.output, (args, r.output)
        assert "it is an input of this command" in r.output and "Traceback" not in r.output, r.output
    assert image.read_bytes() == before
    # the same folder with an output beside the images is fine
    r = runner.invoke(app, ["predict", str(best), str(data / "train"), "--csv", str(tmp_path / "sub.csv")])
    _ok(r)


BAD_DEVICES = ["tpu", "gpu", "meta", "xla", "cuda:-1", "cuda:99", "cpu,cuda", "c\x01u", "x" * 10_000] + \
    ([] if torch.cuda.is_available() else ["cuda", "cuda:1"]) + \
    ([] if torch.backends.mps.is_available() else ["mps"])


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_device_strings_are_checked_before_work(numeric_run, tmp_path, command):
    """Any device string a machine cannot run on is one located line and exit 1, before any image
    is decoded: names torch does not know, devices composer does not run on, missing GPUs."""
    best = numeric_run["run"] / "best.pt"
    data = numeric_run["data"] / "train"
    for device in BAD_DEVICES:
        args = (["eval", str(best), "--data", str(data)] if command == "eval"
                else ["predict", str(best), str(data), "--csv", str(tmp_path / "p.csv")]) + ["--device", device]
        r = runner.invoke(app, args)
        assert r.exit_code == 1, (device[:20], r.output)
        assert "internal error" not in r.output and "Traceback" not in r.output, r.output
        assert "problem with the device" in r.output and "<command line>: `--device " in r.output, r.output
        assert "evaluating" not in r.output and "predicting" not in r.output, r.output  # refused before work
        assert len(r.output) < 400 and "\x01" not in r.output
    assert not (tmp_path / "p.csv").exists()
    _ok(runner.invoke(app, ["predict", str(best), str(data), "--csv", str(tmp_path / "p.csv"), "--device", "cpu:0"]))


@pytest.mark.parametrize("change, expected", [
    (lambda p: p.__setitem__("classes", p["classes"][:5]), "names 5 classes but its head has 12 outputs"),
    (lambda p: p.__setitem__("classes", ["same"] * 12), "names the class `same` twice"),
    (lambda p: p["recipe"]["augment"].__setitem__("std", [0.0, 0.0, 0.0]), "std.0"),
])
def test_a_checkpoint_that_contradicts_itself_is_refused_by_eval_predict_and_export(numeric_run, tmp_path, change,
                                                                                     expected):
    """Class names that do not fit the head or repeat, and a normalisation that divides by zero, are
    refused by every reader of a checkpoint, naming the file: never a submission or an ONNX file
    whose metadata lies."""
    payload = torch.load(numeric_run["run"] / "best.pt", weights_only=True)
    change(payload)
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    images = numeric_run["data"] / "train" / "3"
    for args in (["eval", str(bad), "--data", str(numeric_run["data"] / "train")],
                 ["predict", str(bad), str(images), "--csv", str(tmp_path / "s.csv")],
                 ["export", str(bad), "-o", str(tmp_path / "m.onnx")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "internal error" not in r.output and "Traceback" not in r.output, (args, r.output)
        assert f"{bad}: " in r.output and expected in r.output, (args[0], r.output)
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "m.onnx").exists()


def test_the_input_budget_names_the_batch_given_and_the_views(numeric_run, tmp_path):
    """Test-time views multiply the batch: the refusal names the `--batch` the user typed, the views,
    and a batch that fits with those views (which then runs)."""
    best = str(numeric_run["run"] / "best.pt")
    images = str(numeric_run["data"] / "train" / "3")
    r = runner.invoke(app, ["predict", best, images, "--csv", str(tmp_path / "s.csv"), "--batch", "4096", "--tta",
                            "--tta-scales", "1,1,1,1,1,1,1,1"])
    assert r.exit_code == 1 and "internal error" not in r.output, r.output
    assert "problem with the options" in r.output and "`--batch 4096` x 16 views of each image" in r.output, r.output
    suggested = int(r.output.split("use `--batch ")[1].split("`")[0])
    assert suggested * 16 * 3 * 32 * 32 <= 67_108_864
    _ok(runner.invoke(app, ["predict", best, images, "--csv", str(tmp_path / "s.csv"), "--batch", str(suggested), "--tta",
                            "--tta-scales", "1,1,1,1,1,1,1,1"]))


@pytest.mark.parametrize("change, expected", [
    (lambda p: p.__setitem__("blueprint", "name: [unclosed"), "bad.pt (blueprint "),
    (lambda p: p["recipe"].__setitem__("augment", {"mean": "x"}), "bad.pt: the checkpoint's recipe has a preprocessing"),
])
def test_a_checkpoint_with_a_broken_blueprint_or_recipe_is_located_in_the_checkpoint(numeric_run, tmp_path, change,
                                                                                      expected):
    payload = torch.load(numeric_run["run"] / "best.pt", weights_only=True)
    change(payload)
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    for args in (["eval", str(bad), "--data", str(numeric_run["data"] / "train")],
                 ["predict", str(bad), str(numeric_run["data"] / "train" / "3"), "--csv", str(tmp_path / "s.csv")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "internal error" not in r.output and "Traceback" not in r.output, (args, r.output)
        assert expected in r.output, r.output


@pytest.mark.parametrize("env, expected", [
    ({"WORLD_SIZE": "4", "RANK": "1"}, "WORLD_SIZE=4 is set but this process was not started by torchrun"),
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc' is not a process number"),
    ({"RANK": "5"}, "RANK=5 / LOCAL_RANK=0 do not fit WORLD_SIZE=1"),
])
def test_stray_torchrun_variables_are_one_line_in_eval_and_predict(numeric_run, tmp_path, monkeypatch, env, expected):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    best = str(numeric_run["run"] / "best.pt")
    for args in (["eval", best, "--data", str(numeric_run["data"] / "train")],
                 ["predict", best, str(numeric_run["data"] / "train" / "3"), "--csv", str(tmp_path / "s.csv")]):
        r = runner.invoke(app, args)
        assert r.exit_code == 1 and "internal error" not in r.output, r.output
        assert "problem with the environment" in r.output and f"<environment>: {expected}" in r.output, r.output
