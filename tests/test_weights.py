"""Pretrained weights: timm checkpoints reproduce timm's logits in blueprints/timm, fine-tuning at
another size and class count keeps what fits, saved models round-trip, bad files are refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.weights import WeightsError, load_weights

from .conftest import BLUEPRINTS, ROOT, shared_reference, timm_logits_error
from .test_hybrids_metaformer import CASES as HYBRID_CASES

DATA = ROOT / "tests" / "data" / "timm"
INDEX = json.loads((DATA / "index.json").read_text())
runner = CliRunner()

ONE_BLOCK = {f"stages.{i}.depth": 1 for i in range(4)}
NARROW = {"stages.0.channels": 32, "stages.1.channels": 64, "stages.2.channels": 96, "stages.3.channels": 128}

# index.json's small checkpoints as `--set` overrides of the shipped blueprints (the depths and
# widths index.json gives; every other option is the shipped blueprint's)
CASES = {
    "resnet18_small": ("resnet18", ONE_BLOCK),
    "seresnet50_small": ("seresnet50", ONE_BLOCK),
    "mobilenetv2_050": ("mobilenetv2_050", {}),
    "efficientnet_b0": ("efficientnet_b0", {}),
    "tf_efficientnet_b0": ("tf_efficientnet_b0", {}),
    "tf_mobilenetv2_100": ("tf_mobilenetv2_100", {}),
    "convnext_atto": ("convnext_atto", {}),
    "vit_tiny_small": ("vit_tiny_patch16_224", {"stages.0.depth": 2}),
    "convit_tiny_small": ("convit_tiny", {"stages.0.depth": 2, "stages.1.depth": 1}),
    "coatnet_0_rw_small": ("coatnet_0_rw_224", {**ONE_BLOCK, **NARROW, "stem.channels": [16, 32]}),
    "coatnet_nano_rw_small": ("coatnet_nano_rw_224", {**ONE_BLOCK, **NARROW, "stem.channels": [16, 32]}),
    "coatnet_0_small": ("coatnet_0_224", {**ONE_BLOCK, **NARROW, "stem.channels": [32, 32], "head.hidden": 128}),
}
TIMM_BLUEPRINTS = ["resnet18", "resnet50", "seresnet50", "mobilenetv2_100", "mobilenetv2_050", "efficientnet_b0",
                   "tf_efficientnet_b0", "tf_mobilenetv2_100",
                   "convnext_atto", "convnext_tiny", "convnext_small", "vit_tiny_patch16_224",
                   "vit_small_patch16_224", "vit_base_patch16_224", "convit_tiny", "convit_small",
                   "coatnet_nano_rw_224", "coatnet_0_rw_224", "coatnet_1_rw_224", "coatnet_0_224",
                   "swin_tiny_patch4_window7_224", "pvt_v2_b0", "maxvit_tiny_tf_224"]
# their small checkpoints are matched in tests/test_hybrids_attention.py
HYBRID_CHECKPOINTS = {"swin_tiny_small", "pvt_v2_b0_small", "maxvit_tiny_small"}
# the MetaFormers and ConvNeXt V2, with their small checkpoints, are tested in test_hybrids_metaformer
TIMM_BLUEPRINTS += sorted({blueprint for blueprint, _ in HYBRID_CASES.values()})


def small(name: str, **more) -> composer.Blueprint:
    blueprint, sets = CASES[name]
    size = INDEX[name]["input"][-1]
    return composer.load(BLUEPRINTS / "timm" / f"{blueprint}.yaml",
                         overrides={**sets, "input.size": size, "classes": INDEX[name]["classes"], **more})


def logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(x)


def test_copy_matches_shared():
    """Every checkpoint of the shared reference is here, byte for byte (the tf_ ones, made by
    bench/make_timm_reference.py, are here only); index.json describes at least the shared ones."""
    shared = shared_reference("timm")
    theirs = sorted(p.name for p in shared.iterdir() if p.name != "index.json")
    assert set(theirs) <= {p.name for p in DATA.iterdir()}
    for name in theirs:
        assert (DATA / name).read_bytes() == (shared / name).read_bytes(), name
    shared_index = json.loads((shared / "index.json").read_text())
    assert {k: INDEX[k] for k in shared_index} == shared_index


def test_every_timm_blueprint_is_shipped():
    assert sorted(p.stem for p in (BLUEPRINTS / "timm").glob("*.yaml")) == sorted(TIMM_BLUEPRINTS)
    assert set(CASES) | HYBRID_CHECKPOINTS | set(HYBRID_CASES) == {k for k in INDEX if not k.startswith("_")}


@pytest.mark.parametrize("name", sorted(CASES))
def test_timm_checkpoint_reproduces_timm_logits(name):
    """Parameters as timm counts them, every tensor used, and timm's logits: within 1e-5 of the largest
    logit. mobilenetv2_050 amplifies rounding: its reference is 2.3e-5 from the float64 result (logits up
    to 17), and a 1e-7 relative change of its input moves the logits by 3e-5."""
    assert timm_logits_error(small(name), name) <= 1e-5


def test_cli_build_with_timm_weights_saves_a_model_that_loads_alike(tmp_path):
    name = "coatnet_0_rw_small"
    sets = [f"{k}={json.dumps(v)}" for k, v in {**CASES[name][1], "input.size": 64, "classes": 10}.items()]
    out = tmp_path / "m.safetensors"
    args = ["build", str(BLUEPRINTS / "timm" / "coatnet_0_rw_224.yaml"), "--weights", str(DATA / f"{name}.safetensors"),
            "--from", "timm", "-o", str(out)]
    for s in sets:
        args += ["--set", s]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "(timm layout): 84 tensors loaded" in r.stdout
    io = load_file(DATA / f"{name}.io.safetensors")
    net = composer.load_model(out)
    assert (logits(net, io["input"]) - io["logits"]).abs().max().item() < 1e-5
    # a saved composer model is itself a checkpoint in composer's layout
    again = composer.build(small(name), weights=out)
    assert again.weights_report.layout == "composer"
    assert torch.equal(logits(again, io["input"]), logits(net, io["input"]))


@pytest.mark.parametrize("suffix", ["pt", "safetensors"])
def test_save_and_load_model_round_trip(tmp_path, suffix):
    bp = small("vit_tiny_small")
    net = composer.build(bp, seed=3)
    composer.save(net, bp, tmp_path / f"m.{suffix}")
    loaded = composer.load_model(tmp_path / f"m.{suffix}")
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(logits(net, x), logits(loaded, x))


def test_fine_tune_vit_at_another_size_and_class_count():
    name = "vit_tiny_small"
    ckpt = load_file(DATA / f"{name}.safetensors")
    net = composer.build(small(name, **{"input.size": 96, "classes": 5}), weights=DATA / f"{name}.safetensors")
    report = net.weights_report
    assert [k for k, _, _ in report.resized] == ["stages.0.pos_embed"]
    assert [k for k, _, _ in report.reinitialised] == ["head.fc.weight", "head.fc.bias"]
    assert len(report.loaded) == INDEX[name]["tensors"] - 2 and not report.initialised
    pos = net.stages[0].pos_embed
    assert pos.shape == (1, 1 + 6 * 6, 192)
    assert torch.equal(pos[:, :1], ckpt["pos_embed"][:, :1].float())  # the class token's position is kept
    assert torch.equal(net.stages[0].blocks[1].attn.qkv.weight, ckpt["blocks.1.attn.qkv.weight"].float())
    assert logits(net, torch.randn(2, 3, 96, 96)).shape == (2, 5)
    assert "re-initialised head.fc.weight" in report.summary()


def test_fine_tune_coatnet_resizes_relative_tables():
    name = "coatnet_0_rw_small"
    net = composer.build(small(name, **{"input.size": 96, "classes": 5}), weights=DATA / f"{name}.safetensors")
    report = net.weights_report
    assert {k: (a, b) for k, a, b in report.resized} == {
        "stages.2.blocks.0.attn.relative.table": ((2, 49), (2, 121)),
        "stages.3.blocks.0.attn.relative.table": ((3, 9), (3, 25))}
    assert len(report.loaded) == INDEX[name]["tensors"] - 2
    assert logits(net, torch.randn(1, 3, 96, 96)).shape == (1, 5)


def test_resizing_to_the_same_grid_changes_nothing():
    from composer.weights.loading import resize_pos_embed, resize_relative_table

    pos = torch.randn(1, 1 + 16, 8)
    assert torch.allclose(resize_pos_embed(pos, 1, (4, 4)), pos, atol=1e-6)
    table = torch.randn(3, 49)
    assert torch.allclose(resize_relative_table(table, (4, 4)), table, atol=1e-6)


def test_partial_load_reports_what_it_left():
    bp = small("coatnet_0_rw_small", **{"stages.3.channels": 160})
    with pytest.raises(WeightsError, match=r"stages.3.blocks.0.attn.proj.weight is 160x96 in the blueprint, 128x96"):
        composer.build(bp, weights=DATA / "coatnet_0_rw_small.safetensors")
    net = composer.build(bp, weights=DATA / "coatnet_0_rw_small.safetensors", strict=False)
    skipped = {k for k, _, _ in net.weights_report.mismatched}
    assert "stages.3.blocks.0.attn.proj.weight" in skipped and "stages.2.blocks.0.attn.proj.weight" not in skipped
    assert "stem.conv1.weight" in net.weights_report.loaded


# --- bad files: one line saying what is wrong with which file, exit 1, no traceback ---------------


def _build_cli(weights, *extra):
    bp = str(BLUEPRINTS / "timm" / "resnet18.yaml")
    return runner.invoke(app, ["build", bp, "--set", "input.size=32", "--set", "classes=10",
                               *ONE_BLOCK_SETS, "--weights", str(weights), *extra])


ONE_BLOCK_SETS = [a for i in range(4) for a in ("--set", f"stages.{i}.depth=1")]


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def _bad_files(tmp_path):
    good = (DATA / "resnet18_small.safetensors").read_bytes()
    files = {
        "empty.safetensors": (b"", "the file is empty"),
        "truncated.safetensors": (good[: len(good) // 2], "not a readable safetensors file"),
        "text.pt": (b"hello, I am not a checkpoint\n", "neither a safetensors file nor a torch checkpoint"),
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"w": _RunsCode()}))
    files["evil.pt"] = (None, "refused: the pickle would construct objects other than tensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "full.pt")
    truncated = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(truncated[: len(truncated) // 2])
    files["cut.pt"] = (None, "not a readable torch checkpoint")
    save_file({"foo.weight": torch.zeros(3)}, tmp_path / "foreign.safetensors")
    files["foreign.safetensors"] = (None, "none of its tensors has a name of this blueprint's tensors")
    files["vit.safetensors"] = (None, None)
    (tmp_path / "vit.safetensors").write_bytes((DATA / "vit_tiny_small.safetensors").read_bytes())
    return files


def test_bad_checkpoints_give_one_clear_error_and_exit_1(tmp_path, capsys):
    for name, (_, message) in _bad_files(tmp_path).items():
        r = _build_cli(tmp_path / name)
        assert r.exit_code == 1, (name, r.output)
        assert "Traceback" not in r.output and "internal error" not in r.output, r.output
        assert name in r.output
        if message:
            assert message in r.output, (name, r.output)
    assert "this ran" not in capsys.readouterr().out


def test_mismatched_checkpoint_names_tensors_and_shapes(tmp_path):
    r = _build_cli(DATA / "seresnet50_small.safetensors", "--from", "timm")
    assert r.exit_code == 1
    assert "stages.0.blocks.0.branch.conv1.weight is 64x64x3x3 in the blueprint, 64x64x1x1 in the checkpoint" in r.output
    assert "fit nothing in the blueprint: layer1.0.bn3.bias" in r.output


def _payload(tmp_path, **changes):
    bp = small("resnet18_small", **{"input.size": 32})
    net = composer.build(bp)
    composer.save(net, bp, tmp_path / "m.pt")
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    payload.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del payload[key]
    torch.save(payload, tmp_path / "changed.pt")
    return tmp_path / "changed.pt"


@pytest.mark.parametrize("changes, message", [
    ({"format": None}, "is not a composer model: it has no `format` entry"),
    ({"format": "composer/9"}, "has format `composer/9`"),
    ({"blueprint": "x: [" * 10}, "blueprint"),
    ({"blueprint": "# " + "x" * 1_000_001}, "embedded blueprint is larger than 1,000,000 bytes"),
    ({"state_dict": {"stem.conv1.weight": torch.zeros(1)}}, "stem.conv1.weight is 64x3x7x7 in the blueprint, 1 in the"),
])
def test_load_model_refuses_broken_saved_models(tmp_path, changes, message):
    with pytest.raises(composer.BlueprintError, match="changed.pt") as info:
        composer.load_model(_payload(tmp_path, **changes))
    assert message in str(info.value)


def test_load_model_ignores_unknown_entries(tmp_path):
    assert isinstance(composer.load_model(_payload(tmp_path, optimizer={"lr": torch.tensor(0.1)})),
                      composer.ComposedNet)


def test_load_model_checks_memory_before_reading_tensors(tmp_path, monkeypatch):
    import composer.network.guard
    import composer.weights.read

    bp = small("resnet18_small", **{"input.size": 32})
    composer.save(composer.build(bp), bp, tmp_path / "m.safetensors")
    monkeypatch.setattr(composer.network.guard, "memory_room", lambda: (1000, "free memory"))
    monkeypatch.setattr(composer.weights.read, "read_safetensors", lambda p: pytest.fail("tensors read first"))
    with pytest.raises(composer.BlueprintError, match="more than the"):
        composer.load_model(tmp_path / "m.safetensors")


def test_state_dict_with_other_names_layout_forced():
    net = composer.build(small("resnet18_small"))
    plan = composer.plan(small("resnet18_small"))
    timm = load_file(DATA / "resnet18_small.safetensors")
    with pytest.raises(WeightsError, match="not in the checkpoint"):
        load_weights(net, plan, timm, layout="composer")
    assert load_weights(net, plan, timm, layout="timm").layout == "timm"


# --- transplant: parts of one architecture into another -------------------------------------------

HYBRID = """\
name: hybrid
input: {channels: 3, size: 64}
classes: 10
stem: {type: patch, channels: 40, patch: 4, norm: layernorm}
layout: C-C-T-T
blocks:
  C: {type: convnext, kernel: 7, mlp_ratio: 4, layer_scale: 1e-6}
  T: {type: transformer, attention: {type: relative, head_dim: 32}, norm_eps: 1e-6}
