"""Every registered block: forward, backward, and parameters against the papers' formulas."""

import pytest
import torch

from composer.blocks import BLOCKS, BlockContext
from composer.blueprint.schema import resolve_block


def params(m):
    return sum(p.numel() for p in m.parameters())


# blocks that cannot downsample by themselves are tried at stride 1 only
CASES = [(name, stride) for name in sorted(BLOCKS) for stride in (1, 2)
         if stride == 1 or BLOCKS[name].can_downsample]


@pytest.mark.parametrize("type_name,stride", CASES)
def test_forward_backward(type_name, stride):
    config = resolve_block({"type": type_name})
    c_in = 16
    c_out = 32 if config.can_change_width else c_in
    ctx = BlockContext(c_in, c_out, stride, (8, 8))
    block = config.build(ctx)
    x = torch.randn(2, c_in, 8, 8, requires_grad=True)
    if config.data_format == "tokens":
        x = torch.randn(2, 64, c_in, requires_grad=True)
    y = block(x)
    expected = (2, c_out, 8 // stride, 8 // stride) if config.data_format == "map" else (2, 64 // stride**2, c_out)
    assert y.shape == expected
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("c", [64, 96, 384])
def test_coatnet_mbconv_formula(c):
    block = resolve_block({"type": "mbconv"}).build(BlockContext(c, c, 1, (14, 14)))
    assert params(block) == 10 * c * c + 59.25 * c


@pytest.mark.parametrize("c,grid", [(384, (14, 14)), (768, (7, 7))])
def test_relative_transformer_formula(c, grid):
    block = resolve_block({"type": "transformer", "attention": {"type": "relative", "head_dim": 32}}).build(
        BlockContext(c, c, 1, grid))
    table = (2 * grid[0] - 1) * (2 * grid[1] - 1)
    assert params(block) == 12 * c * c + 13 * c + table * c // 32


@pytest.mark.parametrize("d", [192, 384, 768])
def test_vit_block_formula(d):
    block = resolve_block({"type": "transformer", "attention": {"heads": d // 64}}).build(BlockContext(d, d, 1, (14, 14)))
    assert params(block) == 12 * d * d + 13 * d


@pytest.mark.parametrize("c", [96, 768])
def test_convnext_formula(c):
    block = resolve_block({"type": "convnext"}).build(BlockContext(c, c, 1, (7, 7)))
    assert params(block) == 8 * c * c + 58 * c


def test_relative_bias_is_shared_by_equal_offsets():
    from composer.layers.attention import relative_position_index

    idx = relative_position_index(3, 4)
    assert idx.shape == (12, 12) and idx.max() == 5 * 7 - 1 and idx.min() == 0
    assert idx[0, 0] == idx[5, 5]  # zero offset
    assert idx[0, 1] == idx[6, 7]  # same (dy, dx) offset, different positions


def test_mbconv_stride_placement_changes_macs_not_params():
    from composer.profile import OpCounter

    def count(stride_on):
        block = resolve_block({"type": "mbconv", "stride_on": stride_on}).build(BlockContext(64, 96, 2, (56, 56)))
        with OpCounter() as c, torch.no_grad():
            block.eval()(torch.zeros(1, 64, 56, 56))
        return params(block), c.macs

    (p1, m1), (p2, m2) = count("expand"), count("depthwise")
    assert p1 == p2 and m2 > m1


def test_expand_one_stride_placement_follows_the_norm_style():
    pre = resolve_block({"type": "mbconv", "expand": 1, "expand_from": "in"})
    post = resolve_block({"type": "mbconv", "expand": 1, "expand_from": "in", "norm": "post"})
    ctx = BlockContext(16, 24, 2, (8, 8))
    assert pre.check(ctx) == []  # the pre-norm block keeps its expand conv, which can carry the stride
    assert [c.option for c in post.check(ctx)] == ["stride_on"]
    post_dw = resolve_block({"type": "mbconv", "expand": 1, "expand_from": "in", "norm": "post", "stride_on": "depthwise"})
    assert post_dw.build(ctx)(torch.randn(1, 16, 8, 8)).shape == (1, 24, 4, 4)


def _kind(options: dict, field: str, default: str) -> str:
    value = options.get(field, default)
    return value.get("type", default) if isinstance(value, dict) else value


TOKEN_VARIANTS = [
    {"type": "transformer", "attention": {"type": "gpsa", "heads": 4}},
    {"type": "transformer", "attention": {"type": "conv", "heads": 2}},
    {"type": "transformer", "ffn": {"type": "conv", "se": {"reduction": 8}}, "attention": {"heads": 2}},
    {"type": "transformer", "attention": {"type": "conv", "heads": 2}, "ffn": "conv"},
]


@pytest.mark.parametrize("options", TOKEN_VARIANTS, ids=lambda o: f"{_kind(o, 'attention', 'plain')}-{_kind(o, 'ffn', 'mlp')}")
@pytest.mark.parametrize("stride,prefix", [(1, 0), (2, 0), (1, 1)])
def test_attention_and_ffn_variants_run(options, stride, prefix):
    config = resolve_block(options)
    if config.check(BlockContext(16, 32, stride, (8, 8), prefix)):
        assert _kind(options, "attention", "plain") == "gpsa" and prefix  # GPSA refuses class tokens, nothing else
        return
    block = config.build(BlockContext(16, 32, stride, (8, 8), prefix))
    x = torch.randn(2, prefix + 64, 16, requires_grad=True)
    y = block(x)
    assert y.shape == (2, prefix + 64 // stride**2, 32)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("width,se", [(64, 0.0), (128, 0.0), (64, 0.0625)])
def test_bottleneck_formula(width, se):
    c = 4 * width
    block = resolve_block({"type": "bottleneck", "se": se}).build(BlockContext(c, c, 1, (14, 14)))
    convs = c * width + 9 * width * width + width * c
    norms = 2 * (width + width + c)
    se_params = 2 * c * int(c * se) + int(c * se) + c if se else 0
    assert params(block) == convs + norms + se_params


def test_resnet50_se_adds_the_published_count():
    """SE (reduction 16) adds 2,530,992 parameters to ResNet-50 (architectures.md)."""
    total = 0
    for width, depth in ((64, 3), (128, 4), (256, 6), (512, 3)):
        c = 4 * width
        total += depth * (2 * c * (c // 16) + c // 16 + c)
    assert total == 2530992
    plain = resolve_block({"type": "bottleneck"}).build(BlockContext(1024, 2048, 2, (14, 14)))
    with_se = resolve_block({"type": "bottleneck", "se": 0.0625}).build(BlockContext(1024, 2048, 2, (14, 14)))
    assert params(with_se) - params(plain) == 2 * 2048 * 128 + 128 + 2048


@pytest.mark.parametrize("d,heads", [(192, 4), (432, 9)])
def test_gpsa_block_formula(d, heads):
    config = resolve_block({"type": "transformer", "attention": {"type": "gpsa", "heads": heads, "qkv_bias": False}})
    assert params(config.build(BlockContext(d, d, 1, (14, 14)))) == 12 * d * d + 10 * d + 5 * heads


@pytest.mark.parametrize("c,heads", [(64, 1), (384, 6)])
def test_cvt_block_formula(c, heads):
    config = resolve_block({"type": "transformer", "attention": {"type": "conv", "heads": heads}, "ffn": {"act": "quick_gelu"}})
    assert params(config.build(BlockContext(c, c, 1, (14, 14)))) == 12 * c * c + 46 * c


def test_localvit_block_formula():
    d = 192
    config = resolve_block({"type": "transformer", "attention": {"heads": 4},
                            "ffn": {"type": "conv", "act": "hardswish", "se": {"reduction": 192}}})
    assert params(config.build(BlockContext(d, d, 1, (14, 14), 1))) == 12 * d * d + 96 * d + 4


def test_gpsa_local_init_attends_around_each_heads_offset():
    from composer.build import init_weights

    config = resolve_block({"type": "transformer", "attention": {"type": "gpsa", "heads": 4, "locality_strength": 2.0}})
    block = config.build(BlockContext(16, 16, 1, (5, 5)))
    init_weights(block)
    attn = block.attn
    assert torch.equal(attn.v.weight, torch.eye(16))
    scores = attn.pos_proj(attn.offsets).permute(2, 0, 1)  # (heads, N, N)
    center = 12  # query at (2, 2) of the 5x5 grid
    best = {divmod(int(k), 5) for k in scores[:, center].argmax(-1)}
    # four heads, each peaking at a different neighbour of the query on a 2x2 square of offsets
    assert len(best) == 4 and all(abs(y - 2) <= 1 and abs(x - 2) <= 1 for y, x in best)
    assert torch.allclose(torch.sigmoid(attn.gate), torch.full((4,), torch.sigmoid(torch.tensor(1.0)).item()))


@pytest.mark.parametrize("options", [{"ffn": "conv", "attention": {"heads": 2}}, {"attention": {"type": "conv", "heads": 2}}],
                         ids=["conv-ffn", "conv-attention"])
def test_class_token_bypasses_convolutions(options):
    """With attention switched off (zero output projection), a conv FFN leaves the class token as it was;
    conv projections see only grid tokens, so changing the class token leaves the grid's keys alone."""
    block = resolve_block({"type": "transformer", **options}).build(BlockContext(16, 16, 1, (4, 4), 1))
    block.eval()
    x = torch.randn(1, 17, 16)
    if options.get("ffn") == "conv":
        torch.nn.init.zeros_(block.attn.proj.weight)
        torch.nn.init.zeros_(block.attn.proj.bias)
        y = block(x)
        assert torch.equal(y[:, 0], x[:, 0]) and not torch.allclose(y[:, 1:], x[:, 1:])
    else:
        x2 = x.clone()
        x2[:, 0] += 1.0
        a, b = block.attn.conv_k(x), block.attn.conv_k(x2)
        assert torch.equal(a[:, 1:], b[:, 1:]) and a.shape == (1, 1 + 4, 16)  # keys strided to 2x2 + class


# Each choice of `scale` and the published code it reproduces:
#   head_dim  -> 1/sqrt(width per head): ViT (google-research/vision_transformer; timm's `Attention`,
#                `head_dim ** -0.5`), CoAtNet (timm's MaxxVit), ConViT (facebookresearch/convit's GPSA).
#   embed_dim -> 1/sqrt(width of Q over all heads): CvT (microsoft/CvT, lib/models/cls_cvt.py,
#                `self.scale = dim_out ** -0.5`; Hugging Face transformers' `CvtSelfAttention`,
#                `embed_dim**-0.5`).
#   a number  -> that factor, for code that states its own.
@pytest.mark.parametrize("attention", ["plain", "relative", "gpsa", "conv"])
@pytest.mark.parametrize("scale,expected", [("head_dim", 16 ** -0.5), ("embed_dim", 48 ** -0.5), (0.3, 0.3)])
def test_attention_scale_choices(attention, scale, expected):
    config = resolve_block({"type": "transformer", "attention": {"type": attention, "heads": 3, "scale": scale}})
    ctx = BlockContext(48, 48, 1, (4, 4))
    assert config.attention.logit_scale(ctx) == pytest.approx(expected, rel=1e-12)
    attn = config.build(ctx).attn.eval()
    assert attn.scale == pytest.approx(expected, rel=1e-12)
    if attention != "conv":
        return
    # CvT's attention written out: softmax(s Q K^T) V, with Q, K, V from the conv projections
    x = torch.randn(2, 16, 48, dtype=torch.float64)
    attn = attn.double()

    def heads(t):
        return t.view(2, -1, 3, 16).transpose(1, 2)

    q, k, v = (heads(lin(conv(x))) for lin, conv in ((attn.q, attn.conv_q), (attn.k, attn.conv_k),
                                                       (attn.v, attn.conv_v)))
    out = ((q @ k.transpose(-2, -1)) * expected).softmax(-1) @ v
    reference = attn.proj(out.transpose(1, 2).reshape(2, 16, 48))
    with torch.no_grad():
        assert torch.allclose(attn(x), reference, atol=1e-12)


def test_cvt_blueprints_scale_by_the_stage_width():
    """CvT-13 and CvT-21 scale as CvT's published code does; the analytic cost is unchanged by it."""
    import composer

    from .conftest import BLUEPRINTS

    for name in ("cvt13", "cvt21"):
        plan = composer.plan(composer.load(BLUEPRINTS / f"{name}.yaml", overrides={"input.size": 64, "classes": 10}))
        for sp, width in zip(plan.stages, (64, 192, 384)):
            assert sp.block.attention.scale == "embed_dim"
            assert sp.block.attention.logit_scale(sp.contexts[0]) == width ** -0.5
        assert composer.check(plan).ok


@pytest.mark.parametrize("size", [7, 8, 9, 64, 65])
@pytest.mark.parametrize("kernel,stride", [(3, 2), (5, 2), (3, 1), (1, 2), (2, 2), (7, 4)])
def test_same_padding_is_tensorflows(size, kernel, stride):
    """TF "SAME": out = ceil(in / stride); the total padding split with the odd pixel after (bottom/right)."""
    from composer.layers.padding import conv2d, same_padding

    before, after = same_padding(size, kernel, stride)
    out = -(-size // stride)
    assert before + after == max((out - 1) * stride + kernel - size, 0) and after - before in (0, 1)
    conv = conv2d(2, 3, kernel, stride, padding="same")
    x = torch.randn(1, 2, size, size + 1)
    y = conv(x)
    assert y.shape[-2:] == (out, -(-(size + 1) // stride))
    # the same as padding explicitly, then a conv without padding
    (t, b), (l, r) = same_padding(size, kernel, stride), same_padding(size + 1, kernel, stride)
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [l, r, t, b]), conv.weight, conv.bias, stride)
    assert torch.allclose(y, ref, atol=1e-6)


def test_same_padding_blocks_keep_their_analytic_cost_at_odd_sizes():
    """`padding: same` in a stem, MBConv and ResNet blocks and a transition: shapes as planned, costs exact."""
    import composer

    text = """
name: tf-style
input: {channels: 3, size: 45}
classes: 10
stem: {type: conv, channels: [8], stride: 2, padding: same, norm_eps: 1e-3}
layout: M-B-C
blocks:
  M: {type: mbconv, norm: post, expand: 2, expand_from: in, kernel: 5, stride_on: depthwise, padding: same, norm_eps: 1e-3}
  B: {type: basic, padding: same, norm_eps: 1e-3}
  C: {type: convnext}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 1, channels: 24, stride: 2}
  - {depth: 1, channels: 32, stride: 2, transition: {type: conv, kernel: 3, padding: same}}
head: {type: pool, conv: {channels: 40, norm_eps: 1e-3}}
"""
    plan = composer.plan(composer.loads(text))
    assert [sp.out_resolution for sp in plan.stages] == [(12, 12), (6, 6), (3, 3)]
    net = composer.build(plan).eval()
    assert net(torch.randn(1, 3, 45, 45)).shape == (1, 10)
    assert {m.eps for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert composer.check(plan).ok
