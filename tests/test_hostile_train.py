"""Hostile and careless inputs to training: devices, process counts and the environment, recipes,
checkpoints, run folders, signals to `--devices N`, and a loss that becomes non-finite.

Each ends in a clear, located error and exit 1 (no traceback, no "internal error"), before any
work where the input alone decides it, and no file of an earlier run is changed. The refusal
checks reuse tests/test_hostile.py's.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.train import TrainingError, load_recipe, train
from composer.train import loop, runs
from composer.train.report import read_metrics

from .conftest import ROOT
from .synthetic import TINY_NET as BP, make_folder
from .test_hostile import _check_refusal

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile-train")
    bp = root / "bp.yaml"
    bp.write_text(BP)
    data = make_folder(root / "data", {"train": 8, "val": 3})
    return {"root": root, "bp": bp, "data": data}


def _train(s: dict, *extra: str, out: Path | None = None, env: dict | None = None):
    args = ["train", str(s["bp"]), "--data", str(s["data"]), "--device", "cpu", "--epochs", "1", "--batch", "8",
            "--set", "recipe.data.workers=0", "--out", str(out or s["root"] / "out"), *extra]
    return runner.invoke(app, args, env=env)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(setup) -> Path:
    out = setup["root"] / "finished"
    r = _train(setup, out=out)
    assert r.exit_code == 0, r.output
    return out


# --- devices, process counts and the environment: refused before any work ---------------------------

@pytest.mark.parametrize("device", ["cuda", "gpu", "cuda:1", "mps", "tpu", "cuda:x", "cpu:3", "\x1b[31m", "x" * 500])
def test_device_strings_are_checked_in_train_eval_and_predict(setup, finished, device, tmp_path):
    if device.startswith(("cuda", "gpu")) and torch.cuda.is_available():
        pytest.skip("this machine has a GPU: cuda is a device here")
    for args in (["train", str(setup["bp"]), "--data", str(setup["data"]), "--out", str(tmp_path / "o")],
                 ["eval", str(finished / "best.pt"), "--data", str(setup["data"])],
                 ["predict", str(finished / "best.pt"), str(setup["data"] / "val"), "--csv", str(tmp_path / "p.csv")]):
        r = runner.invoke(app, [*args, "--device", device])
        _check_refusal(r, "`--device ", located=False)
        assert "with the device" in r.output or "problems with" in r.output, r.output
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.csv").exists()


def test_more_processes_than_cores_are_refused_before_any_start(setup, tmp_path):
    t0 = time.perf_counter()
    r = _train(setup, "--devices", "64", out=tmp_path / "o")
    _check_refusal(r, "`--devices 64`: this machine has", located=False)
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "o").exists()


def test_a_ddp_run_with_missing_data_is_refused_before_torchrun(setup, tmp_path):
    args = ["train", str(setup["bp"]), "--data", str(tmp_path / "nowhere"), "--devices", "2", "--device", "cpu",
            "--out", str(tmp_path / "o")]
    r = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "nowhere: no such folder or CSV file" in r.stderr
    assert "torchrun" not in r.stderr and "Traceback" not in r.stderr and "starting 2 processes" not in r.stdout


@pytest.mark.parametrize("env, expected", [
    ({"WORLD_SIZE": "2", "RANK": "0"}, "was not started by torchrun"),
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not a process number"),
    ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}, "do not fit WORLD_SIZE=2"),
])
def test_stray_torchrun_variables_are_one_line(setup, tmp_path, env, expected):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        r = _train(setup, out=tmp_path / "o")
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    _check_refusal(r, expected, located=False)


# --- recipes: typed entries, cross-field checks, located at their line -----------------------------

RECIPES = [
    ("crop-reversed", "augment:\n  crop: {scale: [1.0, 0.08]}\n", "r.yaml:2:", "a range is `[low, high]`"),
    ("ratio-reversed", "augment:\n  crop: {ratio: [2.0, 0.5]}\n", "r.yaml:2:", "a range is `[low, high]`"),
    ("lam-reversed", "augment:\n  mixup: {lam: [0.9, 0.1]}\n", "r.yaml:2:", "a range is `[low, high]`"),
    ("std-zero", "augment:\n  std: [0, 0, 0]\n", "r.yaml:2:", "greater than 0"),
    ("mean-negative", "augment:\n  mean: [-5, 0.4, 0.4]\n", "r.yaml:2:", "greater than or equal to 0"),
    ("patience-zero", "early_stop: {patience: 0}\n", "r.yaml:1:", "greater than or equal to 1"),
    ("keep-top-zero", "keep_top: 0\n", "r.yaml:1:", "greater than or equal to 1"),
    ("lr-scale", "lr_scale: cubic\n", "r.yaml:1:", "lr_scale"),
    ("seed-string", "seed: '3'\n", "r.yaml:1:", "seed"),
]


@pytest.mark.parametrize("case", RECIPES, ids=[c[0] for c in RECIPES])
def test_hostile_recipes_are_refused_at_their_line(setup, tmp_path, case):
    _, text, where, expected = case
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    r = _train(setup, "--recipe", str(recipe), out=tmp_path / "o")
    _check_refusal(r, expected, located=False)
    assert where in r.output, r.output
    assert not (tmp_path / "o").exists()


def test_a_short_run_of_a_long_recipe_is_not_refused_for_its_warmup(setup, tmp_path):
    r = _train(setup, "--epochs", "3", out=tmp_path / "o")  # the default warm-up is 5 epochs
    assert r.exit_code == 0, r.output
    assert "warm-up 0.75 epochs (the recipe's 5, shortened" in r.output
    assert "{'epochs'" not in r.output


def test_every_problem_of_flags_recipe_and_data_in_one_report(setup, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optimizer: {lr: -1}\n")
    r = runner.invoke(app, ["train", str(setup["bp"]), "--data", str(tmp_path / "nowhere"), "--recipe", str(recipe),
                            "--batch", "lots", "--device", "tpu", "--out", str(tmp_path / "o")])
    _check_refusal(r, "4 problems with the command line, the device, the recipe and the data", located=False)
    for needle in ("`--batch lots`", "`--device tpu`", f"{recipe}:1:", "nowhere: no such folder"):
        assert needle in r.output, r.output


# --- run folders: never overwritten, one writer at a time ------------------------------------------

def test_a_second_run_into_the_same_out_leaves_the_first_byte_identical(setup, finished):
    before = _digest(finished)
    r = _train(setup, out=finished)
    assert r.exit_code == 0, r.output
    assert f"{finished} holds a run; writing this one to {finished.with_name(finished.name + '2')}" in r.output
    assert _digest(finished) == before
    assert (finished.with_name(finished.name + "2") / "last.pt").exists()


def test_a_finished_run_given_resume_says_so_and_changes_nothing(setup, finished):
    before = _digest(finished)
    mtimes = {p: p.stat().st_mtime_ns for p in finished.rglob("*")}
    r = _train(setup, "--resume", out=finished)
    assert r.exit_code == 0, r.output
    assert "is complete" in r.output and "--resume --epochs 2" in r.output
    assert _digest(finished) == before and {p: p.stat().st_mtime_ns for p in finished.rglob("*")} == mtimes


def test_a_folder_being_written_is_refused_to_a_second_writer(setup, finished, tmp_path):
    with runs.locked(finished):  # a living run holds the folder
        for extra in (["--exist-ok"], ["--resume", "--epochs", "3"]):
            r = _train(setup, *extra, out=finished)
            _check_refusal(r, "another run is writing to this folder", located=False)
    r = _train(setup, "--resume", "--epochs", "2", out=finished)  # the lock goes with its holder
    assert r.exit_code == 0, r.output


# --- checkpoints: a declared shape, checked before use ----------------------------------------------

def _tampered(finished: Path, tmp_path: Path, **changes) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    payload = torch.load(finished / "last.pt", weights_only=True)
    payload.update(changes)
    torch.save(payload, out / "last.pt")
    return out


def test_a_checkpoint_whose_head_disagrees_with_its_classes_is_refused(setup, finished, tmp_path):
    payload = torch.load(finished / "last.pt", weights_only=True)
    state = dict(payload["state_dict"])
    state["head.fc.weight"] = state["head.fc.weight"][:2]
    out = _tampered(finished, tmp_path, state_dict=state)
    r = _train(setup, "--resume", "--epochs", "2", out=out)
    _check_refusal(r, "names 3 classes but its head has 2 outputs", located=False)
    for args in (["eval", str(out / "last.pt"), "--data", str(setup["data"])],
                 ["predict", str(out / "last.pt"), str(setup["data"] / "val"), "--csv", str(tmp_path / "p.csv")]):
        _check_refusal(runner.invoke(app, args), "its head has 2 outputs", located=False)


@pytest.mark.parametrize("change", [{"classes": "abc"}, {"epoch": "1"}, {"classes": ["a", "a", "b"]}, {"recipe": None}])
def test_a_checkpoint_with_entries_of_the_wrong_kind_is_refused(setup, finished, tmp_path, change):
    out = _tampered(finished, tmp_path, **change)
    _check_refusal(_train(setup, "--resume", "--epochs", "2", out=out), "last.pt", located=False)


def test_resume_refuses_data_with_other_class_names(setup, finished, tmp_path):
    data = make_folder(tmp_path / "d", {"train": 8, "val": 3}, classes=("circle", "square", "hexagon"))
    out = tmp_path / "run"
    import shutil
    shutil.copytree(finished, out)
    r = runner.invoke(app, ["train", str(setup["bp"]), "--data", str(data), "--resume", "--epochs", "2", "--out", str(out),
                            "--device", "cpu"])
    _check_refusal(r, "are not the run's (circle, square, triangle)", located=False)


def test_metrics_with_a_cut_last_line_are_read(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"epoch": 1, "val_top1": 0.5}) + "\n" + '{"epoch": 2, "val_to')
    assert read_metrics(path) == [{"epoch": 1, "val_top1": 0.5}]


# --- a loss that becomes non-finite -----------------------------------------------------------------

def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(setup, tmp_path, monkeypatch):
    real = loop.soft_cross_entropy
    calls = [0]

    def failing(logits, targets, smoothing):
        calls[0] += 1
        loss = real(logits, targets, smoothing)
        return loss * float("nan") if calls[0] > 4 else loss  # epoch 1: 3 steps (x1 call); epoch 2 goes bad

    monkeypatch.setattr(loop, "soft_cross_entropy", failing)
    recipe = load_recipe(overrides={"epochs": 3, "batch": 8, "data.workers": 0, "label_smoothing": 0.0})
    with pytest.raises(TrainingError, match=r"the training loss became nan at epoch 2, step 2") as e:
        train(composer.load(setup["bp"]), setup["data"], recipe, tmp_path / "o", device="cpu", progress=False)
    assert "last.pt holds the last good epoch (1)" in str(e.value.problems[0])
    payload = torch.load(tmp_path / "o" / "last.pt", weights_only=True)
    assert payload["epoch"] == 1 and all(torch.isfinite(t).all() for t in payload["state_dict"].values())


# --- processes: the launcher owns its workers ------------------------------------------------------

def test_a_failing_ddp_worker_is_one_message_not_torchruns_report(setup, tmp_path):
    """Broken images are found by the workers (they decode every image first): the launcher prints
    the lowest failing rank's own message, once, and exits 1."""
    data = make_folder(tmp_path / "d", {"train": 8, "val": 3})
    broken = data / "train" / "square" / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])
    args = ["train", str(setup["bp"]), "--data", str(data), "--devices", "2", "--device", "cpu", "--epochs", "1",
            "--batch", "8", "--set", "recipe.data.workers=0", "--out", str(tmp_path / "o")]
    r = subprocess.run([sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert r.returncode == 1, r.stderr[-3000:]
    assert r.stderr.count("square/3.png: unreadable image") == 1, r.stderr[-3000:]
    for noise in ("Traceback", "ChildFailedError", "torch.distributed", "internal error", "Root Cause"):
        assert noise not in r.stderr, r.stderr[-3000:]


def _descendants_of(launcher: int) -> list[int]:
    """Processes started for the launcher `launcher` (by their environment), still alive."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"COMPOSER_LAUNCHER_PARENT={launcher}".encode() in env.split(b"\0"):
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            if state != "Z":
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and relies on PR_SET_PDEATHSIG (Linux)")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_launcher_stops_torchrun_and_every_worker(setup, tmp_path, sig):
    out = tmp_path / "o"
    args = ["train", str(setup["bp"]), "--data", str(setup["data"]), "--devices", "2", "--device", "cpu", "--epochs", "500",
            "--batch", "8", "--set", "recipe.data.workers=0", "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "metrics.jsonl").exists():  # training is under way
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.5)
    assert (out / "metrics.jsonl").exists()
    assert len(_descendants_of(proc.pid)) >= 3  # torchrun and two workers
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    deadline = time.time() + 40
    while time.time() < deadline and _descendants_of(proc.pid):
        time.sleep(0.5)
    assert _descendants_of(proc.pid) == []
    written = (out / "metrics.jsonl").stat().st_mtime_ns
    time.sleep(1.5)
    assert (out / "metrics.jsonl").stat().st_mtime_ns == written  # nothing writes to the run any more
    if sig == signal.SIGTERM:
        assert proc.returncode == 1 and "stopped by SIGTERM" in proc.stderr.read().decode()
