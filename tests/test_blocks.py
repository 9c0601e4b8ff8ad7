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
    block = resolve_block({"type": "transformer", "attention": "relative", "head_dim": 32}).build(
        BlockContext(c, c, 1, grid))
    table = (2 * grid[0] - 1) * (2 * grid[1] - 1)
    assert params(block) == 12 * c * c + 13 * c + table * c // 32


@pytest.mark.parametrize("d", [192, 384, 768])
def test_vit_block_formula(d):
    block = resolve_block({"type": "transformer", "heads": d // 64}).build(BlockContext(d, d, 1, (14, 14)))
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
