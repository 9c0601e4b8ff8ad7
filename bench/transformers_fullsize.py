"""Dev script: full-size Hugging Face transformers models through `composer build --from transformers`.

For CvT-13, CvT-21, ConvNeXt-T, ViT-B/16, ResNet-50, MobileNetV2 1.0 and EfficientNet-B0 at
224x224 with 1000 classes: build transformers' model
from its config (random weights, BatchNorm running statistics randomised, seed 0), save its state
dict as safetensors under a temporary folder, run

    python -m cli build BLUEPRINT --weights F --from transformers [--set ...] -o M.safetensors

and compare the saved composer model's logits with transformers' (eval mode, one seeded batch).
Prints one line per case: the largest absolute difference, and relative to the largest logit.
Needs transformers; takes a few minutes on two cores. Run from the repository root:

    python bench/transformers_fullsize.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import composer  # noqa: E402

# name -> (transformers class, config class, config, blueprint, --set overrides)
CVT, CONVNEXT, VIT = "CvtForImageClassification", "ConvNextForImageClassification", "ViTForImageClassification"
CASES = {
    "cvt-13": (CVT, "CvtConfig", {}, "blueprints/cvt13.yaml", ["blocks.T.act=gelu"]),
    "cvt-13 (transformers/)": (CVT, "CvtConfig", {}, "blueprints/transformers/cvt-13.yaml", []),
    "cvt-21": (CVT, "CvtConfig", {"depth": [1, 4, 16]}, "blueprints/cvt21.yaml", ["blocks.T.act=gelu"]),
    "cvt-21 (transformers/)": (CVT, "CvtConfig", {"depth": [1, 4, 16]}, "blueprints/transformers/cvt-21.yaml", []),
    "convnext-t": (CONVNEXT, "ConvNextConfig", {}, "blueprints/convnext_tiny.yaml", []),
    "convnext-t (timm/)": (CONVNEXT, "ConvNextConfig", {}, "blueprints/timm/convnext_tiny.yaml", []),
    "convnext-t (transformers/)": (CONVNEXT, "ConvNextConfig", {},
                                   "blueprints/transformers/convnext-tiny-224.yaml", []),
    "vit-b/16": (VIT, "ViTConfig", {}, "blueprints/vit_b16.yaml", []),
    "vit-b/16 (transformers/)": (VIT, "ViTConfig", {}, "blueprints/transformers/vit-base-patch16-224.yaml", []),
    "resnet-50": ("ResNetForImageClassification", "ResNetConfig", {}, "blueprints/timm/resnet50.yaml", []),
    "mobilenet_v2_1.0_224": ("MobileNetV2ForImageClassification", "MobileNetV2Config", {},
                             "blueprints/timm/tf_mobilenetv2_100.yaml", []),
    "efficientnet-b0": ("EfficientNetForImageClassification", "EfficientNetConfig",
                        {"width_coefficient": 1.0, "depth_coefficient": 1.0, "hidden_dim": 1280},
                        "blueprints/timm/tf_efficientnet_b0.yaml", []),
}


def model(cls_name: str, config_name: str, config: dict) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    net = getattr(transformers, cls_name)(getattr(transformers, config_name)(num_labels=1000, **config))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)
    return net.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the checkpoints here (default: a temporary folder)")
    parser.add_argument("--only", help="run only the cases whose name contains this")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="composer-transformers-"))
    folder.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    built: dict[tuple, tuple[Path, torch.Tensor]] = {}
    for name, (cls_name, config_name, config, blueprint, sets) in CASES.items():
        if args.only and args.only not in name:
            continue
        key = (cls_name, repr(sorted(config.items())))
        if key not in built:
            net = model(cls_name, config_name, config)
            ckpt = folder / f"{name.split()[0].replace('/', '')}.safetensors"
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, ckpt)
            with torch.no_grad():
                built[key] = ckpt, net(pixel_values=x).logits
            del net
        ckpt, ref = built[key]
        out = folder / "composer.safetensors"
        command = [sys.executable, "-m", "cli", "build", blueprint, "--weights", str(ckpt), "--from", "transformers",
                   "-o", str(out)] + [a for s in sets for a in ("--set", s)]
        r = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: build failed\n{r.stdout}{r.stderr}")
            continue
        loaded = next(line for line in r.stdout.splitlines() if "tensors loaded" in line)
        ours = composer.load_model(out).eval()
        with torch.no_grad():
            diff = (ours(x) - ref).abs().max().item()
        print(f"{name:26s} {blueprint:46s} {' '.join(sets) or '-':18s} max |diff| {diff:.3e}  "
              f"relative {diff / ref.abs().max().item():.3e}  ({loaded.split(': ')[-1]})", flush=True)


if __name__ == "__main__":
    main()
