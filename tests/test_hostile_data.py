"""Hostile and careless data for train, eval and predict: CSVs past Python's limits, images past the
size budgets, names of any encoding and names that are spreadsheet formulas, more classes than a
confusion matrix can hold, batches past the input budget. Each ends in a located error and exit 1,
or is handled right with exit 0; nothing is written half."""

from __future__ import annotations

import csv
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from cli.app import app
import composer.train.data as data_module
import composer.train.evaluation  # noqa: F401  (the package exports a function of the same name)

from .conftest import ROOT
from .synthetic import TINY_NET, make_folder, quick_train_args
from .test_hostile import _check_refusal

runner = CliRunner()
evaluate_module = sys.modules["composer.train.evaluation"]
# class names a spreadsheet would run as formulas, and a file name that is not UTF-8 (Latin-1 `café`)
HOSTILE_CLASSES = ("=HYPERLINK(\"x\")", "@SUM(A1)", os.fsdecode(b"caf\xe9"))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height and holds no pixel data (a bomb needs no more to be opened)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    data = make_folder(root / "data", {"train": 4}, classes=HOSTILE_CLASSES)
    bp = root / "bp.yaml"
    bp.write_text(TINY_NET)
    out = root / "run"
    r = runner.invoke(app, quick_train_args(bp, data, out))
    assert r.exit_code == 0, r.output
    return {"root": root, "data": data, "bp": bp, "run": out}


def _train(tmp_path: Path, data: Path, *extra: str):
    bp = tmp_path / "bp.yaml"
    bp.write_text(TINY_NET)
    return runner.invoke(app, quick_train_args(bp, data, tmp_path / "out", *extra))


# --- CSVs -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, expected", [
    ("path,label\ntrain/circle/0.png," + "x" * 200_000 + "\n", "labels.csv:2:1: not a readable CSV: a field is over the limit of 4,096"),
    ("path,label\ntrain/circle/0.png,\"" + "x" * 200_000 + "\n", "labels.csv:2:1: not a readable CSV: a field is over the limit"),
    ("path,label\ntrain/circle/0.png,circle\x00\n", "labels.csv:2:1: a NUL character: not a text CSV"),
    ("path,label\ntrain/circle/0.png,circle\n".encode("utf-16"), "labels.csv:1:1: a NUL character"),
    ("a,b,c\ntrain/circle/0.png,circle,x\n", "labels.csv:1:1: cannot tell which of the columns"),
    ("path,label\n", "the CSV has a header but no rows"),
    ("\n\n", "the CSV has no rows"),
    ("path,label\n" + "x" * 5000 + ".png,circle\n", "labels.csv:2:1: field 1 is 5,004 characters long, over the limit of 4,096"),
])
def test_hostile_csvs_are_refused_with_their_line(tmp_path, body, expected):
    data = make_folder(tmp_path / "d", {"train": 2})
    labels = data / "labels.csv"
    labels.write_bytes(body if isinstance(body, bytes) else body.encode())
    _check_refusal(_train(tmp_path, labels), expected, False)


def test_a_csv_over_the_row_budget_is_refused_before_any_image_is_read(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_IMAGES", 5)
    data = make_folder(tmp_path / "d", {"train": 2})
    labels = data / "labels.csv"
    labels.write_text("path,label\n" + "train/circle/0.png,circle\n" * 10)
    _check_refusal(_train(tmp_path, labels), "more than 5 rows", False)


def test_more_class_folders_than_the_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(data_module, "MAX_CLASSES", 2)
    data = make_folder(tmp_path / "d", {"train": 1})
    _check_refusal(_train(tmp_path, data), "more than 2 class folders", False)


def test_csv_utf8_with_bom_and_latin1_file_names_are_accepted(tmp_path):
    data = make_folder(tmp_path / "d", {"train": 1})
    odd = os.fsdecode(b"train/circle/caf\xe9.png")
    os.rename(data / "train" / "circle" / "0.png", data / odd)
    labels = data / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbfpath,label\r\ntrain/circle/caf\xe9.png,circle\r\ntrain/square/0.png,square\r\n")
    s = data_module.scan_csv(labels)
    assert [p.name for p in s.paths] == [os.fsdecode(b"caf\xe9.png"), "0.png"] and s.classes == ["circle", "square"]


# --- images ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, expected", [
    ("bomb.png", _png_header(20_000, 20_000), "decompression bomb"),
    ("wide.png", _png_header(300_000, 1), "a side is over the limit of 65,535"),
    ("tall.png", _png_header(1, 30_000), "the aspect ratio is over 100:1"),
    ("empty.png", b"", "unreadable image"),
    ("text.jpg", b"hello", "unreadable image"),
])
def test_oversized_and_broken_images_are_refused_by_name(tmp_path, name, content, expected):
    data = make_folder(tmp_path / "d", {"train": 4})
    (data / "train" / "circle" / name).write_bytes(content)
    r = _train(tmp_path, data)
    _check_refusal(r, f"circle/{name}: unreadable image", False)
    assert expected in r.output


