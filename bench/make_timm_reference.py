"""Dev script: write timm reference checkpoints and logits into tests/data/timm/ (not run by tests).

For each model below, timm (1.0.31, unpacked without its dependencies; pass its folder with
--timm, default /work/timm-oracle) builds the model with 10 classes, seed 0, random weights and
randomised BatchNorm running statistics; the weights are stored in float16 (NAME.safetensors,
timm's key names) and timm's eval-mode logits for a seeded (2, 3, 64, 64) input, computed from
exactly those stored weights, go into NAME.io.safetensors (`input`, `logits`, float32). Each model
gets an entry in index.json. The script also checks, against timm, that the full-size blueprint
(224x224, 1000 classes) has timm's parameter count.

timm imports torchvision, which this environment does not have (and must not get: it would pull
another torch); a few empty stand-in modules are enough for timm's model code to import.

    python bench/make_timm_reference.py [--timm DIR] [--only NAME]
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "timm"
sys.path.insert(0, str(ROOT))

# name in tests/data/timm -> (timm model, kwargs, blueprint in blueprints/timm, what it stands for)
MODELS = {
    "tf_efficientnet_b0": ("tf_efficientnet_b0", {"num_classes": 10}, "tf_efficientnet_b0",
                           "timm tf_efficientnet_b0 (the architecture of tf_efficientnet_b0.ns_jft_in1k: TF \"SAME\" "
                           "padding, BatchNorm eps 1e-3)"),
    # timm registers no `tf_mobilenetv2_100`; its TF variants are its models built with these two
    # options (what its `tf_*` constructors set), here for Google's TF-trained MobileNetV2 1.0
    "tf_mobilenetv2_100": ("mobilenetv2_100", {"bn_eps": 1e-3, "pad_type": "same", "num_classes": 10},
                           "tf_mobilenetv2_100",
                           "timm mobilenetv2_100 with timm's TF options (bn_eps 1e-3, pad_type same): Google's "
                           "TF-trained MobileNetV2 1.0, as transformers' google/mobilenet_v2_1.0_224"),
}


def stub_torchvision() -> None:
    """Empty stand-ins for whatever torchvision module timm imports at start-up: any attribute of
    them is an empty class (timm's model code uses none of them)."""
    import importlib.abc
    import importlib.machinery

    class _Members(type):  # `InterpolationMode.NEAREST` and the like: a distinct name each
        def __getattr__(cls, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return f"{cls.__name__}.{name}"

    class _Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return _Members(name, (), {"__init__": lambda self, *a, **k: None})

    class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            module = _Anything(spec.name)
            module.__path__ = []
            module.__version__ = "0.0"
            return module

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, _Finder())


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 1.5 + 0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm", type=Path, default=Path("/work/timm-oracle"))
    parser.add_argument("--only")
    args = parser.parse_args()
    sys.path.insert(0, str(args.timm))
    stub_torchvision()
    import timm

    import composer

    index_path = DATA / "index.json"
    index = json.loads(index_path.read_text())
    for name, (arch, kwargs, blueprint, stands_for) in MODELS.items():
        if args.only and args.only != name:
            continue
        # full size: the blueprint's parameters are timm's
        full = timm.create_model(arch, pretrained=False,
                                 **{k: v for k, v in kwargs.items() if k != "num_classes"})
        ours = composer.profile(ROOT / "blueprints" / "timm" / f"{blueprint}.yaml").params
        theirs = sum(p.numel() for p in full.parameters())
        print(f"{name}: full size, timm {theirs:,} parameters, blueprint {ours:,}")
        if ours != theirs:
            raise SystemExit(f"{name}: the blueprint has {ours:,} parameters, timm's model {theirs:,}")
        del full

        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, **kwargs)
        randomise_bn(model)
        state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        model.eval()
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model(x).float()
        meta = {"layout": "timm", "stands_for": stands_for}
        save_file(state, DATA / f"{name}.safetensors", metadata=meta)
        save_file({"input": x.contiguous(), "logits": logits.contiguous()}, DATA / f"{name}.io.safetensors")
        index[name] = {"stands_for": stands_for, "timm_model": arch, "kwargs": kwargs, "input": list(x.shape),
                       "classes": kwargs["num_classes"], "params": sum(p.numel() for p in model.parameters()),
                       "tensors": len(state),
                       "note": "timm.create_model(timm_model, **kwargs)"}
        print(f"{name}: wrote {name}.safetensors ({index[name]['tensors']} tensors), logits up to "
              f"{logits.abs().max().item():.3f}")
    index_path.write_text(json.dumps(index, indent=1) + "\n")


if __name__ == "__main__":
    main()
