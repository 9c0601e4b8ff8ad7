"""Dev script: timm references for the windowed and pyramid hybrids (not run by tests).

For each model below, timm (1.0.31, unpacked without its dependencies; --timm, default
/work/timm-oracle) builds a small version of the architecture (timm's own constructor options at
reduced depth and width, 64x64 input, 10 classes), seed 0, random weights, randomised norm
parameters and statistics and randomised relative position tables. Its weights go into
tests/data/timm/NAME.safetensors (timm's key names, float16), and timm's eval-mode logits for a
seeded (2, 3, 64, 64) input, computed from exactly those stored weights, into NAME.io.safetensors;
index.json gets an entry per model. The script also checks that blueprints/timm/ARCH.yaml at full
size has timm's parameter count, (`--full`) that it computes timm's logits there from timm's
weights, and (`--layers`) compares composer's layers with timm's
submodules on random inputs.

    PYTHONPATH=/work/timm-oracle:bench python bench/make_hybrid_reference.py [--only NAME] [--layers] [--full]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from make_timm_reference import stub_torchvision

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "timm"
sys.path.insert(0, str(ROOT))

# name in tests/data/timm -> (timm model, kwargs of the small build, blueprint, what it stands for)
MODELS = {
    "swin_tiny_small": (
        "swin_tiny_patch4_window7_224",
        {"img_size": 64, "window_size": 4, "embed_dim": 16, "depths": (2, 2, 2, 1), "num_heads": (1, 2, 4, 8),
         "num_classes": 10},
        "swin_tiny_patch4_window7_224",
        "timm swin_tiny_patch4_window7_224 at 64x64, window 4 (shifted windows in stages 1-2, an unshifted "
        "window as large as the grid in stage 3, a window clipped to the 2x2 grid in stage 4), narrow and shallow"),
    "pvt_v2_b0_small": (
        "pvt_v2_b0",
        {"embed_dims": (16, 32, 48, 64), "depths": (2, 1, 1, 1), "num_heads": (1, 2, 3, 4), "num_classes": 10},
        "pvt_v2_b0",
        "timm pvt_v2_b0 (spatial reduction 8, 4, 2, 1; FFN ratios 8, 8, 4, 4), narrow and shallow"),
    "maxvit_tiny_small": (
        "maxvit_tiny_tf_224",
        {"img_size": 64, "embed_dim": (16, 32, 48, 64), "depths": (1, 1, 1, 1), "stem_width": 16,
         "head_hidden_size": 64, "transformer_dim_head": 8, "num_classes": 10},
        "maxvit_tiny_tf_224",
        "timm maxvit_tiny_tf_224 (TF padding and relative bias) at 64x64 (windows and grids of 2x2), narrow and shallow"),
}
NUMBERS = ROOT.parent / "shared" / "reference" / "numbers-hybrids.yaml"


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Norm statistics, norm affine parameters and relative position tables away from their initial
    values, so that the logits depend on each of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm)) and m.weight is not None:
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        for name, p in model.named_parameters():
            if "relative_position_bias_table" in name or "rel_pos" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def full_size_params(timm, arch: str) -> int:
    return sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters())


def check_full_size(timm, name: str, arch: str, blueprint: str) -> None:
    import yaml

    import composer

    path = ROOT / "blueprints" / "timm" / f"{blueprint}.yaml"
    theirs = full_size_params(timm, arch)
    expected = yaml.safe_load(NUMBERS.read_text())[arch]["params"] if NUMBERS.exists() else theirs
    if theirs != expected:
        raise SystemExit(f"{arch}: timm builds {theirs:,} parameters, {NUMBERS.name} says {expected:,}")
    if not path.exists():
        print(f"{name}: no {path.relative_to(ROOT)} yet (timm: {theirs:,} parameters)")
        return
    ours = composer.profile(path).params
    print(f"{name}: full size, timm {theirs:,} parameters, blueprint {ours:,}")
    if ours != theirs:
        raise SystemExit(f"{name}: the blueprint has {ours:,} parameters, timm's model {theirs:,}")


def compare_full_size(timm, name: str, arch: str, blueprint: str) -> None:
    """timm's full-size model with random weights, loaded into the blueprint through timm's names:
    the same logits at timm's input size (float32)."""
    import composer

    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    randomise(model)
    model.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    net = composer.build(ROOT / "blueprints" / "timm" / f"{blueprint}.yaml", weights=model.state_dict()).eval()
    with torch.no_grad():
        theirs, ours = model(x), net(x)
    diff, top = (ours - theirs).abs().max().item(), theirs.abs().max().item()
    print(f"{name}: full size at 224, max |ours - timm| = {diff:.2e} (largest logit {top:.3f})")
    if diff > 1e-4 * max(1.0, top):
        raise SystemExit(f"{name}: full-size logits differ from timm's by {diff:.2e}")


