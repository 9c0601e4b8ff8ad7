"""Checkpoints in Hugging Face transformers' layout load into the matching blueprints and reproduce
transformers' logits.

Each test builds a small transformers model from a config object (random weights, BatchNorm running
statistics randomised, seed 0), takes its state dict, loads it into the shipped blueprint narrowed
with `--set`-style overrides, and compares logits in eval mode: within 1e-5 of the largest logit.
transformers is a test-only dependency (the `test` extra); nothing downloads.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

import composer
from cli.app import app

from .conftest import BLUEPRINTS

transformers = pytest.importorskip("transformers", reason="transformers (the `test` extra) is not installed")

runner = CliRunner()


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(1))


def _randomised(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode, with BatchNorm running statistics far from their initial 0 and 1."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.bias.shape, generator=g) - 0.5)
    return model.eval()


def _model(cls_name: str, config_name: str, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(**config)
    return _randomised(getattr(transformers, cls_name)(config))


def _compare(model: torch.nn.Module, blueprint: str, overrides: dict, size: int = 64, tensors: int | None = None):
    bp = composer.load(BLUEPRINTS / blueprint, overrides={"input.size": size, "classes": 10, **overrides})
    net = composer.build(bp, weights=model.state_dict()).eval()
    report = net.weights_report
    assert report.layout == "transformers"
    assert not (report.initialised or report.resized or report.reinitialised or report.mismatched), report.summary()
    theirs = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(report.ignored) <= {k for k in model.state_dict() if k.endswith("num_batches_tracked")}
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in model.parameters())
    x = _input(2, 3, size, size)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
        out = net(x)
    assert (out - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())
    return net, theirs


CVT = dict(num_labels=10, depth=[1, 2, 3], embed_dim=[16, 32, 48], num_heads=[1, 2, 3])
CVT_NARROW = {"stages.0.channels": 16, "stages.1.channels": 32, "stages.2.channels": 48,
              "stages.1.depth": 2, "stages.2.depth": 3, "stages.1.block.attention.heads": 2, "stages.2.block.attention.heads": 3}
CVT_SETS = {"blocks.T.ffn.act": "gelu", **CVT_NARROW}


@pytest.mark.parametrize("blueprint,sets", [("cvt13.yaml", CVT_SETS), ("cvt21.yaml", CVT_SETS),
                                           ("transformers/cvt-13.yaml", CVT_NARROW),
                                           ("transformers/cvt-21.yaml", CVT_NARROW)])
def test_cvt(blueprint, sets):
    """transformers' CvT uses exact GELU (blueprints/cvt*.yaml: QuickGELU, as Microsoft's code;
    blueprints/transformers/cvt-*.yaml: GELU), and scales attention by 1/sqrt(embed_dim) as both do."""
    _compare(_model("CvtForImageClassification", "CvtConfig", **CVT), blueprint, sets)


def test_cvt_with_per_head_scaling_is_another_function():
    """The scale is what makes CvT CvT: with ViT's 1/sqrt(head_dim) the logits move (queries and keys
    enlarged, so that attention is far from uniform)."""
    model = _model("CvtForImageClassification", "CvtConfig", **CVT)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "projection_query.weight" in name or "projection_key.weight" in name:
                p.mul_(30)
    x = _input(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(pixel_values=x).logits
    for scale, close in (("embed_dim", True), ("head_dim", False)):
        bp = composer.load(BLUEPRINTS / "cvt13.yaml",
                           overrides={"input.size": 64, "classes": 10, **CVT_SETS, "blocks.T.attention.scale": scale})
        net = composer.build(bp, weights=model.state_dict()).eval()
        with torch.no_grad():
            diff = (net(x) - ref).abs().max().item() / ref.abs().max().item()
        assert (diff <= 1e-5) if close else (diff > 1e-2), (scale, diff)


CONVNEXT_SETS = {"stem.channels": 16, "stages.0.channels": 16, "stages.1.channels": 32, "stages.2.channels": 48,
                 "stages.3.channels": 64, "stages.0.depth": 1, "stages.1.depth": 1, "stages.2.depth": 2,
                 "stages.3.depth": 1}


@pytest.mark.parametrize("blueprint,sets", [("timm/convnext_tiny.yaml", {"head.norm_eps": 1e-12}),
                                           ("convnext_tiny.yaml", {"head.norm_eps": 1e-12}),
                                           ("transformers/convnext-tiny-224.yaml", {})])
def test_convnext(blueprint, sets):
    """transformers' final LayerNorm takes the config's eps (1e-12 in facebook/convnext-*)."""
    model = _model("ConvNextForImageClassification", "ConvNextConfig", num_labels=10, hidden_sizes=[16, 32, 48, 64],
                   depths=[1, 1, 2, 1], layer_scale_init_value=0.5)
    _compare(model, blueprint, {**CONVNEXT_SETS, **sets})


VIT = dict(num_labels=10, hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=192,
           image_size=64, patch_size=16)
VIT_NARROW = {"stem.channels": 48, "stages.0.channels": 48, "stages.0.depth": 2, "blocks.T.attention.heads": 3}
VIT_SETS = {**VIT_NARROW, "blocks.T.norm_eps": 1e-12, "head.norm_eps": 1e-12}


@pytest.mark.parametrize("blueprint,sets", [("timm/vit_base_patch16_224.yaml", VIT_SETS), ("vit_b16.yaml", VIT_SETS),
                                           ("transformers/vit-base-patch16-224.yaml", VIT_NARROW)])
def test_vit(blueprint, sets):
    """transformers' ViT: separate query, key and value Linears, joined into composer's qkv; LayerNorm
    eps 1e-12 (google/vit-*)."""
    _compare(_model("ViTForImageClassification", "ViTConfig", **VIT), blueprint, sets)


# blueprints/transformers/: the published checkpoints' architectures, at full size
PUBLISHED = {
    "cvt-13": ("CvtForImageClassification", "CvtConfig", {}),
    "cvt-21": ("CvtForImageClassification", "CvtConfig", {"depth": [1, 4, 16]}),
    "convnext-tiny-224": ("ConvNextForImageClassification", "ConvNextConfig", {}),
    "vit-base-patch16-224": ("ViTForImageClassification", "ViTConfig", {}),
}


def test_every_transformers_blueprint_is_checked():
    assert sorted(p.stem for p in (BLUEPRINTS / "transformers").glob("*.yaml")) == sorted(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_transformers_blueprints_have_the_published_parameter_counts(name):
    cls_name, config_name, config = PUBLISHED[name]
    config = getattr(transformers, config_name)(num_labels=1000, **config)
    with torch.device("meta"):
        model = getattr(transformers, cls_name)(config)
    bp = BLUEPRINTS / "transformers" / f"{name}.yaml"
    assert composer.profile(bp).params == sum(p.numel() for p in model.parameters())
    assert bp.read_text().startswith("# yaml-language-server: $schema=../blueprint.schema.json\n")


def _hub_names(state: dict) -> dict:
    """transformers 5 renames ViT's tensors on load; checkpoints on the hub carry the older names."""
    renames = [("vit.layers.", "vit.encoder.layer."), ("attention.q_proj", "attention.attention.query"),
               ("attention.k_proj", "attention.attention.key"), ("attention.v_proj", "attention.attention.value"),
               ("attention.o_proj", "attention.output.dense"), ("mlp.fc1", "intermediate.dense"),
               ("mlp.fc2", "output.dense")]
    out = {}
    for key, value in state.items():
        for old, new in renames:
            key = key.replace(old, new)
        out[key] = value
    return out


