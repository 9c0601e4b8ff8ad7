"""composer train / eval / predict end to end, on a synthetic folder of 32x32 PNG shapes."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.train import MissingExtra, load_recipe, train
from composer.train.autobatch import auto_batch, step_bytes
from composer.train.extras import require
from composer.train.loop import param_groups, warmup_cosine

from .conftest import ROOT
from .synthetic import CLASSES, make_folder

runner = CliRunner()

# batch norm, SE, relative attention: the kind of hybrid a student writes
HYBRID = """\
name: tiny-shapes
input: {channels: 3, size: 32}
classes: 3
stem: {type: conv, channels: [16], stride: 2, act: gelu}
layout: C-T
blocks:
  C: {type: mbconv, expand: 2, kernel: 3, se: 0.25}
  T: {type: transformer, attention: {type: relative, head_dim: 16}}
stages:
  - {depth: 1, channels: 24, stride: 2}
  - {depth: 1, channels: 32, stride: 2}
head: {type: pool}
"""

# layer norms only: batch statistics would differ between 2 processes and 1 (no SyncBatchNorm on gloo)
LAYERNORM = """\
name: tiny-layernorm
input: {channels: 3, size: 32}
classes: 3
stem: {type: patch, channels: 16, patch: 4, norm: layernorm}
layout: X-T
blocks:
  X: {type: convnext, kernel: 3}
  T: {type: transformer, attention: {type: plain, head_dim: 16}}
stages:
  - {depth: 1, channels: 16}
  - {depth: 1, channels: 32, stride: 2, transition: {type: conv, kernel: 2, norm: before}}
head: {type: pool}
"""

RECIPE = """\
epochs: 4
batch: 32
optimizer: {type: adamw, lr: 3.0e-3, weight_decay: 0.01}
schedule: {warmup_epochs: 1, warmup_lr: 1.0e-4, min_lr: 1.0e-4}
label_smoothing: 0.0
augment: {crop: {scale: [0.6, 1.0]}, hflip: 0.5}
data: {workers: 2}
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    paths = {"data": make_folder(root / "shapes", {"train": 48, "val": 16})}
    for name, text in (("hybrid", HYBRID), ("layernorm", LAYERNORM), ("recipe", RECIPE)):
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def run(files, tmp_path_factory) -> Path:
    """One real training run through the command line (4 epochs, 2 decoding workers)."""
    out = tmp_path_factory.mktemp("run") / "shapes"
    r = runner.invoke(app, ["train", str(files["hybrid"]), "--data", str(files["data"]), "--recipe", str(files["recipe"]),
                            "--out", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return out


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_reaches_high_validation_accuracy(run):
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert max(r["val_top1"] for r in rows) >= 0.9  # chance is 1/3
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for name in ("best.pt", "last.pt"):
        net = composer.load_model(run / name).eval()
        assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 3)
        payload = torch.load(run / name, weights_only=True)
        assert payload["classes"] == list(CLASSES)
        assert {"recipe", "optimizer", "scheduler", "scaler", "ema", "rng", "epoch"} <= set(payload)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run.glob(".*.tmp"))


