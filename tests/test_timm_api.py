"""timm's model API on composer networks: the checks of timm's own tests/test_models.py (default
configs, forward_intermediates, reset_classifier, gradient checkpointing, TorchScript, torch.fx,
features), written against the API directly, since timm itself does not import without
torchvision. bench/timm_models_check.py runs timm's own file where timm imports.

Every shipped blueprint (blueprints/*.yaml and blueprints/timm/*.yaml) is narrowed as in
tests/test_export.py: 64x64, at most 2 blocks a stage, a quarter as wide.
"""

from __future__ import annotations

import math
import re
import sys

import pytest
import torch
import yaml
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.network.features import apply_position_norm
from composer.tools.timm_adapter import TimmUnavailable, entrypoint, register

from .conftest import BLUEPRINTS, SMALL_WINDOWS, small
from .test_export import perturbed

NAMES = sorted([p.stem for p in BLUEPRINTS.glob("*.yaml")] + [f"timm/{p.stem}" for p in BLUEPRINTS.glob("timm/*.yaml")])
runner = CliRunner()

# timm 1.0.31's feature_info (channels, reduction) of the architectures blueprints/timm/ is named after
TIMM_LEVELS = {
    "resnet18": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "resnet50": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "seresnet50": [(64, 2), (256, 4), (512, 8), (1024, 16), (2048, 32)],
    "mobilenetv2_100": [(16, 2), (24, 4), (32, 8), (96, 16), (320, 32)],
    "mobilenetv2_050": [(8, 2), (16, 4), (16, 8), (48, 16), (160, 32)],
    "efficientnet_b0": [(16, 2), (24, 4), (40, 8), (112, 16), (320, 32)],
    # timm's TF ports: the same architectures with TF padding and BatchNorm eps, so the same levels
    "tf_efficientnet_b0": [(16, 2), (24, 4), (40, 8), (112, 16), (320, 32)],
    "tf_mobilenetv2_100": [(16, 2), (24, 4), (32, 8), (96, 16), (320, 32)],
    "convnext_atto": [(40, 4), (80, 8), (160, 16), (320, 32)],
    "convnext_tiny": [(96, 4), (192, 8), (384, 16), (768, 32)],
    "convnext_small": [(96, 4), (192, 8), (384, 16), (768, 32)],
    "vit_tiny_patch16_224": [(192, 16)] * 12,
    "vit_small_patch16_224": [(384, 16)] * 12,
    "vit_base_patch16_224": [(768, 16)] * 12,
    "convit_tiny": [(192, 16)] * 12,
    "convit_small": [(432, 16)] * 12,
    "coatnet_nano_rw_224": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "coatnet_0_rw_224": [(64, 2), (96, 4), (192, 8), (384, 16), (768, 32)],
    "coatnet_1_rw_224": [(64, 2), (96, 4), (192, 8), (384, 16), (768, 32)],
    "coatnet_0_224": [(64, 2), (96, 4), (192, 8), (384, 16), (768, 32)],
    "swin_tiny_patch4_window7_224": [(96, 4), (192, 8), (384, 16), (768, 32)],
    "pvt_v2_b0": [(32, 4), (64, 8), (160, 16), (256, 32)],
    "maxvit_tiny_tf_224": [(64, 2), (64, 4), (128, 8), (256, 16), (512, 32)],
    "convnextv2_tiny": [(96, 4), (192, 8), (384, 16), (768, 32)],
    "poolformer_s12": [(64, 4), (128, 8), (320, 16), (512, 32)],
    "convformer_s18": [(64, 4), (128, 8), (320, 16), (512, 32)],
    "caformer_s18": [(64, 4), (128, 8), (320, 16), (512, 32)],
    # timm's ByobNet takes its last level after the head's 1x1 conv (640 wide); here it is the last stage's
    "mobilevit_s": [(32, 2), (64, 4), (96, 8), (128, 16), (160, 32)],
}


