"""Export (ONNX through onnxruntime, torch.export), compile-cleanness, feature maps and the input-size guard.

Every blueprint is exercised at 64x64 with each stage cut to at most 2 blocks: the first block of a
stage (stride, width change, class token) and a plain one, so every code path of the full network
runs at a fraction of the export time. Weights and norm statistics are perturbed away from their
initial values (zero-initialised gammas and tables would make outputs trivially equal).
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch._inductor.config
import yaml
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.export import ExportError, export_onnx, export_program

from .conftest import BLUEPRINTS, ROOT

ALL = sorted(p.stem for p in BLUEPRINTS.glob("*.yaml"))
runner = CliRunner()
ort = pytest.importorskip("onnxruntime", reason="needs the `export` extra: pip install -e '.[export]'")


def small(name: str, sets: dict | None = None) -> composer.Blueprint:
    """The blueprint at 64x64 without a classifier (pooled or class-token features), each stage at
    most 2 blocks deep and a quarter as wide (heads and head widths still divide every width)."""
    data = yaml.safe_load((BLUEPRINTS / f"{name}.yaml").read_text())
    overrides = {"input.size": 64, "classes": 0}
    stem = data["stem"].get("channels")
    if stem:
        overrides["stem.channels"] = [c // 4 for c in stem] if isinstance(stem, list) else stem // 4
    for i, s in enumerate(data["stages"]):
        overrides[f"stages.{i}.depth"] = min(2, s["depth"])
        overrides[f"stages.{i}.channels"] = s["channels"] // 4
    return composer.load(BLUEPRINTS / f"{name}.yaml", overrides={**overrides, **(sets or {})})


@torch.no_grad()
def perturbed(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(1)
    for p in net.parameters():
        p.add_(0.02 * torch.randn(p.shape, generator=g))
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
    return net.eval()


def run_onnx(path, x: torch.Tensor) -> list[torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [torch.from_numpy(y) for y in session.run(None, {session.get_inputs()[0].name: x.numpy()})]


@pytest.mark.parametrize("name", ALL)
def test_every_blueprint_exports_to_onnx_and_matches_onnxruntime(name, tmp_path):
    net = perturbed(composer.build(small(name)))
    report = export_onnx(net, tmp_path / "net.onnx")
    assert report.max_abs_diff <= 1e-4 and report.input_shape == (1, 3, 64, 64)
    x = torch.randn(1, 3, 64, 64)  # not the input the export checked itself on
    (got,) = run_onnx(tmp_path / "net.onnx", x)
    with torch.no_grad():
        want = net(x)
    assert want.abs().max() > 0.1  # a real signal, not zeros
    assert (got - want).abs().max() <= 1e-4


def test_the_basic_block_exports_too(tmp_path):
    """The one block family no shipped blueprint uses (ResNet-18/34's)."""
    net = perturbed(composer.build(small("resnet50", {"blocks.B": {"type": "basic"}, "stages.0.channels": 16,
                                                      "stages.1.channels": 32, "stages.2.channels": 64,
                                                      "stages.3.channels": 128})))
    assert export_onnx(net, tmp_path / "net.onnx").max_abs_diff <= 1e-4


@pytest.mark.parametrize("name", ["coatnet0", "cvt13"])
def test_torch_export_round_trips_with_a_dynamic_batch(name, tmp_path):
    net = perturbed(composer.build(small(name)))
    report = export_program(net, tmp_path / "net.pt2", dynamic_batch=True)
    assert report.max_abs_diff <= 1e-4
    program = torch.export.load(tmp_path / "net.pt2").module()
    x = torch.randn(5, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(program(x), net(x), atol=1e-5)


def test_onnx_dynamic_batch(tmp_path):
    net = perturbed(composer.build(small("convit_tiny")))
    export_onnx(net, tmp_path / "net.onnx", dynamic_batch=True)
    x = torch.randn(3, 3, 64, 64)
    (got,) = run_onnx(tmp_path / "net.onnx", x)
    with torch.no_grad():
        assert (got - net(x)).abs().max() <= 1e-4


def test_a_mismatch_beyond_tolerance_writes_nothing(tmp_path):
    net = composer.build(small("resnet50"))
    with pytest.raises(ExportError, match="more than the tolerance"):
        export_onnx(net, tmp_path / "net.onnx", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def untraceable_block():
    """A plugin block whose Python branch on a tensor's value no exporter can trace."""
    from typing import Literal

    from pydantic import Field

    from composer.blocks import BLOCKS, BlockConfig, register_block

    @register_block
    class BranchyConfig(BlockConfig):
        can_downsample = False
        can_change_width = False
        type: Literal["branchy"] = Field("branchy", description="Block family: data-dependent branch (test plugin).")

        def build(self, ctx):
            class Branchy(torch.nn.Module):
                def forward(self, x):
                    return x * 2 if x.sum().item() > 0 else x

            return Branchy()

    yield
    BLOCKS.unregister("branchy")


def test_an_unexportable_block_is_named(untraceable_block, write, tmp_path):
    path = write("""\
layout: C-X
input: {size: 32}
classes: 10
stem: {type: conv, channels: [8], stride: 2}
blocks: {C: {type: mbconv}, X: {type: branchy}}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 1, channels: 16}
""")
    r = runner.invoke(app, ["export", str(path), "--format", "export", "-o", str(tmp_path / "x.pt2")])
    assert r.exit_code == 1
    assert "torch.export cannot export `stages.1.blocks.0` (Branchy):" in r.output
    assert not (tmp_path / "x.pt2").exists()


def test_cli_exports_what_build_builds_and_a_saved_model(tiny_text, write, tmp_path):
    bp_path = write(tiny_text)
    r = runner.invoke(app, ["export", str(bp_path), "--seed", "3", "-o", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0, r.output
    assert "max abs difference" in r.output and "wrote" in r.output
    x = torch.randn(2, 3, 32, 32)
    net = composer.build(composer.load(bp_path), seed=3).eval()
    with torch.no_grad():
        want = net(x)
    (got,) = run_onnx(tmp_path / "a.onnx", x[:1])
    assert torch.allclose(got, want[:1], atol=1e-5)

    saved = perturbed(net)  # weights that differ from any freshly built network
    composer.save(saved, composer.load(bp_path), tmp_path / "m.pt")
    r = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--dynamic-batch", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    with torch.no_grad():
        want = saved(x)
    (got,) = run_onnx(tmp_path / "m.onnx", x)
    assert (got - want).abs().max() <= 1e-4
    with torch.no_grad():
        assert not torch.allclose(want, composer.build(composer.load(bp_path), seed=3).eval()(x), atol=1e-3)


def test_cli_refuses_a_size_a_saved_token_network_cannot_take(tiny_text, write, tmp_path):
    bp = composer.load(write(tiny_text))
    composer.save(composer.build(bp), bp, tmp_path / "m.pt")
    r = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "--size", "64", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 1
    assert "built for 32x32 inputs and cannot take 64x64: stage 2 (transformer relative h4)" in r.output
    assert "exporting" not in r.output and not (tmp_path / "m.onnx").exists()
    r = runner.invoke(app, ["export", str(tmp_path / "missing.pt")])
    assert r.exit_code == 1 and "no such file" in r.output


def test_importing_composer_does_not_import_the_export_extra():
    code = "import sys, composer; print(sorted(m for m in ('onnx', 'onnxscript', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_extra_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(ExportError, match=r"needs onnxscript: pip install -e '\.\[export\]' in composer's clone"):
        export_onnx(composer.build(small("resnet50")), tmp_path / "net.onnx")


# -- the input-size guard --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fixed", [("vit_b16", True), ("coatnet0", True), ("cvt13", True),
                                        ("resnet50", False), ("convnext_tiny", False)])
def test_a_size_the_network_cannot_take_is_refused_before_any_work(name, fixed):
    net = composer.build(small(name)).eval()
    x = torch.randn(1, 3, 96, 96)
    if fixed:
        with pytest.raises(composer.InputSizeError, match=r"built for 64x64 inputs and cannot take 96x96: stage \d \(transformer"):
            net(x)
    else:
        assert net(x).shape == (1, net.head_hidden_size)
    with pytest.raises(composer.InputSizeError, match=r"expected an input of shape \(batch, 3, height, width\)"):
        net(torch.randn(1, 4, 64, 64))


# -- compile-clean ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_every_blueprint_compiles_without_graph_breaks(name):
    """Dynamo captures the whole forward as one graph (fullgraph=True); the eager backend runs the
    captured graph, so this checks traceability without inductor's code generation."""
    net = perturbed(composer.build(small(name)))
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True, backend="eager")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(compiled(x), net(x), atol=1e-5)


def test_inductor_matches_eager_on_a_tiny_hybrid_in_channels_last(tiny_text):
    """Real code generation (CPU inductor) on a conv + relative-attention network, channels_last
    (the recommended memory format for conv stages), against eager in the default format."""
    net = perturbed(composer.build(composer.loads(tiny_text)))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = net(x)
    net = net.to(memory_format=torch.channels_last)
    torch._dynamo.reset()
    compiled = torch.compile(net, fullgraph=True)
    # in-process code generation: no pool of compile workers left running after the test
    with torch._inductor.config.patch(compile_threads=1), torch.no_grad():
        assert torch.allclose(compiled(x.to(memory_format=torch.channels_last)), want, atol=1e-4)


# -- features --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_feature_maps_have_the_documented_shapes(name):
    p = composer.plan(small(name))
    backbone = composer.build(p, features_only=True)
    maps = backbone(torch.randn(2, 3, 64, 64))
    assert len(maps) == len(backbone.feature_info) >= 2
    for m, info in zip(maps, backbone.feature_info):
        side = math.ceil(64 / info["reduction"])
        assert m.shape == (2, info["num_chs"], side, side)
    # the last level is the network's last map, at its final width and resolution
    assert maps[-1].shape[1:] == (p.stages[-1].out_channels, *p.stages[-1].out_resolution)


@pytest.mark.parametrize("name,levels,modules", [
    # stem (reduction 2) and 4 stages
    ("coatnet0", [(16, 2), (24, 4), (48, 8), (96, 16), (192, 32)], ["stem", "stages.0", "stages.1", "stages.2", "stages.3"]),
    # the stem's activation before its max-pool, then 4 stages
    ("resnet50", [(16, 2), (64, 4), (128, 8), (256, 16), (512, 32)], ["stem.act1", "stages.0", "stages.1", "stages.2", "stages.3"]),
    # the last stage at each resolution (stages 3 and 5 share theirs with the stage after)
    ("efficientnet_b0", [(4, 2), (6, 4), (10, 8), (28, 16), (80, 32)], ["stages.0", "stages.1", "stages.2", "stages.4", "stages.6"]),
    # one resolution throughout: one level per block
    ("vit_b16", [(192, 16)] * 2, ["stages.0.blocks.0", "stages.0.blocks.1"]),
    ("convnext_tiny", [(24, 4), (48, 8), (96, 16), (192, 32)], ["stages.0", "stages.1", "stages.2", "stages.3"]),
    ("cvt13", [(16, 4), (48, 8), (96, 16)], ["stages.0", "stages.1", "stages.2"]),
])
def test_feature_levels_are_the_last_map_at_each_resolution(name, levels, modules):
    info = composer.build(small(name), device="meta").feature_info
    assert list(zip(info.channels(), info.reduction())) == levels and info.module_name() == modules
    net = dict(composer.build(small(name)).named_modules())
    assert all(m in net for m in modules)  # each names the module its map comes out of


def test_out_indices_and_weights_shared_with_the_full_network():
    net = perturbed(composer.build(small("coatnet0")))
    backbone = composer.build(small("coatnet0"), features_only=True, out_indices=(2, -1))
    assert backbone.feature_info.channels() == [48, 192] and backbone.feature_info.reduction() == [8, 32]
    assert backbone.feature_info.module_name() == ["stages.1", "stages.3"]
    missing, unexpected = backbone.load_state_dict(net.state_dict(), strict=False)
    assert missing == [] and unexpected and all(k.startswith("head.") for k in unexpected)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        c4, c5 = backbone.eval()(x)
        _, maps = net.forward_intermediates(x)
    assert torch.equal(c4, maps[2]) and torch.equal(c5, maps[4])
    with pytest.raises(ValueError, match="index 5 is out of range"):
        composer.build(small("coatnet0"), features_only=True, out_indices=(5,))
    head_less = composer.build(small("coatnet0"), features_only=True, out_indices=(1,))
    assert len(head_less.stages) == 1  # later stages are not kept
    stem_only = composer.build(small("resnet50"), features_only=True, out_indices=(0,))
    assert len(stem_only.stages) == 0 and stem_only(x)[0].shape == (1, 16, 32, 32)  # before the max-pool


def test_a_backbone_of_blocks_keeps_only_the_blocks_it_needs():
    net = perturbed(composer.build(small("vit_b16")))
    backbone = perturbed(composer.build(small("vit_b16"), features_only=True, out_indices=(0,)))
    assert len(backbone.stages[0].blocks) == 1
    backbone.load_state_dict(net.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        (m,) = backbone(x)
        assert torch.equal(m, net.forward_intermediates(x, [0], intermediates_only=True)[0])


def test_forward_intermediates_of_blocks_drop_class_tokens():
    net = composer.build(small("cvt13")).eval()  # class token in the last stage
    x = torch.randn(2, 3, 64, 64)
    final, maps = net.forward_intermediates(x, blocks=True)
    assert torch.equal(final, net.forward_features(x))
    assert [tuple(m.shape) for m in maps] == [(2, 16, 16, 16), (2, 48, 8, 8), (2, 48, 8, 8),
                                              (2, 96, 4, 4), (2, 96, 4, 4)]
    tokens = net.forward_features(x)  # (B, 1 + 16, C): the class token first
    assert torch.equal(maps[-1].flatten(2).transpose(1, 2), tokens[:, 1:])
    early = net.forward_intermediates(x, [1], blocks=True, stop_early=True, intermediates_only=True)
    assert len(early) == 1 and torch.equal(early[0], maps[1])
    assert len(net.forward_intermediates(x, 2, intermediates_only=True)) == 2  # the last two levels


def test_a_backbone_exports_its_feature_maps_to_onnx(tmp_path):
    backbone = perturbed(composer.build(small("coatnet0"), features_only=True, out_indices=(2, 3, 4)))
    report = export_onnx(backbone, tmp_path / "backbone.onnx")
    assert report.max_abs_diff <= 1e-4
    outs = run_onnx(tmp_path / "backbone.onnx", torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 8, 8), (1, 96, 4, 4), (1, 192, 2, 2)]


def test_cli_exports_a_model_saved_as_safetensors_and_checks_its_options_first(tiny_text, write, tmp_path):
    bp = composer.load(write(tiny_text))
    net = perturbed(composer.build(bp))
    composer.save(net, bp, tmp_path / "m.safetensors")
    r = runner.invoke(app, ["export", str(tmp_path / "m.safetensors"), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (run_onnx(tmp_path / "m.onnx", x)[0] - net.eval()(x)).abs().max() <= 1e-4
    for args, message in [(["-o", str(tmp_path / "m.txt")], "writes a .onnx file"),
                          (["--format", "export", "-o", str(tmp_path / "m.onnx")], "writes a .pt2 file"),
                          (["--tolerance", "nan", "-o", str(tmp_path / "n.onnx")], "expected a finite number"),
                          (["--tolerance", "-1", "-o", str(tmp_path / "n.onnx")], "expected a finite number")]:
        r = runner.invoke(app, ["export", str(tmp_path / "m.safetensors"), *args])
        assert r.exit_code == 1 and message in r.output and "exporting" not in r.output, r.output


# -- what the exported file says about itself ----------------------------------------------------------

CLASSES = ["cat", "dog", "10", "caf\u00e9", "=SUM(A1)", "a,b", "7", "8", "9", "zebra"]
RECIPE = {"augment": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3], "crop_pct": 0.9}}


def _checkpoint(tiny_text, write, tmp_path):
    """A model saved as a training run saves it: class names and the recipe beside the weights."""
    bp = composer.load(write(tiny_text))
    composer.save(composer.build(bp), bp, tmp_path / "best.pt", extra={"classes": CLASSES, "recipe": RECIPE})
    return tmp_path / "best.pt"


def test_onnx_metadata_names_every_class_and_the_normalisation(tiny_text, write, tmp_path):
    import json

    import onnx

    r = runner.invoke(app, ["export", str(_checkpoint(tiny_text, write, tmp_path)), "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 0, r.output
    assert "metadata: 10 class names, mean [0.5, 0.4, 0.3], std [0.2, 0.25, 0.3] (the training recipe)" in r.output
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["classes"]) == CLASSES and meta["num_classes"] == "10"
    assert json.loads(meta["mean"]) == [0.5, 0.4, 0.3] and json.loads(meta["std"]) == [0.2, 0.25, 0.3]
    assert json.loads(meta["input_size"]) == [3, 32, 32] and float(meta["crop_pct"]) == 0.9
    assert [i.name for i in model.graph.input] == ["images"] and [o.name for o in model.graph.output] == ["logits"]
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["classes"] == meta["classes"]
    (logits,) = session.run(["logits"], {"images": torch.randn(1, 3, 32, 32).numpy()})
    assert logits.shape == (1, len(CLASSES))


def test_pt2_carries_the_same_facts(tiny_text, write, tmp_path):
    import json

    r = runner.invoke(app, ["export", str(_checkpoint(tiny_text, write, tmp_path)), "-f", "export",
                            "-o", str(tmp_path / "m.pt2")])
    assert r.exit_code == 0, r.output
    extra = {"composer.json": ""}
    program = torch.export.load(tmp_path / "m.pt2", extra_files=extra)
    meta = json.loads(extra["composer.json"])
    assert json.loads(meta["classes"]) == CLASSES and json.loads(meta["std"]) == [0.2, 0.25, 0.3]
    assert [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"] == ["images"]
    assert program.module()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_a_blueprint_export_says_it_knows_no_class_names(tiny_text, write, tmp_path):
    import onnx

    r = runner.invoke(app, ["export", str(write(tiny_text)), "-o", str(tmp_path / "a.onnx")])
    assert r.exit_code == 0 and "no class names" in r.output and "(composer's default recipe)" in r.output
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "a.onnx")).metadata_props}
    assert "classes" not in meta and "does not know its class names" in meta["classes_note"]
    assert meta["mean"] == "[0.485, 0.456, 0.406]"


def test_export_sizes_are_refused_before_any_tensor_exists(tiny_text, write, tmp_path, monkeypatch):
    bp = composer.load(write(tiny_text))
    composer.save(composer.build(bp), bp, tmp_path / "m.pt")
    calls = []
    monkeypatch.setattr(torch, "randn", lambda *a, **k: calls.append(a))  # no example input may be made
    for args, expected in ((["--size", "100000"], "<command line>: input.size"),
                           (["--size", "3000"], "export at a smaller `--size`")):
        r = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "m.onnx"), *args])
        assert r.exit_code == 1 and expected in r.output and "Traceback" not in r.output, r.output
    assert calls == [] and not (tmp_path / "m.onnx").exists()