def test_a_1_by_300000_png_is_refused_in_bounded_memory(tmp_path):
    """A real strip image (not just a header) among the training images, as its own process under a
    1 GB address-space limit beyond what the interpreter and torch take."""
    data = make_folder(tmp_path / "d", {"train": 4})
    Image.new("RGB", (300_000, 1), (200, 10, 10)).save(data / "train" / "circle" / "strip.png")
    bp = tmp_path / "bp.yaml"
    bp.write_text(TINY_NET)
    limit = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (4 << 30, resource.RLIM_INFINITY));"
             "from cli.app import main; sys.argv = ['composer'] + sys.argv[1:]; main()")
    r = subprocess.run([sys.executable, "-c", limit, *quick_train_args(bp, data, tmp_path / "out")], capture_output=True,
                       cwd=ROOT, timeout=60)
    output = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in output and "internal error" not in output, output
    assert "strip.png: unreadable image (too large: 300000x1 pixels" in output


def test_a_folder_linking_to_itself_does_not_hang_predict(hostile_run, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(next((hostile_run["data"] / "train").rglob("*.png")).read_bytes())
    (images / "loop").symlink_to(images, target_is_directory=True)
    target = tmp_path / "s.csv"
    r = runner.invoke(app, ["predict", str(hostile_run["run"] / "best.pt"), str(images), "--csv", str(target)])
    assert r.exit_code == 0, r.output
    assert len(target.read_text().splitlines()) == 2


# --- names: formulas and encodings ---------------------------------------------------------------------

def test_class_names_are_written_spreadsheet_safe_and_any_encoding_shown(hostile_run, tmp_path):
    run, data = hostile_run["run"], hostile_run["data"]
    target, probs = tmp_path / "s.csv", tmp_path / "p.csv"
    r = runner.invoke(app, ["predict", str(run / "best.pt"), str(data / "train"), "--csv", str(target), "--probs", str(probs)])
    assert r.exit_code == 0, r.output
    text = target.read_bytes().decode("utf-8")  # valid UTF-8 whatever the names
    rows = list(csv.reader(text.splitlines()))
    safe = {"'=HYPERLINK(\"x\")", "'@SUM(A1)", "caf\\xe9"}
    assert {label for _, label in rows[1:]} <= safe
    assert {path.split("/")[0] for path, _ in rows[1:]} == safe  # the ids start with the class folders
    header = next(csv.reader(probs.read_bytes().decode("utf-8").splitlines()))
    assert set(header[1:]) == safe
    for cell in [c for row in rows for c in row] + header:
        assert not cell.startswith(("=", "+", "@", "\t", "\r")) and "\udce9" not in cell
    # eval shows the names escaped, and --split val reads back the recorded non-UTF-8 file names
    r = runner.invoke(app, ["eval", str(run / "best.pt"), "--split", "val"])
    assert r.exit_code == 0, r.output
    assert "caf\\udce9" in r.output and "\udce9" not in r.output
    r = runner.invoke(app, ["eval", str(run / "best.pt"), "--split", "val", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["images"] == 3, r.output  # one of four per class held out


# --- budgets of eval and predict ---------------------------------------------------------------------------

def test_a_confusion_matrix_over_the_class_limit_is_not_drawn_and_says_so(hostile_run, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_module, "MAX_CONFUSION", 2)
    picture = tmp_path / "cm.png"
    r = runner.invoke(app, ["eval", str(hostile_run["run"] / "best.pt"), "--data", str(hostile_run["data"] / "train"),
                            "--confusion", str(picture)])
    assert r.exit_code == 0, r.output
    assert "no confusion matrix for 3 classes (the limit is 2)" in r.output and "per-class table" in r.output
    assert not picture.exists()
    assert "accuracy" in r.output  # the per-class table


def test_batches_past_the_input_budget_are_refused_before_a_weight_exists(hostile_run, tmp_path, monkeypatch):
    monkeypatch.setattr(evaluate_module, "MAX_INPUT_ELEMENTS", 3 * 32 * 32 * 10)
    best = str(hostile_run["run"] / "best.pt")
    r = runner.invoke(app, ["eval", best, "--data", str(hostile_run["data"]), "--batch", "64"])
    _check_refusal(r, "`--batch 64` of 3x32x32 images is 196,608 values, over the limit", False)
    assert "use `--batch 10` or less" in r.output
    r = runner.invoke(app, ["predict", best, str(hostile_run["data"]), "--csv", str(tmp_path / "s.csv"), "--batch", "8",
                            "--tta"])
    _check_refusal(r, "`--batch 8` x 2 views of each image", False)  # the flipped views count
    assert not (tmp_path / "s.csv").exists()
    r = runner.invoke(app, ["predict", best, str(hostile_run["data"]), "--csv", str(tmp_path / "s.csv"), "--batch",
                            str(10 ** 12)])
    assert r.exit_code == 2 and "--batch" in r.output  # a usage error; `composer` exits 1 for it


def test_predict_refuses_images_it_cannot_read_by_name(hostile_run, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "fake.png").write_text("not a picture")
    (images / "bomb.png").write_bytes(_png_header(20_000, 20_000))
    target = tmp_path / "s.csv"
    r = runner.invoke(app, ["predict", str(hostile_run["run"] / "best.pt"), str(images), "--csv", str(target)])
    _check_refusal(r, "fake.png: unreadable image", False)
    assert "bomb.png: unreadable image (too large" in r.output
    # the way out is one predict has (it takes no `--set`), not training's
    assert "remove them or move them aside" in r.output and "--set" not in r.output
    assert not target.exists()


def test_a_decoding_worker_that_fails_is_one_line(hostile_run, tmp_path):
    """Workers pass decoded images through shared memory; when it is full or limited (here a 1 KB
    file-size limit, as a full /dev/shm behaves) the worker's own reason is one line with exit 1,
    with the way out; no output is written."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024));"
            "from cli.app import main; sys.argv = ['composer'] + sys.argv[1:]; main()")
    target = tmp_path / "s.csv"
    r = subprocess.run([sys.executable, "-c", code, "predict", str(hostile_run["run"] / "best.pt"),
                        str(hostile_run["data"]), "--csv", str(target), "--workers", "1"],
                       capture_output=True, cwd=ROOT, timeout=120)
    output = r.stdout.decode() + r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in output and "internal error" not in output, output
    assert "error: a decoding worker failed: " in output and "`--workers 0`" in output, output
    assert len([line for line in output.splitlines() if line.startswith("error")]) == 1
    assert not target.exists()


def test_images_that_are_not_regular_files_are_named_as_such(hostile_run, tmp_path):
    """A FIFO, a device or a link to nothing given as an image (on the command line or in a CSV) is
    refused for what it is, never opened (a FIFO would block) and never called missing."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    dangling = tmp_path / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    best = str(hostile_run["run"] / "best.pt")
    for image, expected in ((fifo, "it is a FIFO, not a regular file"), (Path("/dev/zero"), "it is a device, not a regular file"),
                            (dangling, "it is a symbolic link to nothing")):
        r = runner.invoke(app, ["predict", best, str(image), "--csv", str(tmp_path / "s.csv")])
        assert r.exit_code == 1 and f"{image}: {expected}" in r.output, r.output
    table = tmp_path / "labels.csv"
    table.write_text(f"path,label\n{fifo},x\n/dev/zero,x\n")
    r = runner.invoke(app, ["eval", best, "--data", str(table)])
    assert r.exit_code == 1 and "internal error" not in r.output, r.output
    assert f"labels.csv:2:1: `{fifo}` is a FIFO" in r.output and "labels.csv:3:1: `/dev/zero` is a device" in r.output
    assert not (tmp_path / "s.csv").exists()


def test_a_carriage_return_in_a_file_name_keeps_its_row(hostile_run, tmp_path):
    """A file name holding CR (legal on Linux) is one cell of one row in every CSV composer writes:
    the predictions, the probabilities and a run's recorded splits, which read back as written."""
    images = tmp_path / "images"
    images.mkdir()
    source = next((hostile_run["data"] / "train").rglob("*.png")).read_bytes()
    for name in ("a\r.png", "b\r\n.png", "c.png"):
        (images / name).write_bytes(source)
    best = str(hostile_run["run"] / "best.pt")
    r = runner.invoke(app, ["predict", best, str(images), "--csv", str(tmp_path / "s.csv"), "--probs", str(tmp_path / "p.csv")])
    assert r.exit_code == 0, r.output
    for written in ("s.csv", "p.csv"):
        with (tmp_path / written).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        assert [row[0] for row in rows[1:]] == ["a\r.png", "b\r\n.png", "c.png"], rows
    samples = data_module.Samples([images / "a\r.png", images / "c.png"], [0, 1], ["x", "y"], images)
    recorded = tmp_path / "val.csv"
    recorded.write_bytes(data_module.csv_text(samples))
    back = data_module.scan_csv(recorded)
    assert [p.name for p in back.paths] == ["a\r.png", "c.png"] and back.classes == ["x", "y"]