def narrow(name: str, classes: int = 0) -> composer.Blueprint:
    """small(), with attention heads of 16 channels where a head width is set (a quarter of a width
    need not divide by 32)."""
    data = yaml.safe_load((BLUEPRINTS / f"{name}.yaml").read_text())
    sets = {f"blocks.{k}.attention.head_dim": 16 for k, b in data["blocks"].items()
            if isinstance(b.get("attention"), dict) and "head_dim" in b["attention"]}
    return small(name, {**sets, **SMALL_WINDOWS.get(name, {}), "classes": classes})


def _fmt(m: torch.Tensor) -> tuple[int, ...]:
    return tuple(m.shape)


def test_feature_info_matches_timm_for_every_timm_blueprint():
    for name, levels in TIMM_LEVELS.items():
        info = composer.build(composer.load(BLUEPRINTS / "timm" / f"{name}.yaml"), device="meta").feature_info
        assert list(zip(info.channels(), info.reduction())) == levels, name
    assert sorted(TIMM_LEVELS) == sorted(p.stem for p in BLUEPRINTS.glob("timm/*.yaml"))


@pytest.mark.parametrize("name", NAMES)
def test_default_cfg_heads_and_intermediates(name):
    """timm's test_model_default_cfgs and test_model_forward_intermediates, and every keyword."""
    net = perturbed(composer.build(narrow(name, classes=5)))
    cfg = net.default_cfg
    assert cfg is net.pretrained_cfg
    for key in ("input_size", "mean", "std", "crop_pct", "interpolation", "num_classes", "first_conv", "classifier",
                "pool_size", "fixed_input_size"):
        assert key in cfg, key
    assert cfg["input_size"] == (3, 64, 64) and cfg["num_classes"] == net.num_classes == 5
    state = net.state_dict()
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    assert net.get_classifier() is net.head.fc and net.get_classifier().out_features == 5

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.forward_features(x)
        pre = net.forward_head(feats, pre_logits=True)
        tokens = feats.dim() == 3
        assert feats.shape[-1 if tokens else 1] == net.num_features
        if not tokens:
            assert feats.shape[2:] == cfg["pool_size"]
        assert pre.shape == (2, net.head_hidden_size)

        # forward_intermediates: one map per level, as feature_info says; the same final features
        info = net.feature_info
        final, maps = net.forward_intermediates(x)
        assert torch.equal(final, feats) and len(maps) == len(info) >= 2
        for m, c, r in zip(maps, info.channels(), info.reduction()):
            assert _fmt(m) == (2, c, math.ceil(64 / r), math.ceil(64 / r))
        nlc = net.forward_intermediates(x, indices=[0, -1], output_fmt="NLC", intermediates_only=True)
        assert torch.equal(nlc[0], maps[0].flatten(2).transpose(1, 2)) and torch.equal(nlc[1],
                                                                                     maps[-1].flatten(2).transpose(1, 2))
        last_two = net.forward_intermediates(x, 2, intermediates_only=True)
        assert [torch.equal(a, b) for a, b in zip(last_two, maps[-2:])] == [True, True]
        early_final, early = net.forward_intermediates(x, [1], stop_early=True)
        assert len(early) == 1 and torch.equal(early[0], maps[1])
        normed = net.forward_intermediates(x, norm=True, intermediates_only=True)
        position_norm = net.head.position_norm()
        assert torch.equal(normed[-1], maps[-1]) == (position_norm is None)
        if position_norm is not None:  # the head's LayerNorm over channels at each position
            want = apply_position_norm(position_norm[0], maps[-1])
            assert torch.allclose(normed[-1], want, atol=1e-6)

        # reset_classifier: no classifier gives the pre-logits; no pooling gives maps (or tokens)
        net.reset_classifier(0)
        assert net.num_classes == 0 and torch.allclose(net(x), pre, atol=1e-6)
        net.reset_classifier(0, "")
        unpooled = net(x)
        if tokens:
            assert unpooled.shape == (2, feats.shape[1], net.head_hidden_size)
        else:
            assert unpooled.shape == (2, net.head_hidden_size, *cfg["pool_size"])
        net.reset_classifier(7, "avg")
        assert net(x).shape == (2, 7) and net.get_classifier().out_features == 7
    with pytest.raises(ValueError, match="global_pool: expected one of"):
        net.reset_classifier(3, "mean")
    for bad in (dict(output_fmt="NHWC"), dict(indices=[99]), dict(norm="yes")):
        with pytest.raises(ValueError):
            net.forward_intermediates(x, **bad)


