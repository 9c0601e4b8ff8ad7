"""Dev script: timm reference checkpoints and logits for the MetaFormers, ConvNeXt V2 and MobileViT
(tests/data/timm/; not run by tests).

For each model below timm (1.0.31, unpacked without its dependencies at --timm, default
/work/timm-oracle) builds a small version of the network: the same structure at reduced depth and
width through timm's own constructor arguments, 10 classes, seed 0. Its weights are random, drawn
at 1 / sqrt(fan-in), and so are its norm statistics and every one-dimensional parameter (norm
weights and biases, layer and residual scales, StarReLU's scale and bias, GRN's weight and bias): at
their initial values several of them would hide whole branches from the comparison. The weights are stored in float16
(NAME_small.safetensors, timm's key names); timm's eval-mode logits for a seeded input, computed from
exactly those stored weights, go into NAME_small.io.safetensors (`input`, `logits`, float32). Each
pair gets an entry in index.json (merged into the entries already there).

The script then checks composer against timm: the full-size blueprint (blueprints/timm/NAME.yaml)
has timm's parameter count (and the figure of ../shared/reference/numbers-hybrids.yaml), and the
small blueprint (the full one with the overrides below) loads the small checkpoint and reproduces
timm's logits; it prints the largest absolute difference.

    PYTHONPATH=/work/timm-oracle:bench python bench/make_hybrid_reference_b.py [--only NAME] [--check]

`--check` writes nothing: it compares composer with the checkpoints already stored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "timm"
NUMBERS = ROOT.parent / "shared" / "reference" / "numbers-hybrids.yaml"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_timm_reference import stub_torchvision  # noqa: E402

ONE_BLOCK = {f"stages.{i}.depth": 1 for i in range(4)}
WIDTHS = (16, 32, 48, 64)


def widths(ws=WIDTHS) -> dict:
    return {f"stages.{i}.channels": w for i, w in enumerate(ws)}


# small name -> timm model, timm kwargs, blueprint in blueprints/timm, its overrides, input size, what it is
MODELS = {
    "convnextv2_tiny_small": (
        "convnextv2_tiny", {"depths": (1, 1, 1, 1), "dims": WIDTHS, "num_classes": 10}, "convnextv2_tiny",
        {**ONE_BLOCK, **widths(), "stem.channels": 16}, 64,
        "timm convnextv2_tiny (ConvNeXt V2: GRN, no layer scale) with one block per stage, widths 16-64"),
    "poolformer_s12_small": (
        "poolformer_s12", {"depths": (1, 1, 1, 1), "dims": WIDTHS, "num_classes": 10}, "poolformer_s12",
        {**ONE_BLOCK, **widths()}, 64,
        "timm poolformer_s12 with one block per stage, widths 16-64"),
    "convformer_s18_small": (
        "convformer_s18", {"depths": (1, 1, 1, 1), "dims": WIDTHS, "num_classes": 10}, "convformer_s18",
        {**ONE_BLOCK, **widths(), "head.hidden": 256}, 64,
        "timm convformer_s18 with one block per stage, widths 16-64"),
    "caformer_s18_small": (
        "caformer_s18", {"depths": (1, 1, 2, 1), "dims": (16, 32, 64, 96), "num_classes": 10}, "caformer_s18",
        {**ONE_BLOCK, "stages.2.depth": 2, **widths((16, 32, 64, 96)), "head.hidden": 384}, 64,
        "timm caformer_s18 with 1-1-2-1 blocks, widths 16-96 (attention stages of 2 and 3 heads)"),
    "mobilevit_s_small": (
        "mobilevit_s", {"num_classes": 10, "small_cfg": "mobilevit_s_small"}, "mobilevit_s",
        {"stem.channels": [8], **widths((16, 24, 32, 40, 48)), "stages.1.depth": 1, "blocks.V.dim": 32,
         "blocks.V.layers": 1, "stages.3.block.dim": 48, "stages.3.block.layers": 1, "stages.4.block.dim": 64,
         "stages.4.block.layers": 1, "head.conv.channels": 96}, 64,
        "timm ByobNet with mobilevit_s's structure at widths 16-48: one block per inverted-residual stage, MobileViT "
        "stages of one Transformer layer (widths 32, 48, 64, 4 heads, patch 2), stem 8, final conv 96"),
}


def small_byob_cfg():
    """mobilevit_s's ByobNet config (timm.models.mobilevit.model_cfgs) at reduced depth and width."""
    from timm.models.byobnet import ByoModelCfg
    from timm.models.mobilevit import _inverted_residual_block, _mobilevit_block

    return ByoModelCfg(
        blocks=(_inverted_residual_block(d=1, c=16, s=1), _inverted_residual_block(d=1, c=24, s=2),
                _mobilevit_block(d=1, c=32, s=2, transformer_dim=32, transformer_depth=1, patch_size=2),
                _mobilevit_block(d=1, c=40, s=2, transformer_dim=48, transformer_depth=1, patch_size=2),
                _mobilevit_block(d=1, c=48, s=2, transformer_dim=64, transformer_depth=1, patch_size=2)),
        stem_chs=8, stem_type="3x3", stem_pool="", downsample="", act_layer="silu", num_features=96)


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """BatchNorm statistics and every one-dimensional parameter, at random (see the docstring); the
    weights of convs and Linears drawn at 1 / sqrt(fan-in), so that attention logits are of order one
    (timm's initialisation, std 0.02, leaves attention nearly uniform and a wrong one unnoticed)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            else:
                if name.endswith("bias"):
                    p.copy_(0.2 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)


def create(timm, arch: str, kwargs: dict) -> torch.nn.Module:
    """timm.create_model(arch, **kwargs); where timm's model function fixes an argument itself (the
    MetaFormers fix their depths and widths), its builder is given ours instead of the fixed one."""
    import timm.models.metaformer as metaformer

    if "small_cfg" in kwargs:
        from timm.models.byobnet import ByobNet

        return ByobNet(small_byob_cfg(), num_classes=kwargs["num_classes"])

    builder = metaformer._create_metaformer

    def patched(variant, pretrained=False, **fixed):
        return builder(variant, pretrained=pretrained, **{**fixed, **kwargs})

    metaformer._create_metaformer = patched
    try:
        return timm.create_model(arch, pretrained=False, **{k: v for k, v in kwargs.items()
                                                            if not arch.startswith(METAFORMERS) or k == "num_classes"})
    finally:
        metaformer._create_metaformer = builder


METAFORMERS = ("poolformer", "convformer", "caformer")


def full_size(timm, arch: str, blueprint: str, numbers: dict) -> None:
    import composer

    with torch.device("meta"):
        theirs = sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters())
    ours = composer.profile(ROOT / "blueprints" / "timm" / f"{blueprint}.yaml").params
    reference = numbers[blueprint]["params"]
    print(f"{blueprint}: full size, timm {theirs:,} parameters, reference {reference:,}, blueprint {ours:,}")
    if not ours == theirs == reference:
        raise SystemExit(f"{blueprint}: the blueprint has {ours:,} parameters, timm {theirs:,}, "
                         f"the reference {reference:,}")


def compare(name: str, blueprint: str, overrides: dict) -> float:
    """composer's logits from the stored small checkpoint against timm's stored logits."""
    import composer

    entry = json.loads((DATA / "index.json").read_text())[name]
    bp = composer.load(ROOT / "blueprints" / "timm" / f"{blueprint}.yaml",
                       overrides={**overrides, "input.size": entry["input"][-1], "classes": entry["classes"]})
    net = composer.build(bp, weights=DATA / f"{name}.safetensors").eval()
    report = net.weights_report
    io = load_file(DATA / f"{name}.io.safetensors")
    with torch.no_grad():
        diff = (net(io["input"]) - io["logits"]).abs().max().item()
    params = sum(p.numel() for p in net.parameters())
    print(f"{name}: composer {params:,} parameters (timm {entry['params']:,}), loaded {len(report.loaded)} of "
          f"{entry['tensors']} tensors, initialised {len(report.initialised)}, ignored {len(report.ignored)}; "
          f"logits up to {io['logits'].abs().max().item():.3f}, max |composer - timm| = {diff:.3g}")
    return diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm", type=Path, default=Path("/work/timm-oracle"))
    parser.add_argument("--only")
    parser.add_argument("--check", action="store_true", help="write nothing; compare with the stored files")
    args = parser.parse_args()
    sys.path.insert(0, str(args.timm))
    stub_torchvision()
    import timm

    numbers = yaml.safe_load(NUMBERS.read_text())
    index_path = DATA / "index.json"
    failed = []
    for name, (arch, kwargs, blueprint, overrides, size, stands_for) in MODELS.items():
        if args.only and args.only not in (name, blueprint):
            continue
        if not (ROOT / "blueprints" / "timm" / f"{blueprint}.yaml").exists():
            print(f"{name}: no blueprints/timm/{blueprint}.yaml yet, skipped")
            continue
        full_size(timm, arch, blueprint, numbers)
        if not args.check:
            torch.manual_seed(0)
            model = create(timm, arch, kwargs)
            randomise(model)
            state = {k: (v.half() if v.is_floating_point() else v).contiguous()
                     for k, v in model.state_dict().items()}
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
            model.eval()
            x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                logits = model(x).float()
            save_file(state, DATA / f"{name}.safetensors", metadata={"layout": "timm", "stands_for": stands_for})
            save_file({"input": x.contiguous(), "logits": logits.contiguous()}, DATA / f"{name}.io.safetensors")
            index = json.loads(index_path.read_text())  # merged: other entries stay as they are
            index[name] = {"stands_for": stands_for, "timm_model": arch,
                           "kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()},
                           "input": list(x.shape), "classes": kwargs["num_classes"],
                           "params": sum(p.numel() for p in model.parameters()), "tensors": len(state),
                           "note": "timm.create_model(timm_model, **kwargs), then every 1-d parameter and "
                                   "BatchNorm statistic randomised"}
            index_path.write_text(json.dumps(index, indent=1) + "\n")
            kib = sum((DATA / f"{name}{s}.safetensors").stat().st_size for s in ("", ".io")) / 1024
            print(f"{name}: wrote {len(state)} tensors ({kib:.0f} KiB with its logits)")
        if compare(name, blueprint, overrides) > 1e-4:
            failed.append(name)
    if failed:
        raise SystemExit(f"composer differs from timm by more than 1e-4: {', '.join(failed)}")


if __name__ == "__main__":
    main()
