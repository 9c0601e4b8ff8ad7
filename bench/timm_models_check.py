"""Run timm's own model tests (`tests/test_models.py` of pytorch-image-models) on composer networks
registered as timm models (composer.tools.timm_adapter), where timm can be imported.

    python bench/timm_models_check.py PATH/TO/test_models.py [--models composer_cvt13,...] [--stub-torchvision]
                                      [-- PYTEST ARGS]

timm's test file is not in its wheel: take it from the pytorch-image-models repository at the
version of the installed timm. Each selected composer network runs through every test of the file
(forward, backward, default_cfgs, TorchScript, features, forward_intermediates, FX); the summary
line is pytest's.

Two adjustments, both as timm itself classifies its models: composer's token networks (their
`forward_features` gives tokens, as timm's ViT does) join the file's `NON_STD_FILTERS`, and the
adapter's module joins `FEAT_INTER_FILTERS` (the modules whose models have forward_intermediates).

`--stub-torchvision` is for machines without torchvision (timm imports it but these tests need
none of it): a module that satisfies timm's imports, and a stand-in for torchvision's FX feature
extractor built on torch.fx with the tracer settings the tests give (leaf modules, wrapped
functions), returning the traced network's output.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUB = r'''
import sys, types
import torch
import torch.fx


class _Anything(types.ModuleType):
    """Attribute access gives classes or submodules, enough for timm's module-level imports."""
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            return type(name, (), {"__init__": lambda self, *a, **k: None, "BILINEAR": 2, "BICUBIC": 3,
                                   "NEAREST": 0, "LANCZOS": 1, "BOX": 4, "HAMMING": 5})
        module = _Anything(f"{self.__name__}.{name}")
        sys.modules[module.__name__] = module
        return module


for _name in ["torchvision", "torchvision.transforms", "torchvision.transforms.functional",
              "torchvision.transforms.v2", "torchvision.datasets", "torchvision.ops", "torchvision.ops.misc",
              "torchvision.io", "torchvision.models"]:
    sys.modules[_name] = _Anything(_name)

fx_extraction = types.ModuleType("torchvision.models.feature_extraction")


class NodePathTracer(torch.fx.Tracer):
    def __init__(self, leaf_modules=(), autowrap_functions=(), param_shapes_constant=False, **_):
        super().__init__(autowrap_functions=tuple(autowrap_functions), param_shapes_constant=param_shapes_constant)
        self._leaves = tuple(leaf_modules)

    def is_leaf_module(self, m, name):
        return isinstance(m, self._leaves) or super().is_leaf_module(m, name)


def get_graph_node_names(model, tracer_kwargs=None):
    graph = NodePathTracer(**(tracer_kwargs or {})).trace(model)
    names = [n.name for n in graph.nodes if n.op != "output"]
    return names, names


class _Extractor(torch.nn.Module):
    def __init__(self, graph_module, name):
        super().__init__()
        self.graph_module, self.name = graph_module, name

    def forward(self, x):
        return {self.name: self.graph_module(x)}


def create_feature_extractor(model, train_return_nodes=None, eval_return_nodes=None, tracer_kwargs=None, **_):
    graph = NodePathTracer(**(tracer_kwargs or {})).trace(model)
    return _Extractor(torch.fx.GraphModule(model, graph), (eval_return_nodes or train_return_nodes)[-1])


fx_extraction.NodePathTracer = NodePathTracer
fx_extraction.get_graph_node_names = get_graph_node_names
fx_extraction.create_feature_extractor = create_feature_extractor
sys.modules[fx_extraction.__name__] = fx_extraction
'''

CONFTEST = '''
import sys
sys.path.insert(0, {root!r})
{stub}
from composer.tools.timm_adapter import register_blueprints
register_blueprints()
'''


def token_networks(names: list[str]) -> list[str]:
    """The registered networks whose forward_features gives tokens (a class token carried out)."""
    import composer
    from composer.tools.timm_adapter import SHIPPED

    out = []
    for name in names:
        stem = name.removeprefix("composer_")
        path = SHIPPED / "timm" / f"{stem.removeprefix('timm_')}.yaml" if stem.startswith("timm_") else \
            SHIPPED / f"{stem}.yaml"
        if composer.plan(composer.load(path)).stages[-1].prefix_out:
            out.append(name)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_file", type=Path, help="timm's tests/test_models.py")
    parser.add_argument("--models", help="names to run, joined by commas (default: every shipped blueprint)")
    parser.add_argument("--stub-torchvision", action="store_true", help="stand in for torchvision (see above)")
    a, pytest_args = parser.parse_known_args()  # the rest (after --) goes to pytest
    pytest_args = [arg for arg in pytest_args if arg != "--"]
    if not a.test_file.is_file():
        parser.error(f"no such file: {a.test_file}")
    stub = STUB if a.stub_torchvision else ""
    if stub:
        exec(compile(stub, "<torchvision stand-in>", "exec"), {})
    sys.path.insert(0, str(ROOT))
    from composer.tools.timm_adapter import register_blueprints

    names = register_blueprints()
    chosen = a.models.split(",") if a.models else names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"not registered: {', '.join(unknown)} (registered: {', '.join(names)})")
    tokens = token_networks(chosen)
    source = a.test_file.read_text()
    source = re.sub(r"NON_STD_FILTERS = \[", lambda m: m.group(0) + "".join(f"'{n}', " for n in tokens), source, count=1)
    source = re.sub(r"FEAT_INTER_FILTERS = \[", lambda m: m.group(0) + "'timm_adapter', ", source, count=1)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "test_models.py").write_text(source)
        (Path(tmp) / "conftest.py").write_text(CONFTEST.format(root=str(ROOT), stub=stub))
        shutil.copy(a.test_file, Path(tmp) / "test_models_original.py.txt")
        cmd = [sys.executable, "-m", "pytest", str(Path(tmp) / "test_models.py"), "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", "-W", "ignore", "-k", " or ".join(chosen), *pytest_args]
        return subprocess.call(cmd, cwd=tmp)


if __name__ == "__main__":
    sys.exit(main())