@pytest.mark.parametrize("name", NAMES)
def test_torchscript_and_fx_equal_eager_and_keep_the_input_size_guard(name):
    net = perturbed(composer.build(narrow(name, classes=5)))
    x = torch.randn(2, 3, 64, 64)
    scripted = torch.jit.script(net)
    traced = torch.fx.symbolic_trace(net)
    with torch.no_grad():
        want = net(x)
        assert torch.equal(traced(x), want)
        assert torch.allclose(scripted(x), want, atol=1e-5)
    for compiled in (scripted, traced):
        with pytest.raises(Exception, match=r"expected an input of shape \(batch, 3, height, width\), got \(1, 4, 64, 64\)"):
            compiled(torch.randn(1, 4, 64, 64))
    if net.fixed_size:
        with pytest.raises(Exception, match="built for 64x64 inputs and cannot take 96x96"):
            scripted(torch.randn(1, 3, 96, 96))
        with pytest.raises(composer.InputSizeError, match="built for 64x64 inputs and cannot take 96x96"):
            traced(torch.randn(1, 3, 96, 96))


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("timm/")])
def test_features_only_of_timm_blueprints(name):
    """timm's test_model_forward_features: one map per level, at most ceil(size / reduction) + 1."""
    backbone = composer.build(narrow(name), features_only=True)
    maps = backbone(torch.randn(1, 3, 64, 64))
    assert len(maps) == len(backbone.feature_info) >= 2
    for m, c, r in zip(maps, backbone.feature_info.channels(), backbone.feature_info.reduction()):
        assert m.shape[:2] == (1, c) and m.shape[2] <= math.ceil(64 / r) + 1 and torch.isfinite(m).all()


