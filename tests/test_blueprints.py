"""Every blueprint in blueprints/ reproduces its reference: parameters exact, MACs within 2%."""


import pytest
import torch
import yaml

import composer
from composer.analysis.tracing import count_with_fvcore

from .conftest import BLUEPRINTS, ROOT, shared_reference, small
from .test_families import FAMILIES
from .test_hybrids_metaformer import READABLE as HYBRID_READABLE

# blueprint file -> key in the reference figures
REFERENCE_KEYS = {
    "coatnet0": "coatnet_0",
    "convit_tiny": "convit_tiny",
    "convnext_tiny": "convnext_tiny",
    "cvt13": "cvt_13",
    "efficientnet_b0": "efficientnet_b0",
    "localvit_tiny": "localvit_tiny",
    "mobilenetv2": "mobilenetv2_100",
    "resnet50": "resnet50",
    "seresnet50": "seresnet50",
    "vit_b16": "vit_base_patch16",
}
ALL = sorted(p.stem for p in BLUEPRINTS.glob("*.yaml"))
# checked against ../shared/reference/numbers-hybrids.yaml in tests/test_hybrids_attention.py
HYBRIDS = {"swin_tiny", "pvt_v2_b0", "maxvit_tiny"}
# windows of 7 do not tile a 64x64 input's grids (16, 8, ...); windows of 4 do
from .conftest import SMALL_WINDOWS as SMALL  # noqa: E402  (windows that tile 64 px grids)


def test_every_blueprint_has_a_reference():
    """Exact figures from the reference, or (CoAtNet-1/2/3) the paper's figures in test_families."""
    as_published = {blueprint for blueprint, sets in FAMILIES.values() if not sets}
    assert set(ALL) == set(REFERENCE_KEYS) | as_published | HYBRIDS | set(HYBRID_READABLE), \
        "add the new blueprint to REFERENCE_KEYS"


def test_reference_copy_matches_shared():
    shared = shared_reference("numbers.yaml")
    ours = yaml.safe_load((ROOT / "tests" / "data" / "reference_numbers.yaml").read_text())
    assert ours == yaml.safe_load(shared.read_text())


@pytest.mark.parametrize("name", sorted(REFERENCE_KEYS))
def test_reference_figures(name, reference):
    ref = reference[REFERENCE_KEYS[name]]
    report = composer.profile(BLUEPRINTS / f"{name}.yaml")
    assert report.input == [1, 3, 224, 224]
    assert report.params == ref["params"]
    assert report.macs == pytest.approx(float(ref["macs"]), rel=0.02)
    assert report.uncounted_ops == {}


def test_coatnet0_params_by_part(reference):
    report = composer.profile(BLUEPRINTS / "coatnet0.yaml")
    assert {p.name: p.params for p in report.parts} == reference["coatnet_0"]["params_by_part"]


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_small(name):
    """Every blueprint, narrowed (conftest.small: each stage's first and a plain block, a quarter as
    wide), trains: finite gradients reach every parameter."""
    net = composer.build(small(name, {"classes": 10}))
    x = torch.randn(2, 3, 64, 64)
    y = net(x)
    assert y.shape == (2, 10)
    y.logsumexp(-1).sum().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.forward_head(net.forward_features(x), pre_logits=True).shape == (2, net.head_hidden_size)


@pytest.mark.parametrize("name", ALL)
def test_meta_count_agrees_with_fvcore(name):
    """Our meta-tensor count equals fvcore's jit-trace count on the real (narrowed) model."""
    bp = small(name, {"classes": 10})
    ours = composer.profile(bp, batch=2)
    theirs, _ = count_with_fvcore(composer.build(bp), torch.randn(2, 3, 64, 64))
    assert ours.macs == theirs


@pytest.mark.parametrize("name,size", [("coatnet0", 50), ("efficientnet_b0", 72), ("resnet50", 45), ("cvt13", 60)])
def test_sizes_the_strides_do_not_divide(name, size):
    """Every stride rounds up (ceil(n / s)); plan, model, meta count and fvcore agree at odd sizes."""
    plan = composer.plan(small(name, {"input.size": size, "classes": 10}))
    net = composer.build(plan)
    x = torch.randn(1, 3, size, size)
    assert list(net.forward_features(x).shape[1:]) == plan.stages[-1].output_shape
    theirs, _ = count_with_fvcore(net, x)
    assert composer.profile(plan).macs == theirs
    assert composer.check(plan).ok


def test_build_is_deterministic_given_a_seed():
    bp = small("coatnet0")
    a, b = composer.build(bp, seed=3), composer.build(bp, seed=3)
    c = composer.build(bp, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
