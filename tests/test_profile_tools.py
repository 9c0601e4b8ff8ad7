"""Trustworthy profiles: complete operator coverage, the analytic second opinion, training memory
and resolution sweeps."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import composer
from cli.app import app
from composer.blocks.mbconv import MBConvConfig
from composer.analysis.memory import train_memory

from .conftest import BLUEPRINTS, ROOT

runner = CliRunner()
ALL = sorted(p.stem for p in BLUEPRINTS.glob("*.yaml"))

# Operators the blueprints run that cost no MACs by convention (counted with --elementwise):
# activations, residual adds and scales, softmax, pooling, and SE's global mean; the MetaFormers'
# squared activations and pool-minus-input, ConvNeXt V2's response norm (a root of summed squares).
NAMED_FREE = {
    "aten::add", "aten::add_", "aten::mul", "aten::rsub", "aten::div", "aten::sum", "aten::mean",
    "aten::relu", "aten::relu_", "aten::hardtanh", "aten::hardtanh_", "aten::gelu", "aten::silu", "aten::silu_",
    "aten::sigmoid", "aten::hardswish", "aten::hardswish_", "aten::hardsigmoid", "aten::hardsigmoid_", "aten::tanh",
    "aten::_softmax", "aten::_safe_softmax", "aten::max_pool2d_with_indices",
    "aten::pow", "aten::sqrt", "aten::sub", "aten::avg_pool2d",
}


@pytest.mark.parametrize("name", ALL)
def test_every_operator_is_counted_or_deliberately_free(name):
    report = composer.profile(BLUEPRINTS / f"{name}.yaml")
    assert report.uncounted_ops == {}
    assert set(report.free_ops) <= NAMED_FREE, set(report.free_ops) - NAMED_FREE
    with_elementwise = composer.profile(BLUEPRINTS / f"{name}.yaml", elementwise=True)
    assert with_elementwise.macs > report.macs


@pytest.mark.parametrize("name", ALL)
def test_analytic_cost_agrees_with_the_trace(name):
    result = composer.check(BLUEPRINTS / f"{name}.yaml")
    assert result.ok, [p for p in result.parts if not p.ok]
    assert [p.name for p in result.parts][0] == "stem" and result.parts[-1].name == "head"


def test_check_reports_a_disagreement_and_exits_1(monkeypatch):
    real = MBConvConfig.cost
    monkeypatch.setattr(MBConvConfig, "cost", lambda self, ctx: real(self, ctx) * 2 if ctx.stride > 1 else real(self, ctx))
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--check"])
    assert r.exit_code == 1
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith(("s1 ", "s3 "))}
    assert lines["s1"].endswith("MISMATCH") and lines["s3"].endswith("ok")
    assert "check failed" in r.stdout
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--check", "--json"])
    d = json.loads(r.stdout)
    assert r.exit_code == 1 and d["check"]["ok"] is False


def test_sizes_give_one_result_each_with_quadratic_attention():
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "vit_b16.yaml"), "--sizes", "224,448", "--json"])
    assert r.exit_code == 0, r.output
    small, large = json.loads(r.stdout)
    assert small["input"] == [1, 3, 224, 224] and large["input"] == [1, 3, 448, 448]
    d, layers = 768, 12
    n1, n2 = 197, 785  # class token + 14x14 and 28x28 patches
    def attention(n):  # QK^T and AV in every layer
        return layers * 2 * n * n * d

    def patches(n):
        return (n - 1) * 3 * 16 * 16 * d

    # the rest (norms, projections, MLPs; the head is negligible) grows linearly with the tokens
    per_token = (small["macs"] - attention(n1) - patches(n1)) / n1
    expected = attention(n2) + patches(n2) + per_token * n2
    assert large["macs"] == pytest.approx(expected, rel=2e-3)
    assert large["macs"] / small["macs"] > 4.2  # more than the area ratio


def test_sizes_table_and_errors():
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--sizes", "128,224,384"])
    assert r.exit_code == 0
    assert [line for line in r.stdout.splitlines() if ": input" in line] == [
        "coatnet-0: input 1x3x128x128", "coatnet-0: input 1x3x224x224", "coatnet-0: input 1x3x384x384"]
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "vit_b16.yaml"), "--sizes", "224,100"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "<command line>: input.size:" in r.stderr and "input size 100x100 is not divisible by the stem's patch size 16" in r.stderr
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--sizes", "128,x"])
    assert r.exit_code == 1 and "`x` is not a positive whole number" in r.stderr
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--sizes", "128", "--size", "64"])
    assert r.exit_code == 1 and "either `--size` or `--sizes`" in r.stderr


def test_set_overrides_apply_before_validation_with_located_errors():
    args = ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--json"]
    r = runner.invoke(app, args + ["--set", "stages.2.depth=6", "--set", "blocks.C.kernel=5"])
    d = json.loads(r.stdout)
    assert r.exit_code == 0 and d["params"] > 25036820
    assert d["stages"][3]["label"].endswith("x6") and "k5" in d["stages"][1]["label"]
    r = runner.invoke(app, args + ["--set", "blocks.C.kernel=4"])
    assert r.exit_code == 1 and "<command line>: blocks.C.kernel:" in r.stderr and "kernel 4 is even" in r.stderr
    assert "set by `blocks.C.kernel=4`" in r.stderr  # the value came from the command line, not the file


def test_train_memory_parts_dtype_and_optimizer():
    plan = composer.plan(composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"input.size": 64}))
    fp32 = train_memory(plan, batch=4, optimizer="adamw")
    assert fp32.weights == 4 * composer.profile(plan).params
    assert fp32.gradients == fp32.weights and fp32.optimizer_state == 2 * fp32.weights
    assert fp32.activations == sum(fp32.activations_by_part.values()) > 0
    assert set(fp32.activations_by_part) == {"stem", "s1", "s2", "s3", "s4", "head"}
    bf16 = train_memory(plan, batch=4, dtype="bf16", optimizer="sgd")
    assert bf16.weights * 2 == fp32.weights and bf16.optimizer_state == 0
    assert bf16.activations < fp32.activations
    double = train_memory(plan, batch=8, optimizer="adamw")
    assert double.activations == pytest.approx(2 * fp32.activations, rel=0.01)
    r = runner.invoke(app, ["profile", str(BLUEPRINTS / "coatnet0.yaml"), "--size", "64", "--train", "--batch", "4",
                            "--json"])
    d = json.loads(r.stdout)
    assert d["train_memory"]["total"] == fp32.total and d["train_memory"]["activations_by_part"]["s1"] > 0


MEASURE = """
import json, sys, composer
from composer.analysis.memory import measure_train_peak, train_memory
plan = composer.plan(composer.load(sys.argv[1], overrides={"input.size": 64, "classes": 10}))
estimate = train_memory(plan, batch=32, optimizer="adamw").total
print(json.dumps({"estimate": estimate, "measured": measure_train_peak(plan, batch=32, optimizer="adamw")}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads resident memory from /proc (Linux only)")
def test_train_memory_estimate_within_15_percent_of_a_real_cpu_step():
    """A real AdamW step of CoAtNet-0 at 64x64, batch 32, in a fresh process: peak resident memory."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(BLUEPRINTS / "coatnet0.yaml")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    d = json.loads(out.stdout)
    assert d["estimate"] == pytest.approx(d["measured"], rel=0.15)


@pytest.mark.skipif(not hasattr(__import__("os"), "wait4"), reason="needs os.wait4 to read a child's peak memory")
def test_ten_billion_parameters_profile_without_weights():
    """No weight is allocated: a ~10B-parameter CoAtNet profiles in a process whose peak resident memory,
    read from outside it, stays under 2 GiB (its time is recorded by bench/benchmarks.py, not here)."""
    import os

    sets = ["stages.2.channels=4096", "stages.3.channels=8192", "stages.2.depth=26", "stages.3.depth=6"]
    args = [sys.executable, "-c", "from cli.app import main; main()", "profile", str(BLUEPRINTS / "coatnet0.yaml"),
            "--json", *[a for s in sets for a in ("--set", s)]]
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    assert json.loads(out)["params"] > 9.9e9
    assert usage.ru_maxrss * 1024 < 2 * 2**30, f"peak {usage.ru_maxrss / 2**20:.2f} GiB"


@pytest.fixture
def plugin_block():
    """A block family registered from outside the library, the way a plugin adds one."""
    from typing import Literal

    import torch
    from pydantic import Field

    from composer.blocks import BLOCKS, BlockConfig, register_block

    @register_block
    class GatedConvConfig(BlockConfig):
        """A plugin block: 3x3 conv gated by a sigmoid of itself, with a residual."""

        can_downsample = False
        can_change_width = False
        type: Literal["gated_conv"] = Field("gated_conv", description="Block family: gated conv (test plugin).")

        def build(self, ctx):
            class GatedConv(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = torch.nn.Conv2d(ctx.out_channels, ctx.out_channels, 3, padding=1)

                def forward(self, x):
                    y = self.conv(x)
                    return x + y * torch.sigmoid(y)

            return GatedConv()

    yield "gated_conv"
    BLOCKS.unregister("gated_conv")


PLUGIN_BLUEPRINT = """\
layout: C-G
input: {size: 32}
classes: 10
stem: {type: conv, channels: [16], stride: 2}
blocks: {C: {type: mbconv}, G: {type: gated_conv}}
stages:
  - {depth: 1, channels: 16, stride: 2}
  - {depth: 2, channels: 16}
"""


def test_a_plugin_block_builds_profiles_and_is_reported_unchecked(plugin_block, write):
    path = write(PLUGIN_BLUEPRINT)
    report = composer.profile(path)
    assert report.uncounted_ops == {} and report.parts[2].macs == 2 * 16 * 16 * 9 * 8 * 8
    r = runner.invoke(app, ["profile", str(path), "--check"])
    assert r.exit_code == 0, r.output
    check_table = r.stdout.split("check, one sample")[1]
    s1, s2 = (next(line for line in check_table.splitlines() if line.startswith(p)) for p in ("s1 ", "s2 "))
    assert s1.endswith("ok") and s2.endswith("unchecked: no analytic cost")