stages:
  - {depth: 2, channels: 40}
  - {depth: 2, channels: 80, stride: 2, transition: {type: conv, kernel: 2, norm: before}}
  - {depth: 1, channels: 160, stride: 2}
  - {depth: 1, channels: 320, stride: 2}
head: {type: pool, norm: layernorm, norm_eps: 1e-6}
"""


def _convnext_atto():
    return composer.load(BLUEPRINTS / "timm" / "convnext_atto.yaml", overrides={"input.size": 64, "classes": 10})


def _first_stages(net, x):
    net.eval()
    with torch.no_grad():
        return net.stages[:2](net.stem(x))


def test_transplant_convnext_stem_and_stages_into_a_hybrid(write):
    ckpt = DATA / "convnext_atto.safetensors"
    hybrid = composer.build(composer.loads(HYBRID), weights=ckpt, parts=["stem", 0, 1],
                            weights_blueprint=_convnext_atto())
    report = hybrid.weights_report
    assert report.parts == {"stem": (4, 4), "0": (18, 18), "1": (22, 22)}
    donor = composer.build(_convnext_atto(), weights=ckpt)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_first_stages(hybrid, x), _first_stages(donor, x))
    fresh = composer.build(composer.loads(HYBRID))
    assert torch.equal(hybrid.stages[2].blocks[0].attn.qkv.weight, fresh.stages[2].blocks[0].attn.qkv.weight)
    assert "stage 1 (22/22 matched)" in report.summary()


def test_transplant_spelled_in_the_blueprint_and_on_the_command_line(tmp_path):
    (tmp_path / "donor.safetensors").write_bytes((DATA / "convnext_atto.safetensors").read_bytes())
    (tmp_path / "donor.yaml").write_text((BLUEPRINTS / "timm" / "convnext_atto.yaml").read_text())
    text = HYBRID + "pretrained:\n  - {checkpoint: donor.safetensors, blueprint: donor.yaml, parts: [stem, 0, 1]}\n"
    (tmp_path / "hybrid.yaml").write_text(text)
    from_blueprint = composer.build(tmp_path / "hybrid.yaml")
    assert from_blueprint.pretrained_reports[0].parts["1"] == (22, 22)
    r = runner.invoke(app, ["build", str(tmp_path / "hybrid.yaml")])
    assert r.exit_code == 0 and "stage 1 (22/22 matched)" in r.stdout, r.output
    (tmp_path / "plain.yaml").write_text(HYBRID)
    r = runner.invoke(app, ["build", str(tmp_path / "plain.yaml"), "--weights", str(tmp_path / "donor.safetensors"),
                            "--parts", "stem,0,1", "--weights-blueprint", str(tmp_path / "donor.yaml"),
                            "-o", str(tmp_path / "h.pt")])
    assert r.exit_code == 0, r.output
    x = torch.randn(1, 3, 64, 64)
    assert torch.equal(_first_stages(composer.load_model(tmp_path / "h.pt"), x), _first_stages(from_blueprint, x))


def test_transplant_mistakes_are_located(tmp_path):
    (tmp_path / "bad.yaml").write_text(HYBRID + "pretrained:\n  - {checkpoint: nowhere.safetensors, parts: [stem]}\n")
    with pytest.raises(composer.BlueprintError, match=r"bad.yaml:\d+:\d+: pretrained\[0\].checkpoint: no such file"):
        composer.build(tmp_path / "bad.yaml")
    r = runner.invoke(app, ["build", str(BLUEPRINTS / "timm" / "resnet18.yaml"), "--weights",
                            str(DATA / "convnext_atto.safetensors"), "--parts", "stem,7"])
    assert r.exit_code == 1 and "stage 7 does not exist" in r.output
    r = runner.invoke(app, ["build", str(tmp_path / "bad.yaml").replace("bad", "x"), "--parts", "stem"])
    assert r.exit_code == 1
    r = runner.invoke(app, ["build", str(BLUEPRINTS / "timm" / "resnet18.yaml"), "--weights",
                            str(DATA / "resnet18_small.safetensors"), "--parts", "stem,0"])
    assert r.exit_code == 1 and "give the blueprint of its architecture" in r.output


def test_load_model_refuses_bad_files(tmp_path):
    for name, (_, message) in _bad_files(tmp_path).items():
        with pytest.raises(composer.BlueprintError) as info:
            composer.load_model(tmp_path / name)
        assert name in str(info.value)
        if message and "name of this blueprint" not in message:
            assert message in str(info.value), name
    with pytest.raises(composer.WeightsError, match="no `format` entry"):
        composer.load_model(tmp_path / "foreign.safetensors")


def test_pickled_training_checkpoints_load(tmp_path):
    state = load_file(DATA / "resnet18_small.safetensors")
    torch.save({"state_dict": state, "optimizer": {"lr": 0.1}, "epoch": 3}, tmp_path / "train.pth")
    net = composer.build(small("resnet18_small"), weights=tmp_path / "train.pth")
    io = load_file(DATA / "resnet18_small.io.safetensors")
    assert (logits(net, io["input"]) - io["logits"]).abs().max().item() < 1e-5


@pytest.mark.parametrize("name", ["coatnet_nano_rw_224", "coatnet_0_rw_224", "coatnet_1_rw_224", "coatnet_0_224"])
def test_timm_coatnet_options_have_exact_analytic_costs(name):
    """The options timm's CoAtNets need (stride by pooling, SE placement and base, biases, attention
    width, map norm) are counted by the analytic cost as the trace counts them."""
    plan = composer.plan(composer.load(BLUEPRINTS / "timm" / f"{name}.yaml", overrides={"input.size": 64}))
    result = composer.check(plan)
    assert result.ok, [p for p in result.parts if not p.ok]


def test_fine_tune_at_a_non_square_size():
    name = "vit_tiny_small"
    net = composer.build(small(name, **{"input.size": [64, 96]}), weights=DATA / f"{name}.safetensors")
    assert net.weights_report.resized == [("stages.0.pos_embed", (1, 17, 192), (1, 1 + 4 * 6, 192))]
    assert logits(net, torch.randn(1, 3, 64, 96)).shape == (1, 10)
    name = "coatnet_0_rw_small"
    net = composer.build(small(name, **{"input.size": [64, 96]}), weights=DATA / f"{name}.safetensors")
    assert ("stages.3.blocks.0.attn.relative.table", (3, 9), (3, 15)) in net.weights_report.resized


def test_a_feature_extractor_loads_a_classifier_checkpoint():
    name = "vit_tiny_small"
    net = composer.build(small(name, classes=0), weights=DATA / f"{name}.safetensors")
    assert net.weights_report.ignored == ["head.bias", "head.weight"]
    assert len(net.weights_report.loaded) == INDEX[name]["tensors"] - 2
    assert logits(net, torch.randn(1, 3, 64, 64)).shape == (1, 192)


def test_a_torch_file_named_safetensors_and_bad_arguments(tmp_path):
    """torch.load hands a name ending in .safetensors to safetensors; composer reads by content."""
    bp = small("resnet18_small", **{"input.size": 32})
    net = composer.build(bp)
    composer.save(net, bp, tmp_path / "m.pt")
    (tmp_path / "m.pt").rename(tmp_path / "m.safetensors")
    loaded = composer.load_model(tmp_path / "m.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), net.state_dict().values()))
    for bad in (None, 123, b"m.pt"):
        with pytest.raises(composer.BlueprintError, match="must be a string or a path"):
            composer.load_model(bad)