def test_vit_with_the_names_published_on_the_hub(tmp_path):
    model = _model("ViTForImageClassification", "ViTConfig", **VIT)
    state = _hub_names(model.state_dict())
    assert "vit.encoder.layer.1.attention.attention.query.weight" in state
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "vit.safetensors")
    bp = composer.load(BLUEPRINTS / "vit_b16.yaml", overrides={"input.size": 64, "classes": 10, **VIT_SETS})
    net = composer.build(bp, weights=tmp_path / "vit.safetensors", weights_from="transformers").eval()
    assert net.weights_report.layout == "transformers" and not net.weights_report.ignored
    x = _input(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), model(pixel_values=x).logits, atol=1e-5)


RESNET_SETS = {"stem.channels": [16], **{f"stages.{i}.depth": 1 for i in range(4)},
               **{f"stages.{i}.channels": c for i, c in enumerate([32, 64, 96, 128])}}


def test_resnet50():
    """transformers' ResNet (microsoft/resnet-*: v1.5, the stride on the 3x3 conv)."""
    model = _model("ResNetForImageClassification", "ResNetConfig", num_labels=10, embedding_size=16,
                   hidden_sizes=[32, 64, 96, 128], depths=[1, 1, 1, 1])
    _compare(model, "timm/resnet50.yaml", RESNET_SETS)


