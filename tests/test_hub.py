"""Weights by Hugging Face Hub name (`hf-hub:timm/NAME`), from a cache laid out as the hub lays it
out, offline: nothing is downloaded. The small timm checkpoints of tests/data/timm stand in for the
published ones and reproduce timm's logits through the hub name."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.weights import WeightsError
from composer.weights.hub import architecture, parse, resolve

from .conftest import BLUEPRINTS, ROOT
from .test_weights import DATA, INDEX, logits

runner = CliRunner()
SHA = "0123456789abcdef0123456789abcdef01234567"


def lay_out_cache(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A Hugging Face cache entry as huggingface_hub writes it: blobs named by content hash, a
    snapshot folder of symbolic links to them, and refs/main naming the snapshot."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(SHA)
    snapshot = root / "snapshots" / SHA
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def config(name: str) -> bytes:
    entry = INDEX[name]
    return json.dumps({"architecture": entry["timm_model"], "num_classes": entry["classes"],
                       "pretrained_cfg": {"input_size": entry["input"][1:], "mean": [0.485, 0.456, 0.406],
                                          "std": [0.229, 0.224, 0.225], "crop_pct": 0.875}}).encode()


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An empty hub cache, offline; the environment for subprocesses and the module constants for this one."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def blueprint_for(name: str) -> composer.Blueprint:
    entry = INDEX[name]
    return composer.load(BLUEPRINTS / "timm" / f"{entry['timm_model']}.yaml",
                         overrides={"input.size": entry["input"][-1], "classes": entry["classes"]})


def test_hub_name_reproduces_timm_logits_offline(offline_cache):
    name = "mobilenetv2_050"  # the architecture of timm/mobilenetv2_050.lamb_in1k, at 64 px with 10 classes
    lay_out_cache(offline_cache, "timm/mobilenetv2_050.lamb_in1k",
                  {"model.safetensors": (DATA / f"{name}.safetensors").read_bytes(), "config.json": config(name)})
    net = composer.build(blueprint_for(name), weights="hf-hub:timm/mobilenetv2_050.lamb_in1k")
    report = net.weights_report
    assert report.layout == "timm" and len(report.loaded) == INDEX[name]["tensors"]
    assert not (report.initialised or report.ignored or report.reinitialised)
    assert report.file == "hf-hub:timm/mobilenetv2_050.lamb_in1k"
    io = load_file(DATA / f"{name}.io.safetensors")
    ref = io["logits"]
    assert (logits(net, io["input"]) - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_pytorch_model_bin_is_the_fallback(offline_cache, tmp_path):
    name = "convnext_atto"
    tensors = load_file(DATA / f"{name}.safetensors")
    pt = tmp_path / "w.bin"
    torch.save(tensors, pt)
    lay_out_cache(offline_cache, "timm/convnext_atto.d2_in1k", {"pytorch_model.bin": pt.read_bytes()})
    # a Path, as a command-line option typed Path passes it (train --weights)
    net = composer.build(blueprint_for(name), weights=Path("hf-hub:timm/convnext_atto.d2_in1k"))
    assert net.weights_report.file == "hf-hub:timm/convnext_atto.d2_in1k"
    io = load_file(DATA / f"{name}.io.safetensors")
    assert (logits(net, io["input"]) - io["logits"]).abs().max().item() <= 1e-5 * max(1.0, io["logits"].abs().max().item())


def test_a_model_missing_offline_is_one_line(offline_cache, tmp_path, monkeypatch):
    bp = tmp_path / "bp.yaml"
    bp.write_text((BLUEPRINTS / "timm" / "convnext_atto.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["build", str(bp), "--weights", "hf-hub:timm/convnext_atto.d2_in1k"])
    assert r.exit_code == 1, r.output
    assert "hf-hub:timm/convnext_atto.d2_in1k: not in the Hugging Face cache" in r.output
    assert "HF_HUB_OFFLINE=1" in r.output and "Traceback" not in r.output and "internal error" not in r.output
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        composer.build(composer.load(bp), weights="hf-hub:timm/convnext_atto.d2_in1k")


@pytest.mark.parametrize("spec", ["hf-hub:", "hf-hub:convnext", "hf-hub:timm/../x", "hf-hub:a/b/c", "hf-hub:timm/x@ bad"])
def test_malformed_hub_names_are_refused(spec):
    with pytest.raises(WeightsError, match="is not a Hugging Face Hub name"):
        parse(spec)


def test_names_and_architectures():
    assert parse("hf-hub:timm/convnext_tiny.fb_in1k") == ("timm/convnext_tiny.fb_in1k", None)
    assert parse("hf-hub:timm/resnet18.a1_in1k@main") == ("timm/resnet18.a1_in1k", "main")
    assert architecture("hf-hub:timm/convnext_tiny.fb_in1k") == "convnext_tiny"
    assert (BLUEPRINTS / "timm" / f"{architecture('hf-hub:timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k')}.yaml").is_file()


def test_cli_build_by_hub_name_in_a_process_offline(tmp_path):
    """The real environment variables, in a fresh process: `composer build --weights hf-hub:...`."""
    name = "resnet18_small"
    cache = tmp_path / "hub"
    lay_out_cache(cache, "timm/resnet18.a1_in1k", {"model.safetensors": (DATA / f"{name}.safetensors").read_bytes()})
    out = tmp_path / "m.safetensors"
    args = ["build", str(BLUEPRINTS / "timm" / "resnet18.yaml"), "--weights", "hf-hub:timm/resnet18.a1_in1k",
            "-o", str(out), "--set", "input.size=64", "--set", "classes=10"]
    for i in range(4):
        args += ["--set", f"stages.{i}.depth=1"]
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "hf-hub:timm/resnet18.a1_in1k (timm layout)" in r.stdout
    io = load_file(DATA / f"{name}.io.safetensors")
    assert (logits(composer.load_model(out), io["input"]) - io["logits"]).abs().max().item() < 1e-4



def test_a_revision_climbing_out_of_the_cache_is_refused():
    """A revision is read as a path under the cache's refs/ folder: `..` in it is not a name."""
    for spec in ("hf-hub:timm/convnext_tiny.fb_in1k@../../x", "hf-hub:timm/convnext_tiny.fb_in1k@a/../../b",
                 "hf-hub:timm/convnext_tiny.fb_in1k@.."):
        with pytest.raises(WeightsError, match="is not a Hugging Face Hub name"):
            parse(spec)
    assert parse("hf-hub:timm/convnext_tiny.fb_in1k@v1.0") == ("timm/convnext_tiny.fb_in1k", "v1.0")


def test_an_unreachable_hub_is_asked_once_and_said_so(tmp_path, monkeypatch):
    """Online but without a connection: the first file name's failed connection is the only one; the
    other names are looked up in the cache alone, and the message says the Hub was not reached."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    calls = []

    def download(repo, filename, revision=None, local_files_only=False):
        calls.append((filename, local_files_only))
        raise LocalEntryNotFoundError("cannot reach the Hub and the file is not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(WeightsError, match="the Hub could not be reached"):
        resolve("hf-hub:timm/convnext_atto.d2_in1k")
    assert calls == [("model.safetensors", False), ("pytorch_model.bin", True)]