def _saved_bytes(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    saved: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = net(x)
    return y, sum(saved.values())


@pytest.mark.parametrize("name", ["coatnet0", "vit_b16"])
def test_grad_checkpointing_keeps_less_and_gives_the_same_outputs_and_gradients(name):
    x = torch.randn(2, 3, 64, 64)
    results = []
    for enable in (False, True):
        net = perturbed(composer.build(narrow(name, classes=5))).train()
        for m in net.modules():  # the same function both times: no dropout / drop path / BN statistics
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        net.set_grad_checkpointing(enable)
        y, saved = _saved_bytes(net, x)
        y.square().sum().backward()
        results.append((y.detach(), saved, {n: p.grad for n, p in net.named_parameters()}))
    (y0, saved0, g0), (y1, saved1, g1) = results
    assert torch.allclose(y0, y1, atol=1e-6)
    assert all(torch.allclose(g0[n], g1[n], atol=1e-5) for n in g0)
    assert saved1 < 0.7 * saved0  # the blocks' activations are recomputed, not kept
    with pytest.raises(ValueError, match="expected True or False"):
        net.set_grad_checkpointing("yes")


def test_the_training_memory_estimate_counts_checkpointing():
    p = composer.plan(narrow("coatnet0", classes=5))
    plain = composer.train_memory(p, batch=8)
    ckpt = composer.train_memory(p, batch=8, grad_checkpointing=True)
    assert ckpt.grad_checkpointing and ckpt.weights == plain.weights
    assert 0 < ckpt.activations_by_part["recompute"] < ckpt.activations < plain.activations
    assert ckpt.activations_by_part["stem"] == plain.activations_by_part["stem"]  # not checkpointed
    with pytest.raises(composer.BlueprintError, match="true or false"):
        composer.train_memory(p, batch=8, grad_checkpointing="yes")


def test_profile_takes_grad_checkpointing_with_train(tmp_path):
    path = BLUEPRINTS / "coatnet0.yaml"
    r = runner.invoke(app, ["profile", str(path), "--size", "64", "--train", "--batch", "4", "--grad-checkpointing",
                            "--json"])
    assert r.exit_code == 0, r.output
    import json

    memory = json.loads(r.output)["train_memory"]
    assert memory["grad_checkpointing"] is True and memory["activations_by_part"]["recompute"] > 0
    r = runner.invoke(app, ["profile", str(path), "--grad-checkpointing"])
    assert r.exit_code == 1 and "give it with `--train`" in r.output


def test_prune_group_matcher_and_no_weight_decay():
    net = perturbed(composer.build(narrow("coatnet0", classes=5)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = net.forward_intermediates(x, intermediates_only=True)
    names = [n for n, _ in net.named_parameters()]
    fine, coarse = net.group_matcher(), net.group_matcher(coarse=True)
    for matcher in (fine, coarse):  # every parameter but the head's belongs to a group
        patterns = [matcher["stem"]] + ([matcher["blocks"]] if isinstance(matcher["blocks"], str)
                                        else [p for p, _ in matcher["blocks"]])
        assert all(any(re.match(p, n) for p in patterns) == (not n.startswith("head.")) for n in names)
    skip = net.no_weight_decay()
    assert skip and all(n.endswith(("cls_token", "pos_embed", "relative.table")) for n in skip)
    assert any(n.endswith("relative.table") for n in skip)
    assert composer.build(narrow("vit_b16")).no_weight_decay() == {"stages.0.cls_token", "stages.0.pos_embed"}

    taken = net.prune_intermediate_layers([1, 2])
    assert taken == [1, 2] and len(net.stages) == 2 and len(net.feature_info) == 3
    with torch.no_grad():
        pruned = net.forward_intermediates(x, taken, intermediates_only=True)
        assert torch.equal(pruned[0], maps[1]) and torch.equal(pruned[1], maps[2])
        assert torch.equal(net(x), net.forward_features(x))  # no head left: the last kept map

    vit = composer.build(narrow("vit_b16"))
    assert vit.prune_intermediate_layers([0], prune_norm=True) == [0]
    assert len(vit.stages[0].blocks) == 1 and vit(torch.randn(1, 3, 64, 64)).shape == (1, 17, 192)


def test_the_adapter_makes_timm_style_entrypoints(tmp_path):
    create = entrypoint(BLUEPRINTS / "timm" / "resnet18.yaml")
    assert create.__name__ == "composer_resnet18"
    net = create(num_classes=3, img_size=64)
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 3) and net.pretrained_cfg["crop_pct"] == 0.95
    assert net.pretrained_cfg["interpolation"] == "bicubic"  # timm's preprocessing of resnet18
    unpooled = create(num_classes=0, global_pool="", img_size=64)
    assert unpooled(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)
    backbone = create(features_only=True, out_indices=(1, 2), img_size=64, in_chans=1)
    assert [tuple(m.shape) for m in backbone(torch.randn(1, 1, 64, 64))] == [(1, 64, 16, 16), (1, 128, 8, 8)]
    composer.save(net, composer.load(BLUEPRINTS / "timm" / "resnet18.yaml", overrides={"classes": 3, "input.size": 64}),
                  tmp_path / "m.pt")
    loaded = create(pretrained=True, num_classes=3, img_size=64, pretrained_cfg_overlay={"file": str(tmp_path / "m.pt")})
    assert torch.equal(loaded.get_classifier().weight, net.get_classifier().weight)
    with pytest.raises(ValueError, match="no weights to download"):
        create(pretrained=True)
    with pytest.raises(TypeError, match="do not take: output_stride"):
        create(output_stride=16)


def test_registering_without_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    monkeypatch.setitem(sys.modules, "timm.models", None)
    with pytest.raises(TimmUnavailable, match="needs timm, which cannot be imported here .*pip install timm"):
        register(BLUEPRINTS / "coatnet0.yaml")