def write_reference(timm, name: str, arch: str, kwargs: dict, stands_for: str, index: dict) -> None:
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kwargs)
    randomise(model)
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(x).float()
    meta = {"layout": "timm", "stands_for": stands_for}
    save_file(state, DATA / f"{name}.safetensors", metadata=meta)
    save_file({"input": x.contiguous(), "logits": logits.contiguous()}, DATA / f"{name}.io.safetensors")
    index[name] = {"stands_for": stands_for, "timm_model": arch,
                   "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                   "input": list(x.shape), "classes": kwargs["num_classes"],
                   "params": sum(p.numel() for p in model.parameters()), "tensors": len(state),
                   "note": "timm.create_model(timm_model, **kwargs)"}
    size = (DATA / f"{name}.safetensors").stat().st_size
    print(f"{name}: wrote {name}.safetensors ({len(state)} tensors, {size / 1e6:.2f} MB), "
          f"logits up to {logits.abs().max().item():.3f}")


# -- layer by layer: composer's modules against timm's submodules ------------------------------------------

def _copy(ours: torch.nn.Module, theirs: torch.nn.Module, names: dict[str, str], convert=None) -> None:
    """Load timm's tensors into ours: our key -> timm's (a key or a prefix)."""
    src = theirs.state_dict()
    out = {}
    for key in ours.state_dict():
        for mine, their in names.items():
            if key == mine or key.startswith(mine + "."):
                t = src[their + key[len(mine):]]
                out[key] = convert(key, t) if convert else t
                break
    missing = ours.load_state_dict(out, strict=False)
    if missing.missing_keys:
        raise SystemExit(f"not copied: {missing.missing_keys}")


def _report(what: str, a: torch.Tensor, b: torch.Tensor) -> float:
    diff = (a - b).abs().max().item()
    print(f"  {what}: max |ours - timm| = {diff:.2e}")
    if diff > 1e-5 * max(1.0, b.abs().max().item()):
        raise SystemExit(f"{what} differs from timm by {diff:.2e}")
    return diff


def compare_layers() -> None:
    from timm.models import pvt_v2, swin_transformer

    from composer.layers.patch_merging import PatchMerging
    from composer.layers.spatial_reduction_attention import DepthwiseConvMlp, SpatialReductionAttention
    from composer.layers.window_attention import WindowAttention

    torch.manual_seed(0)
    table = lambda key, t: t.t() if key.endswith("relative.table") else t  # noqa: E731  (offsets, heads) -> ours
    for grid, window, shift in (((8, 8), 4, 2), ((8, 12), 4, 0), ((6, 6), 3, 1)):
        block = swin_transformer.SwinTransformerBlock(32, grid, num_heads=4, window_size=window, shift_size=shift)
        randomise(block)
        block.eval()
        ours = WindowAttention(32, 32, 4, grid, block.window_size, block.shift_size)
        _copy(ours, block.attn, {"qkv": "qkv", "proj": "proj", "relative.table": "relative_position_bias_table"},
              table)
        x = torch.randn(2, grid[0], grid[1], 32)
        with torch.no_grad():
            _report(f"window attention {grid} window {window} shift {shift}",
                    ours(x.reshape(2, -1, 32)).reshape(x.shape), block._attn(x))
    merge = swin_transformer.PatchMerging(16, 32)
    randomise(merge)
    ours = PatchMerging(16, 32)
    _copy(ours, merge, {"norm": "norm", "reduction": "reduction"})
    for h, w in ((8, 8), (7, 5)):
        x = torch.randn(2, 16, h, w)
        with torch.no_grad():
            _report(f"patch merging {h}x{w}", ours(x), merge(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    for reduction, linear in ((4, False), (1, False), (2, True)):
        attn = pvt_v2.Attention(32, num_heads=2, sr_ratio=reduction, linear_attn=linear)
        randomise(attn)
        ours = SpatialReductionAttention(32, 2, (8, 8), reduction, 7 if linear else None)
        _copy(ours, attn, {k: k for k in ("q", "kv", "proj", "sr", "norm")})
        x = torch.randn(2, 64, 32)
        with torch.no_grad():
            _report(f"spatial-reduction attention r{reduction}{' linear' if linear else ''}", ours(x),
                    attn(x, [8, 8]))
        mlp = pvt_v2.MlpWithDepthwiseConv(32, 64, extra_relu=linear)
        ours = DepthwiseConvMlp(32, 64, (8, 8), extra_relu=linear)
        _copy(ours, mlp, {k: k for k in ("fc1", "dwconv", "fc2")})
        with torch.no_grad():
            _report(f"depthwise-conv MLP{' (extra ReLU)' if linear else ''}", ours(x), mlp(x, [8, 8]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm", type=Path, default=Path("/work/timm-oracle"))
    parser.add_argument("--only")
    parser.add_argument("--layers", action="store_true", help="compare composer's layers with timm's")
    parser.add_argument("--no-write", action="store_true", help="check only; write no reference")
    parser.add_argument("--full", action="store_true", help="also compare logits at full size (random weights)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.timm))
    stub_torchvision()
    import timm

    if args.layers:
        compare_layers()
    index_path = DATA / "index.json"
    index = json.loads(index_path.read_text())
    for name, (arch, kwargs, blueprint, stands_for) in MODELS.items():
        if args.only and args.only != name:
            continue
        check_full_size(timm, name, arch, blueprint)
        if args.full:
            compare_full_size(timm, name, arch, blueprint)
        if not args.no_write:
            write_reference(timm, name, arch, kwargs, stands_for, index)
    if not args.no_write:
        index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