def test_eval_matches_the_accuracy_logged_in_training(run, files, tmp_path):
    best = max(_metrics(run), key=lambda r: r["val_top1"])
    picture = tmp_path / "confusion.png"
    r = runner.invoke(app, ["eval", str(run / "best.pt"), "--data", str(files["data"]), "--json", "--batch", "32",
                            "--confusion", str(picture)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["top1"] == pytest.approx(best["val_top1"], abs=1e-9) and d["images"] == 3 * 16
    assert d["loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    assert 0 <= d["top1"] <= d["top5"] == 1.0  # 3 classes: top-5 holds every class
    assert set(d["per_class"]) == set(CLASSES)
    assert picture.read_bytes()[:4] == b"\x89PNG"


def test_predict_writes_one_row_per_image(run, files, tmp_path):
    csv = tmp_path / "submission.csv"
    r = runner.invoke(app, ["predict", str(run / "best.pt"), str(files["data"] / "val"), "--csv", str(csv), "--tta"])
    assert r.exit_code == 0, r.output
    lines = csv.read_text().splitlines()
    assert lines[0] == "path,label" and len(lines) == 1 + 3 * 16
    rows = [line.split(",") for line in lines[1:]]
    assert {label for _, label in rows} <= set(CLASSES)
    right = sum(path.split("/")[0] == label for path, label in rows)
    assert right >= 0.8 * len(rows)
    r = runner.invoke(app, ["predict", str(run / "best.pt"), str(files["data"] / "val" / "circle" / "0.png"),
                            "--csv", str(csv), "--indices"])
    assert r.exit_code == 0, r.output
    assert csv.read_text().splitlines()[1] in ("0.png,0", "0.png,1", "0.png,2")


def _recipe(**overrides):
    base = {"epochs": 3, "batch": 16, "data.workers": 0, "schedule.warmup_epochs": 1, "label_smoothing": 0.1}
    return load_recipe(overrides={**base, **overrides})


def test_two_gloo_processes_match_one_with_the_same_global_batch(files, tmp_path):
    recipe = tmp_path / "plain.yaml"
    recipe.write_text("epochs: 1\nbatch: 16\noptimizer: {type: sgd, lr: 0.05}\nschedule: {warmup_epochs: 0}\n"
                      "augment: {crop: null, hflip: 0}\ndata: {workers: 0}\n")
    one = train(composer.load(files["layernorm"]), files["data"], load_recipe(recipe), tmp_path / "one", device="cpu",
                progress=False)
    r = subprocess.run([sys.executable, "-m", "cli", "train", str(files["layernorm"]), "--data", str(files["data"]),
                        "--recipe", str(recipe), "--out", str(tmp_path / "two"), "--devices", "2", "--device", "cpu"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 process(es)" in r.stderr
    # quiet: no OMP banner from torchrun (the launcher sets the threads), no grad-stride warning from DDP
    assert "Setting OMP_NUM_THREADS" not in r.stderr and "Grad strides" not in r.stderr, r.stderr
    a = torch.load(tmp_path / "one" / "last.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "two" / "last.pt", weights_only=True)["state_dict"]
    initial = composer.build(composer.load(files["layernorm"])).state_dict()
    moved = [k for k in a if not torch.equal(a[k], initial[k])]
    assert moved  # training changed the weights
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    rows_one, rows_two = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert rows_two[-1]["val_top1"] == rows_one[-1]["val_top1"] and one.epochs == 1


def test_resume_equals_an_uninterrupted_run_bit_for_bit(files, tmp_path):
    bp = composer.load(files["hybrid"])
    recipe = _recipe(epochs=2, **{"ema": 0.9, "augment.mixup": {"p": 0.5}, "augment.cutmix": {"p": 0.5},
                                  "augment.erasing": 0.25})
    train(bp, files["data"], recipe, tmp_path / "whole", device="cpu", progress=False)
    # decoding workers neither change the data nor draw from the RNG the augmentation uses
    recipe = recipe.model_copy(update={"data": recipe.data.model_copy(update={"workers": 1})})
    train(bp, files["data"], recipe, tmp_path / "parts", device="cpu", progress=False, stop_after=1)
    assert torch.load(tmp_path / "parts" / "last.pt", weights_only=True)["epoch"] == 1
    (tmp_path / "parts" / ".last.pt.x1.tmp").write_bytes(b"left by a kill -9")
    train(bp, files["data"], recipe, tmp_path / "parts", device="cpu", progress=False, resume=True)
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "parts" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for key in ("state_dict", "ema"):
        assert a[key].keys() == b[key].keys()
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_time_s")} for r in rows]
    assert strip(_metrics(tmp_path / "whole")) == strip(_metrics(tmp_path / "parts"))
    assert not (tmp_path / "parts" / ".last.pt.x1.tmp").exists()  # stale temporary files are cleared


KILL_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys, torch, composer
    src, dst = sys.argv[1], sys.argv[2]
    payload = torch.load(src, weights_only=True)
    net, bp = composer.load_model(src), composer.loads(payload["blueprint"])
    def dying_save(obj, fh, *args, **kwargs):  # half a checkpoint reaches the disk, then kill -9
        fh.write(b"PK\\x03\\x04 half a checkpoint"); fh.flush(); os.fsync(fh.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    torch.save = dying_save
    composer.save(net, bp, dst, extra={"epoch": 99})
""")


def test_kill_during_a_checkpoint_write_leaves_the_previous_one_loadable(run, tmp_path):
    previous = tmp_path / "last.pt"
    shutil.copy(run / "last.pt", previous)
    before = previous.read_bytes()
    r = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, str(run / "best.pt"), str(previous)], cwd=ROOT,
                       capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    assert list(tmp_path.glob(".last.pt.*.tmp"))  # the write was under way
    assert previous.read_bytes() == before
    composer.load_model(previous)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_with_accumulation_clipping_and_ema(files, tmp_path, precision):
    recipe = _recipe(epochs=1, precision=precision, accumulate=2, clip_grad=1.0, channels_last=True, ema=0.99,
                     optimizer={"type": "sgd", "lr": 0.05}, **{"schedule.warmup_epochs": 0})
    result = train(composer.load(files["hybrid"]), files["data"], recipe, tmp_path / precision, device="cpu", progress=False)
    assert 0 < result.last["train_loss"] < 2 and result.last["val_top1"] > 0.4
    payload = torch.load(tmp_path / precision / "last.pt", weights_only=True)
    assert ("scale" in payload["scaler"]) == (precision == "fp16")  # loss scaling for fp16 only
    assert payload["ema"]["n_averaged"].item() == 144 // 16
    net = composer.load_model(tmp_path / precision / "last.pt")
    assert all(p.dtype == torch.float32 for p in net.parameters())  # master weights stay float32


def test_batch_auto_is_the_largest_batch_the_estimate_fits(files, monkeypatch):
    from composer.train import autobatch
    plan = composer.plan(composer.load(files["hybrid"]))
    recipe = _recipe(precision="bf16", ema=0.999)
    budget_bytes = step_bytes(plan, recipe, 40) + 1000
    monkeypatch.setattr(autobatch, "free_memory", lambda device: int(budget_bytes / autobatch.HEADROOM) + 1)
    batch, info = auto_batch(plan, recipe, torch.device("cpu"), limit=10_000)
    assert info["fits"] == 40 and batch == 40
    assert step_bytes(plan, recipe, batch) <= info["free_bytes"] < step_bytes(plan, recipe, batch + 1)
    # mixed precision and EMA cost more than plain float32 training
    assert step_bytes(plan, recipe, 8) > step_bytes(plan, _recipe(), 8)
    assert auto_batch(plan, recipe, torch.device("cpu"), limit=7)[0] == 7


def test_batch_auto_keeps_eight_steps_per_epoch_and_scales_the_lr(files, tmp_path):
    result = train(composer.load(files["hybrid"]), files["data"], _recipe(epochs=1), tmp_path / "auto", device="cpu",
                   progress=False, auto=True)
    assert result.batch == 16  # 144 images: 9 steps of 16 (batches of 16 or more, at least 8 steps)
    saved = torch.load(tmp_path / "auto" / "last.pt", weights_only=True)["recipe"]
    assert saved["batch"] == 16 and saved["optimizer"]["lr"] == pytest.approx(1e-3)  # the recipe's batch is 16 too
    recipe = _recipe(epochs=1, batch=64, lr_scale="linear")
    result = train(composer.load(files["hybrid"]), files["data"], recipe, tmp_path / "linear", device="cpu",
                   progress=False, auto=True)
    saved = torch.load(tmp_path / "linear" / "last.pt", weights_only=True)["recipe"]
    assert saved["optimizer"]["lr"] == pytest.approx(1e-3 * 16 / 64)


def test_csv_data_with_a_held_out_split(files, tmp_path):
    rows = ["path,label"] + [f"{p.relative_to(files['data']).as_posix()},{p.parent.name}"
                             for p in sorted((files["data"] / "train").rglob("*.png"))]
    (files["data"] / "labels.csv").write_text("\n".join(rows) + "\n")
    try:
        r = runner.invoke(app, ["train", str(files["hybrid"]), "--data", str(files["data"] / "labels.csv"), "--epochs", "1",
                                "--batch", "16", "--out", str(tmp_path / "csv"), "--set", "recipe.data.workers=0",
                                "--set", "recipe.schedule.warmup_epochs=0", "--set", "recipe.data.val_split=0.25"])
    finally:
        (files["data"] / "labels.csv").unlink()
    assert r.exit_code == 0, r.output
    assert "on 108 images of 3 classes, validating on 36 (held out of train)" in r.output


def test_weight_decay_spares_norms_biases_and_tokens():
    net = composer.build(composer.loads(HYBRID.replace("head: {type: pool}", "head: {type: pool}").replace(
        "- {depth: 1, channels: 32, stride: 2}", "- {depth: 1, channels: 32, stride: 2, pos_embed: true}")))
    decay, no_decay = param_groups(net, 0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"])
    assert any(names[id(p)].endswith("pos_embed") for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))


def test_warmup_then_cosine():
    recipe = _recipe(epochs=10, **{"schedule.warmup_epochs": 2, "schedule.warmup_lr": 1e-5, "schedule.min_lr": 1e-6,
                                   "optimizer.lr": 1e-3})
    f = warmup_cosine(recipe, steps_per_epoch=5)
    lr = [1e-3 * f(s) for s in range(51)]
    assert lr[0] == pytest.approx(1e-5) and lr[10] == pytest.approx(1e-3) and lr[50] == pytest.approx(1e-6)
    assert all(a < b for a, b in zip(lr[:10], lr[1:11])) and all(a >= b for a, b in zip(lr[10:], lr[11:]))


def test_recipes_validate_and_their_schema_is_current():
    import jsonschema
    from composer.train.recipe import recipe_json_schema_text
    schema_file = ROOT / "recipes" / "recipe.schema.json"
    assert schema_file.read_text() == recipe_json_schema_text(), "run `composer schema --recipe -o recipes/recipe.schema.json`"
    schema = json.loads(schema_file.read_text())
    import yaml
    names = set()
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=recipe.schema.json")
        names.add(load_recipe(path).name)
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    assert {"default", "resnet", "deit", "convnext", "coatnet", "mobilenet", "small"} <= names


def test_the_recipe_reference_page_is_current():
    from composer.train.recipe import recipe_markdown
    page = (ROOT / "docs" / "recipes.md").read_text()
    assert page == recipe_markdown(), "run `composer schema --recipe --markdown -o docs/recipes.md`"
    for key in ("`lr_scale`", "`keep_top`", "`early_stop`", "`patience`", "`scale`", "## Augment", "## EarlyStop"):
        assert key in page


def test_importing_composer_leaves_the_training_extra_alone():
    code = ("import sys, composer, composer.train, cli.app; "
            "print(sorted(m for m in ('PIL', 'kornia', 'matplotlib', 'rich.progress') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_a_missing_extra_says_how_to_install_it():
    with pytest.raises(MissingExtra, match=r"pip install 'composer-vision\[train\]'"):
        require("composer_no_such_module.augmentation")


# --- bad input: a clear message and exit 1, before any training ------------------------------------

def _train(files, data, *extra: str, out: Path | None = None):
    args = ["train", str(files["hybrid"]), "--data", str(data), "--out", str(out or data.parent / "out"), "--device", "cpu",
            "--set", "recipe.data.workers=0", *extra]
    return runner.invoke(app, args)


def _refused(r, *needles: str) -> None:
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    for needle in needles:
        assert needle in r.stderr, r.stderr


def _tree(root: Path, per_class: int = 2, classes=CLASSES) -> Path:
    return make_folder(root, {"train": per_class}, classes=classes)


def test_missing_data_folder(files, tmp_path):
    _refused(_train(files, tmp_path / "nowhere"), "1 problem in the data", "nowhere: no such folder or CSV file")


def test_no_class_folders(files, tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    _refused(_train(files, tmp_path / "d"), "train: has no class folders")


def test_empty_class_folder(files, tmp_path):
    data = _tree(tmp_path / "d")
    (data / "train" / "hexagon").mkdir()
    _refused(_train(files, data, "--set", "classes=4"), "train/hexagon: class folder holds no images")


def test_a_data_set_of_another_class_count_gets_its_own_head(files, tmp_path):
    """The default recipe (100 epochs, warm-up 5, batch 128) on 2 classes of 4 images, for 2 epochs:
    the head follows the data, the warm-up and the batch shrink to fit, each said in one line."""
    data = make_folder(tmp_path / "d", {"train": 4, "val": 2}, classes=("circle", "square"))
    r = runner.invoke(app, ["train", str(files["hybrid"]), "--data", str(data), "--epochs", "2", "--out",
                            str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "head: 2 classes from the data (circle, square); the blueprint says 3" in r.output
    assert "warm-up 0.5 epochs (the recipe's 5, shortened to a quarter of this 2-epoch run)" in r.output
    assert "batch 8: the recipe's 128 is larger than the 8 training images" in r.output
    assert "at input 32x32" in r.output
    payload = torch.load(tmp_path / "out" / "last.pt", weights_only=True)
    assert payload["classes"] == ["circle", "square"] and payload["state_dict"]["head.fc.weight"].shape[0] == 2
    assert composer.load_model(tmp_path / "out" / "best.pt").num_classes == 2


def test_truncated_images_are_refused_or_skipped_as_the_recipe_says(files, tmp_path):
    data = _tree(tmp_path / "d", per_class=8)
    broken = data / "train" / "square" / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated
    (data / "train" / "circle" / "notes.jpg").write_text("not an image")
    _refused(_train(files, data), "square/3.png: unreadable image", "notes.jpg: unreadable image",
             "2 broken images in all", "recipe.data.bad_images=skip")
    r = _train(files, data, "--set", "recipe.data.bad_images=skip", "--epochs", "1", "--batch", "8",
               "--set", "recipe.schedule.warmup_epochs=0")
    assert r.exit_code == 0, r.output
    assert "skipped 2 unreadable images" in r.output


def test_csv_with_unknown_paths_or_labels(files, tmp_path):
    data = _tree(tmp_path / "d")
    csv = data / "labels.csv"
    csv.write_text("path,label\ntrain/circle/0.png,circle\ntrain/circle/9.png,circle\ntrain/square/0.png,hexagon\n")
    r = runner.invoke(app, ["eval", str(files["layernorm"]), "--data", str(csv)])
    _refused(r, "is not a readable checkpoint")  # a blueprint is not a checkpoint
    r = _train(files, csv, "--set", "classes=2")
    _refused(r, f"{csv}:3:1: no such image `train/circle/9.png`")
    csv.write_text("train/circle/0.png,circle\ntrain/square/0.png\n")
    _refused(_train(files, csv), f"{csv}:2:1: expected `path,label`")


def test_eval_refuses_labels_the_model_does_not_know(run, tmp_path):
    data = _tree(tmp_path / "d", classes=("circle", "hexagon"))
    _refused(runner.invoke(app, ["eval", str(run / "best.pt"), "--data", str(data / "train")]),
             "class folder `hexagon` not among the model's 3 classes")
    csv = tmp_path / "d" / "labels.csv"
    csv.write_text("path,label\ntrain/circle/0.png,hexagon\n")
    _refused(runner.invoke(app, ["eval", str(run / "best.pt"), "--data", str(csv)]), f"{csv}:2:20: unknown label `hexagon`")


def test_resume_refuses_a_checkpoint_of_another_blueprint(run, files, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run, out)
    _refused(_train(files, files["data"], "--resume", "--set", "stages.1.depth=2", out=out),
             "last.pt: the checkpoint was trained from another blueprint")
    _refused(_train(files, files["data"], "--resume", out=tmp_path / "empty"), "last.pt: no checkpoint to resume from")


def test_recipe_mistakes_are_located(files, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("epochs: 3\noptimizer: {type: adamw, lr: -1}\naugment:\n  hflp: 0.5\n")
    _refused(_train(files, files["data"], "--recipe", str(recipe)), "2 problems in the recipe",
             f"{recipe}:2:26: optimizer.lr: input should be greater than 0, found -1",
             f"{recipe}:4:3: augment.hflp: unknown option `hflp` (did you mean `hflip`?)")
    _refused(_train(files, files["data"], "--set", "recipe.optimizer.type=lamb"),
             "optimizer.type: unknown type `lamb`; expected one of `adamw`, `sgd`")


def test_bad_batches(files, tmp_path):
    _refused(_train(files, files["data"], "--batch", "many"), "1 problem with the command line",
             "`--batch many`: expected a number from 1 to 1,000,000, or `auto`")
    _refused(_train(files, files["data"], "--batch", "1000"), "batch 1000 is larger than the 144 training images")
    _refused(_train(files, files["data"], "--batch", "10", "--set", "recipe.accumulate=4"),
             "batch 10 does not split into 1 device(s) x 4 micro-batch(es)")


def test_predict_and_eval_refuse_missing_inputs(run, tmp_path):
    (tmp_path / "empty").mkdir()
    _refused(runner.invoke(app, ["predict", str(run / "best.pt"), str(tmp_path / "empty"), "--csv", str(tmp_path / "s.csv")]),
             "empty: holds no images")
    _refused(runner.invoke(app, ["predict", str(tmp_path / "none.pt"), str(tmp_path), "--csv", str(tmp_path / "s.csv")]),
             "none.pt: no such checkpoint")
    _refused(runner.invoke(app, ["predict", str(run / "best.pt"), str(tmp_path), "--csv", str(tmp_path / "no" / "s.csv")]),
             "its directory does not exist")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_rich_bar_on_a_terminal_and_plain_lines_elsewhere():
    from composer.train.report import Progress
    for stream in (io.StringIO(), _Terminal()):
        show = Progress(stream=stream, every=0.0)
        show.start("epoch 1/1", 3)
        for step in range(3):
            show.update(1, images=8, loss=1.0 / (step + 1), lr=0.1)
        show.finish()
        text = stream.getvalue()
        assert "epoch 1/1" in text and "loss 0.333" in text and "img/s" in text
        assert (show.rich, "\x1b[" in text or "━" in text) == (isinstance(stream, _Terminal),) * 2
    plain = io.StringIO()
    show = Progress(stream=plain, every=0.0)
    show.start("epoch 1/1", 2)
    show.update(1, loss=2.0)
    show.update(1, loss=1.0)
    assert plain.getvalue().splitlines()[-1].startswith("epoch 1/1: 2/2 loss 1")


def test_fine_tuning_from_weights_keeps_the_backbone_and_gives_a_new_head(run, files, tmp_path):
    """`--weights` starts from a trained model: with a learning rate too small to move anything, the
    backbone is the pretrained one; the classifier for another class count is new, and said to be."""
    data = make_folder(tmp_path / "two", {"train": 8, "val": 4}, classes=CLASSES[:2])
    out = tmp_path / "tuned"
    r = _train(files, data, "--weights", str(run / "best.pt"), "--set", "classes=2", "--epochs", "1", "--batch", "8",
               "--set", "recipe.optimizer={type: sgd, lr: 1.0e-12, weight_decay: 0}",
               "--set", "recipe.schedule={warmup_epochs: 0}", out=out)
    assert r.exit_code == 0, r.output
    assert "re-initialised head.fc.weight: checkpoint 3x32, blueprint 2x32" in r.output
    before = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    after = torch.load(out / "last.pt", weights_only=True)["state_dict"]
    convs = [k for k in before if k.endswith("weight") and before[k].ndim == 4]
    assert convs and all(torch.allclose(before[k], after[k], atol=1e-6) for k in convs)
    assert after["head.fc.weight"].shape == (2, 32) and before["head.fc.weight"].shape == (3, 32)


def test_out_must_be_a_directory(files, tmp_path):
    target = tmp_path / "afile"
    target.write_text("keep me")
    _refused(_train(files, files["data"], out=target), "it is not a directory")
    assert target.read_text() == "keep me"


def test_batch_auto_learns_as_well_as_a_small_fixed_batch(tmp_path):
    """A few hundred small images: `--batch auto` keeps at least 8 steps per epoch and scales the lr,
    so in the same epochs it reaches the accuracy of a fixed batch of 8 (the default recipe)."""
    data = make_folder(tmp_path / "d", {"train": 64, "val": 10})
    bp = composer.loads(HYBRID.replace("T: {type: transformer, attention: {type: relative, head_dim: 16}}", "T: {type: mbconv}"))
    recipe = load_recipe(overrides={"epochs": 3, "data.workers": 0})
    auto = train(bp, data, recipe, tmp_path / "auto", device="cpu", progress=False, auto=True)
    fixed = train(bp, data, recipe, tmp_path / "fixed", device="cpu", progress=False, batch=8)
    assert auto.batch == 16 and fixed.batch == 8  # 192 images: 12 steps of 16
    assert fixed.best_top1 > 0.6  # chance is 1/3
    assert auto.best_top1 >= fixed.best_top1 - 0.1  # 30 validation images: one is 3.3 points


def test_fine_tuning_in_one_command_with_parts_and_another_size(run, files, tmp_path):
    """`train --weights CKPT --parts stem,0 --size 48`: the stem and first stage come from the
    checkpoint (trained at 32), the rest starts anew, and the run trains at 48 x 48."""
    data = make_folder(tmp_path / "d", {"train": 8, "val": 2}, classes=CLASSES[:2])
    out = tmp_path / "tuned"
    r = _train(files, data, "--weights", str(run / "best.pt"), "--parts", "stem,0", "--size", "48", "--epochs", "1",
               "--batch", "8", "--set", "recipe.optimizer={type: sgd, lr: 1.0e-12, weight_decay: 0}", out=out)
    assert r.exit_code == 0, r.output
    assert "at input 48x48" in r.output and "head: 2 classes from the data" in r.output
    payload = torch.load(out / "last.pt", weights_only=True)
    assert composer.loads(payload["blueprint"]).model.input.hw == (48, 48)
    before = torch.load(run / "best.pt", weights_only=True)["state_dict"]
    stem = [k for k in before if k.startswith("stem.") and before[k].ndim == 4]
    assert stem and all(torch.allclose(before[k], payload["state_dict"][k], atol=1e-6) for k in stem)
    _refused(_train(files, data, "--parts", "stem"), "`--parts` needs `--weights`")
    _refused(_train(files, data, "--weights", str(run / "best.pt"), "--from", "keras"), "`--from keras`: expected auto, composer, timm or transformers")


def test_run_records_top_checkpoints_early_stop_csv_and_tensorboard(files, tmp_path):
    """keep_top 2 keeps the two best epochs; early_stop ends a plateau (no gain of 0.5 in 1 epoch:
    after epoch 2); metrics.jsonl and .csv hold both losses and training accuracy; a resume of the
    stopped run is complete."""
    recipe = _recipe(epochs=4, keep_top=2, early_stop={"patience": 1, "min_delta": 0.5})
    result = train(composer.load(files["hybrid"]), files["data"], recipe, tmp_path / "o", device="cpu", progress=False)
    out = tmp_path / "o"
    rows = _metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2] and result.epochs == 2
    for key in ("train_loss", "train_loss_smoothed", "train_top1", "val_loss", "val_loss_smoothed"):
        assert all(key in r for r in rows), key
    assert rows[0]["train_loss_smoothed"] != rows[0]["train_loss"]  # label smoothing 0.1
    assert sorted(p.name for p in out.glob("top-*.pt")) == ["top-1.pt", "top-2.pt"]
    table = (out / "metrics.csv").read_text().splitlines()
    assert table[0].startswith("epoch,") and "val_loss_smoothed" in table[0] and len(table) == 3
    pytest.importorskip("tensorboard", reason="TensorBoard events are written only when tensorboard is installed")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    again = train(composer.load(files["hybrid"]), files["data"], recipe, out, device="cpu", progress=False, resume=True)
    assert again.complete and _metrics(out) == rows


def test_curves_mark_the_best_epoch_and_show_a_one_epoch_run():
    from composer.train.report import curves_figure
    row = {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "val_top1": 0.5, "val_top5": 1.0, "lr": 1e-3, "train_top1": 0.4}
    fig = curves_figure([row])
    for ax in fig.axes:
        data_lines = [l for l in ax.get_lines() if l.get_label().startswith("best") is False]
        assert data_lines and all(l.get_marker() == "o" for l in data_lines)
        assert any(l.get_label() == "best: epoch 1" for l in ax.get_lines())
    rows = [dict(row, epoch=e, val_top1=v) for e, v in ((1, 0.5), (2, 0.8), (3, 0.7))]
    best = [l for l in curves_figure(rows).axes[1].get_lines() if l.get_label().startswith("best")]
    assert best[0].get_label() == "best: epoch 2" and list(best[0].get_xdata()) == [2, 2]


def test_weights_by_hub_name_reach_the_weights_layer_as_written(files, tmp_path, monkeypatch):
    """`--weights hf-hub:ORG/NAME` is a name, not a path: it reaches composer.build unchanged, with
    the layout and parts flags."""
    from composer.blueprint import BlueprintError, Problem
    from composer.train import loop
    seen = {}

    def capture(bp, **kwargs):
        seen.update(kwargs)
        raise BlueprintError(Problem("stopped here by the test", (), "<test>"))

    monkeypatch.setattr(loop, "build_model", capture)
    data = make_folder(tmp_path / "d", {"train": 8, "val": 2})
    r = _train(files, data, "--weights", "hf-hub:timm/convnext_tiny.fb_in1k", "--from", "timm", "--partial",
               "--epochs", "1", "--batch", "8")
    _refused(r, "stopped here by the test")
    assert seen["weights"] == "hf-hub:timm/convnext_tiny.fb_in1k" and isinstance(seen["weights"], str)
    assert seen["weights_from"] == "timm" and seen["strict"] is False and seen["parts"] is None


def test_grad_checkpointing_flag_checkpoints_the_run_and_counts_for_batch_auto(tmp_path):
    """`--grad-checkpointing` is a recipe value: the run says so, its checkpoint keeps it (a resume
    goes on checkpointing), and the estimate behind `--batch auto` needs less memory with it."""
    from .synthetic import TINY_NET, quick_train_args
    data = make_folder(tmp_path / "data", {"train": 4, "val": 2})
    bp = tmp_path / "bp.yaml"
    bp.write_text(TINY_NET)
    r = runner.invoke(app, quick_train_args(bp, data, tmp_path / "run", "--grad-checkpointing"))
    assert r.exit_code == 0, r.output
    assert "gradient checkpointing" in r.output
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["recipe"]["grad_checkpointing"] is True
    # a network of many blocks keeps only their inputs (one block of the tiny net saves nothing)
    plan = composer.plan(composer.load(ROOT / "blueprints" / "coatnet0.yaml", overrides={"input.size": 64}))
    plain, checkpointed = load_recipe(None), load_recipe(None, overrides={"grad_checkpointing": True})
    assert step_bytes(plan, checkpointed, 64) < 0.8 * step_bytes(plan, plain, 64)
