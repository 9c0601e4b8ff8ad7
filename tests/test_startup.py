"""Light start-up: the commands that only read, validate, describe, compare or search blueprints do
not import torch (shell completion runs the program on every TAB); the ones that build or trace do."""

import subprocess
import sys

import pytest

from .conftest import ROOT

# runs the command line in a fresh interpreter and reports, after it, whether torch was imported
PROBE = ("import sys\nfrom cli.app import main\nsys.argv = ['composer', *sys.argv[1:]]\n"
         "try:\n    main()\nfinally:\n    sys.stderr.write('\\nTORCH=%d\\n' % ('torch' in sys.modules))")

COATNET = "blueprints/coatnet0.yaml"
LIGHT = [
    ["--help"],
    ["validate", COATNET],
    ["blocks"],
    ["schema"],
    ["compare", COATNET, "blueprints/resnet50.yaml", "--json"],
    ["search", "spaces/coatnet.yaml", "--budget", "macs=4.5G,params=30M", "--limit", "20"],
    ["profile", "--help"],
    ["train", "--help"],
]


def run(args: list[str]) -> tuple[subprocess.CompletedProcess, bool]:
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.stderr.rstrip().endswith(("TORCH=0", "TORCH=1")), r.stderr
    return r, r.stderr.rstrip().endswith("TORCH=1")


@pytest.mark.parametrize("args", LIGHT, ids=" ".join)
def test_light_commands_do_not_import_torch(args):
    r, imported = run(args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert not imported, f"`composer {' '.join(args)}` imported torch"


def test_import_composer_and_plan_without_torch():
    code = ("import sys, composer\np = composer.plan('%s')\nassert p.stages and composer.Plan is type(p)\n"
            "from composer.analysis.crosscheck import analytic\nassert all(c is not None for _, c in analytic(p))\n"
            "print('torch' in sys.modules)" % COATNET)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_profile_still_traces_with_torch():
    r, imported = run(["profile", COATNET, "--json"])
    assert r.returncode == 0, r.stderr
    assert imported and '"params": 25036820' in r.stdout