def test_resnet18_basic_blocks():
    model = _model("ResNetForImageClassification", "ResNetConfig", num_labels=10, embedding_size=16,
                   hidden_sizes=[16, 32, 48, 64], depths=[1, 1, 1, 1], layer_type="basic")
    sets = {"stem.channels": [16], **{f"stages.{i}.depth": 1 for i in range(4)},
            **{f"stages.{i}.channels": c for i, c in enumerate([16, 32, 48, 64])}}
    _compare(model, "timm/resnet18.yaml", sets)


def test_cli_build_from_transformers_and_a_wrong_architecture(tmp_path):
    model = _model("CvtForImageClassification", "CvtConfig", **CVT)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "cvt.safetensors")
    sets = [a for k, v in {"input.size": 64, "classes": 10, **CVT_SETS}.items() for a in ("--set", f"{k}={v}")]
    args = ["build", str(BLUEPRINTS / "cvt13.yaml"), "--weights", str(tmp_path / "cvt.safetensors"), *sets]
    r = runner.invoke(app, [*args, "--from", "transformers", "-o", str(tmp_path / "m.safetensors")])
    assert r.exit_code == 0, r.output
    assert "(transformers layout): 221 tensors loaded" in r.stdout
    r = runner.invoke(app, args)  # detected
    assert r.exit_code == 0 and "(transformers layout)" in r.stdout, r.output
    r = runner.invoke(app, [*args, "--from", "hf"])
    assert r.exit_code == 1 and "expected auto, composer, timm or transformers" in r.output
    # a CvT checkpoint for a ViT blueprint: nothing fits, one clear error
    r = runner.invoke(app, ["build", str(BLUEPRINTS / "vit_b16.yaml"), "--set", "input.size=64", "--weights",
                            str(tmp_path / "cvt.safetensors"), "--from", "transformers"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "cvt.safetensors" in r.output and "not in the checkpoint" in r.output


def test_mobilenet_v2_is_the_tf_port():
    """transformers' MobileNetV2 (google/mobilenet_v2_*) is Google's TF model: TF "SAME" padding and
    BatchNorm eps 1e-3, as `blueprints/timm/tf_mobilenetv2_100.yaml`; its first block sits in its stem."""
    model = _model("MobileNetV2ForImageClassification", "MobileNetV2Config", num_labels=10, image_size=64)
    _compare(model, "timm/tf_mobilenetv2_100.yaml", {})


def test_efficientnet_is_the_tf_port():
    """transformers' EfficientNet (google/efficientnet-b0) with B0's coefficients: `tf_efficientnet_b0`."""
    model = _model("EfficientNetForImageClassification", "EfficientNetConfig", num_labels=10, image_size=64,
                   width_coefficient=1.0, depth_coefficient=1.0, hidden_dim=1280)
    _compare(model, "timm/tf_efficientnet_b0.yaml", {})
