"""Blueprints a user writes from the README and docs/: other layouts, depths, widths, options."""

import pytest
import torch

import composer

VARIANTS = {
    "C-T-C-T": """
layout: C-T-C-T
input: {size: 64}
classes: 10
stem: {type: conv, channels: [16, 16], stride: 2, act: gelu, last_norm_act: false}
blocks:
  C: {type: mbconv, kernel: 5, se: 0}
  T: {type: transformer, attention: {type: relative, head_dim: 16}}
stages:
  - {depth: 1, channels: 32, stride: 2}
  - {depth: 2, channels: 48, stride: 2}
  - {depth: 1, channels: 64, stride: 2, block: {kernel: 3, se: 0.5, stride_on: depthwise}}
  - {depth: 1, channels: 96, stride: 2, block: {attention: {type: plain, heads: 3}}}
head: {type: pool}
""",
    "isotropic-T": """
layout: T
input: {size: 64}
classes: 10
stem: {type: patch, channels: 96, patch: 8}
blocks: {T: {type: transformer, attention: {heads: 4}, ffn: {ratio: 2}, layer_scale: 1e-5}}
stages: [{depth: 3, channels: 96, class_token: true, pos_embed: true}]
head: {type: token, hidden: 64}
""",
    "convnext-with-se-and-attention": """
layout: C-C-T
input: {size: [64, 96]}
classes: 7
stem: {type: patch, channels: 32, patch: 4, norm: layernorm}
blocks:
  C: {type: convnext, kernel: 5, se: 0.25}
  T: {type: transformer, attention: {type: plain, head_dim: 32}}
stages:
  - {depth: 2, channels: 32}
  - {depth: 2, channels: 64, stride: 2, transition: {type: conv, kernel: 2}}
  - {depth: 1, channels: 128, stride: 2, transition: {type: conv, kernel: 3, norm: after}}
head: {type: pool, norm: none}
drop_path: 0.1
""",
    "mbconv-post-norm": """
layout: M-M
input: {size: 32}
classes: 0
stem: {type: conv, channels: [16], stride: 2, act: relu6}
blocks: {M: {type: mbconv, norm: post, expand: 1, expand_from: in, stride_on: depthwise, act: relu6, se: 0}}
stages:
  - {depth: 1, channels: 16}
  - {depth: 2, channels: 24, stride: 2, block: {expand: 6}}
head: {type: pool, norm: none}
""",
    "cvt-embedding-before-mbconv": """
layout: E-M-M
input: {size: 64}
classes: 5
stem: {type: none}
blocks:
  E: {type: transformer, attention: {type: conv, heads: 2}}
  M: {type: mbconv, norm: post, expand_from: in, stride_on: depthwise, se: {ratio: 0.25, from: in, gate: hardsigmoid}, act: silu}
stages:
  - {depth: 1, channels: 32, stride: 4, transition: {type: conv, kernel: 7, norm: after}}
  - {depth: 2, channels: 32, stride: 2, transition: {type: conv, kernel: 3, norm: after}}
  - {depth: 2, channels: 48, stride: 2}
head: {type: pool, conv: 128, norm: none}
""",
    "localvit-ffn-in-coatnet-stage": """
layout: C-T-T
input: {size: 64}
classes: 10
stem: {type: conv, channels: [16, 16], stride: 2, act: gelu, last_norm_act: false}
blocks:
  C: {type: mbconv}
  T: {type: transformer, attention: {type: relative, head_dim: 16}, ffn: {type: conv, act: hardswish, se: {reduction: 16}}}
stages:
  - {depth: 2, channels: 32, stride: 2}
  - {depth: 2, channels: 64, stride: 2}
  - {depth: 2, channels: 128, stride: 2, block: {attention: conv, ffn: {kernel: 5}}}
head: {type: pool, hidden: 128}
""",
    "resnet-then-gpsa-then-class-token": """
layout: B-R-G-T
input: {size: 64}
classes: 10
stem: {type: conv, channels: [16], kernel: 7, stride: 2, pool: max}
blocks:
  B: {type: basic, se: 0.25}
  R: {type: bottleneck, stride_on: reduce, se: {ratio: 0.0625, gate: hardsigmoid}}
  G: {type: transformer, attention: {type: gpsa, heads: 4, qkv_bias: false}}
  T: {type: transformer, attention: {type: plain, heads: 4}, ffn: {type: conv, se: {reduction: 8}}}
stages:
  - {depth: 2, channels: 32}
  - {depth: 2, channels: 64, stride: 2}
  - {depth: 2, channels: 64, stride: 2, pos_embed: true}
  - {depth: 1, channels: 64, class_token: true}
head: {type: token}
""",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_validates_builds_runs_and_profiles(name, write):
    path = write(VARIANTS[name])
    plan = composer.plan(composer.load(path))
    net = composer.build(plan)
    c, h, w = plan.input_shape
    x = torch.randn(2, c, h, w)
    features = net.forward_features(x)
    last = plan.stages[-1]
    assert list(features.shape[1:]) == last.output_shape
    y = net(x)
    assert list(y.shape) == [2, *plan.output_shape]
    y.square().mean().backward()
    report = composer.profile(plan)
    assert report.params == sum(p.numel() for p in net.parameters())
    assert report.macs > 0 and report.uncounted_ops == {}
    assert composer.check(plan).ok  # every block's analytic cost agrees with the trace
    assert [p.output_shape for p in report.parts[1:-1]] == [s.output_shape for s in plan.stages]
