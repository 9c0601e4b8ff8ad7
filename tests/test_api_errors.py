"""Every mistake in an argument of the Python API raises composer's error class (ComposerError >
BlueprintError > ArgumentError, also a ValueError), with a message that names the argument and a
location that names the call; every exception class composer defines derives from ComposerError."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import composer
from composer import ArgumentError, BlueprintError, ComposerError

from .conftest import ROOT, TINY


@pytest.fixture(scope="module")
def bp():
    return composer.loads(TINY, file="tiny.yaml")


@pytest.fixture(scope="module")
def net(bp):
    return composer.build(bp)


X = torch.zeros(1, 3, 32, 32)

# (id, call(bp, net, tmp_path), location, message fragment)
PROBES = [
    ("out-indices-range", lambda bp, net, d: composer.build(bp, features_only=True, out_indices=[9]),
     "composer.build()", "`out_indices`: index 9 is out of range; there are 3 (0 to 2"),
    ("out-indices-text", lambda bp, net, d: composer.build(bp, features_only=True, out_indices="a"),
     "composer.build()", "`out_indices`: expected None, an int or a list of ints, not str ('a')"),
    ("out-indices-count", lambda bp, net, d: composer.build(bp, features_only=True, out_indices=4),
     "composer.build()", "`out_indices=4`: asks for the last 4 of 3"),
    ("out-indices-repeated", lambda bp, net, d: composer.build(bp, features_only=True, out_indices=[1, -2]),
     "composer.build()", "`out_indices`: give distinct indices, not [1, -2]"),
    ("out-indices-without-features", lambda bp, net, d: composer.build(bp, out_indices=[0]),
     "composer.build()", "`out_indices` chooses the levels of a backbone; it needs `features_only=True`"),
    ("weights-from", lambda bp, net, d: composer.build(bp, weights={}, weights_from="tim"),
     "composer.build()", "`weights_from`: 'tim' is not one of auto, composer, timm, transformers"),
    ("parts-unknown", lambda bp, net, d: composer.build(bp, weights={}, parts=["stm"]),
     "composer.build()", "`parts`: unknown part `stm` (expected stem, head or a stage index)"),
    ("parts-stage", lambda bp, net, d: composer.build(bp, weights={}, parts=[5]),
     "composer.build()", "`parts`: stage 5 does not exist (the network has stages 0 to 1)"),
    ("parts-text", lambda bp, net, d: composer.build(bp, weights={}, parts="stem"),
     "composer.build()", "`parts`: expected a list of stem, head and stage indices"),
    ("parts-without-weights", lambda bp, net, d: composer.build(bp, parts=["stem"]),
     "composer.build()", "`parts` needs `weights`"),
    ("strict", lambda bp, net, d: composer.build(bp, strict="no"),
     "composer.build()", "`strict` is true or false, not 'no'"),
    ("save-safetensors-metadata", lambda bp, net, d: composer.save(net, bp, d / "m.safetensors", extra={"epoch": 3}),
     "composer.save()", "`extra`: safetensors metadata holds strings only; `epoch` is int"),
    ("save-reserved-entry", lambda bp, net, d: composer.save(net, bp, d / "m.pt", extra={"state_dict": {}}),
     "composer.save()", "`extra`: `state_dict` is an entry composer writes itself"),
    ("save-key", lambda bp, net, d: composer.save(net, bp, d / "m.pt", extra={1: "a"}),
     "composer.save()", "`extra`: the keys are strings, not int (1)"),
    ("profile-batch-text", lambda bp, net, d: composer.profile(bp, batch="4"),
     "composer.profile()", "`batch`: '4' is not a whole number from 1 to"),
    ("profile-batch-zero", lambda bp, net, d: composer.profile(bp, batch=0),
     "composer.profile()", "`batch`: 0 is not a whole number from 1 to"),
    ("override-size", lambda bp, net, d: composer.load(d / "bp.yaml", overrides={"input.size": "big"}),
     "composer.load()", "input.size: input should be a valid integer, found 'big' (set by `input.size=big`)"),
    ("override-key", lambda bp, net, d: composer.load(d / "bp.yaml", overrides={"input..size": 3}),
     "composer.load()", "cannot set `input..size`: a key part is empty"),
    ("train-memory-dtype", lambda bp, net, d: composer.train_memory(bp, batch=2, dtype="f17"),
     "composer.train_memory()", "`dtype`: 'f17' is not one of float32"),
    ("intermediates-indices", lambda bp, net, d: net.forward_intermediates(X, indices=[7]),
     "forward_intermediates()", "`indices`: index 7 is out of range; there are 3"),
    ("intermediates-indices-text", lambda bp, net, d: net.forward_intermediates(X, indices="0"),
     "forward_intermediates()", "`indices`: expected None, an int or a list of ints, not str ('0')"),
    ("intermediates-format", lambda bp, net, d: net.forward_intermediates(X, output_fmt="NHWC"),
     "forward_intermediates()", "`output_fmt`: 'NHWC' is not one of NCHW, NLC"),
    ("intermediates-flag", lambda bp, net, d: net.forward_intermediates(X, norm=1),
     "forward_intermediates()", "`norm` is true or false, not 1"),
    ("prune-indices", lambda bp, net, d: net.prune_intermediate_layers(indices=[3]),
     "prune_intermediate_layers()", "`indices`: index 3 is out of range"),
    ("grad-checkpointing", lambda bp, net, d: net.set_grad_checkpointing("yes"),
     "set_grad_checkpointing()", "`enable`: expected True or False, not 'yes'"),
    ("reset-classifier", lambda bp, net, d: net.reset_classifier(-1),
     "reset_classifier()", "`num_classes`: expected a whole number >= 0, not -1"),
]


@pytest.mark.parametrize("call, location, message", [p[1:] for p in PROBES], ids=[p[0] for p in PROBES])
def test_bad_arguments_raise_composers_error_located_at_the_call(call, location, message, bp, net, tmp_path):
    (tmp_path / "bp.yaml").write_text(TINY)
    with pytest.raises(ComposerError) as info:
        call(bp, net, tmp_path)
    exc = info.value
    assert isinstance(exc, BlueprintError)
    if "set by" not in message:  # a blueprint value set by an override is a BlueprintError, not an argument
        assert isinstance(exc, ArgumentError) and isinstance(exc, ValueError)
    assert [p.file for p in exc.problems] == [location]
    assert "<command line>" not in str(exc) and "--" not in str(exc).split(":", 1)[1]
    assert message in str(exc), str(exc)


def test_nothing_is_written_when_metadata_is_refused(bp, net, tmp_path):
    with pytest.raises(ArgumentError):
        composer.save(net, bp, tmp_path / "m.safetensors", extra={"epoch": 3})
    assert list(tmp_path.iterdir()) == []
    composer.save(net, bp, tmp_path / "m.safetensors", extra={"epoch": "3"})  # text is kept as given
    assert composer.load_model(tmp_path / "m.safetensors").num_classes == 10


def test_the_command_line_locates_the_same_mistake_at_its_options(tmp_path):
    from typer.testing import CliRunner

    from cli.app import app

    (tmp_path / "bp.yaml").write_text(TINY)
    r = CliRunner().invoke(app, ["profile", str(tmp_path / "bp.yaml"), "--set", "input..size=3"])
    assert r.exit_code == 1
    assert "<command line>: cannot set `input..size`: a key part is empty" in r.stderr
    # ... and a Python call made after it is located at the call again
    with pytest.raises(ArgumentError, match=r"composer.load\(\): cannot set `input..size`"):
        composer.load(tmp_path / "bp.yaml", overrides={"input..size": 3})


def _all_subclasses(cls: type) -> set[type]:
    return {cls, *(s for c in cls.__subclasses__() for s in _all_subclasses(c))}


def test_every_exception_class_of_composer_derives_from_one_base():
    import importlib
    import pkgutil

    import composer as package

    for info in pkgutil.walk_packages(package.__path__, "composer."):
        importlib.import_module(info.name)
    ours = [c for c in _all_subclasses(BaseException)
            if c.__module__.startswith("composer.") and not issubclass(c, KeyboardInterrupt)]
    names = {c.__name__ for c in ours}
    assert {"BlueprintError", "InputSizeError", "WriteError", "ExportError", "TimmUnavailable", "DataError",
            "RecipeError", "WeightsError", "DeviceError", "ImageRefused", "MissingExtra"} <= names
    assert [c.__name__ for c in ours if not issubclass(c, ComposerError)] == []
    # the built-in classes callers already catch are kept
    from composer.io.files import WriteError
    from composer.tools.timm_adapter import TimmUnavailable

    assert issubclass(composer.InputSizeError, ValueError) and issubclass(WriteError, OSError)
    assert issubclass(TimmUnavailable, ImportError)


def test_the_base_is_exported_without_torch():
    code = "import sys, composer; composer.ComposerError; composer.BlueprintError; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
