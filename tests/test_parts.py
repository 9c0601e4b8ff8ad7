"""The parts of a network, enumerated once (composer/network/parts.py), and what is done once per run: the
plan of `composer train`, the read of a checkpoint by eval, the memory room every consumer sees."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import composer
import composer.api
import composer.io.room
from cli.app import app
from composer.layers.tokens import map_to_tokens, tokens_to_map
from composer.network.parts import network_parts
from composer.train import autobatch

from .conftest import BLUEPRINTS, ROOT, small
from .synthetic import TINY_NET, make_folder, quick_train_args

runner = CliRunner()

# transitions, a class token carried to a token head, map <-> tokens, strided first blocks
NAMES = ["cvt13", "coatnet0", "vit_b16", "resnet50", "convnext_tiny"]


@pytest.mark.parametrize("name", NAMES)
def test_every_part_is_where_its_path_says_and_sees_the_shapes_it_states(name):
    plan = composer.plan(small(name, {"classes": 10}))
    net = composer.build(plan, device="meta")
    parts = network_parts(plan)
    seen: dict[str, tuple] = {}

    def record(path: str, args: tuple, out: torch.Tensor) -> None:
        seen.setdefault(path, (tuple(args[0].shape[1:]), tuple(out.shape[1:])))

    hooks = [p.module(net).register_forward_hook(lambda m, args, out, path=p.path: record(path, args, out))
             for p in parts]
    net(torch.empty(2, *plan.input_shape, device="meta"))
    for h in hooks:
        h.remove()
    assert set(seen) == {p.path for p in parts}, "every part ran"
    ran = [path for path in seen if path in {p.path for p in parts.leaves}]  # a stage finishes after its blocks
    assert ran == [p.path for p in parts.leaves], "in the order listed"
    for p in parts:
        assert seen[p.path] == (p.in_shape, p.out_shape), p.path
    # the top parts are the network's children, the leaves every stem/transition/block/head module
    assert [p.path for p in parts.top] == ["stem", *(f"stages.{i}" for i in range(len(plan.stages))), "head"]
    blocks = [p for p in parts if p.kind == "block"]
    assert len(blocks) == sum(sp.depth for sp in plan.stages)
    assert sum(p.kind == "transition" for p in parts) == sum(sp.transition.type != "none" for sp in plan.stages)
    total = sum(t.numel() for t in net.parameters())
    assert sum(sum(t.numel() for t in p.module(net).parameters()) for p in parts.top) == total


@pytest.mark.parametrize("name", NAMES)
def test_a_stages_cost_is_its_transition_tokens_and_blocks(name):
    plan = composer.plan(small(name, {"classes": 10}))
    parts = network_parts(plan)
    net = composer.build(plan, device="meta")
    for stage in (p for p in parts if p.kind == "stage"):
        inner = [p for p in parts if p.stage == stage.stage and p.kind != "stage"]
        own = sum(t.numel() for n, t in stage.module(net).named_parameters() if "." not in n)  # class token, pos embed
        assert stage.cost().params == sum(p.cost().params for p in inner) + own
        assert stage.cost().macs == sum(p.cost().macs for p in inner)
    assert sum(p.cost().params for p in parts.top) == composer.profile(plan).params


def test_parts_name_the_report_rows():
    plan = composer.plan(small("coatnet0"))
    assert [p.name for p in composer.profile(plan).parts] == [p.name for p in network_parts(plan).top]
    assert [p.name for p in network_parts(plan).top] == ["stem", "s1", "s2", "s3", "s4", "head"]
    assert network_parts(plan)["stages.2.blocks.1"].title == "block 1 of stage 2"


def test_tokens_and_maps_convert_both_ways():
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    tokens = map_to_tokens(x)
    assert tokens.shape == (2, 20, 3)
    assert torch.equal(tokens[:, 6], x[:, :, 1, 1])  # row-major grid positions
    assert torch.equal(tokens_to_map(tokens, (4, 5)), x)
    with_class = torch.cat([torch.full((2, 1, 3), -1.0), tokens], dim=1)
    assert torch.equal(tokens_to_map(with_class, (4, 5), prefix=1), x)


# --- one memory room for every consumer -------------------------------------------------------------

class _Limits:
    """A stand-in for the resource module: a soft address-space limit of `room` bytes."""

    RLIMIT_AS, RLIMIT_DATA, RLIM_INFINITY = 9, 2, -1

    def __init__(self, room: int):
        self.room = room

    def getrlimit(self, which):
        return (self.room, self.RLIM_INFINITY) if which == self.RLIMIT_AS else (self.RLIM_INFINITY,) * 2


def test_batch_auto_and_the_build_guard_see_the_same_room(monkeypatch):
    """With 16 GiB free but a 6 GiB address-space limit, both see 6 GiB (less what is mapped)."""
    monkeypatch.setattr(composer.io.room, "free_memory", lambda: 16 << 30)
    monkeypatch.setattr(composer.io.room, "_cgroup_room", lambda: None)
    monkeypatch.setattr(composer.io.room, "resource", _Limits(6 << 30))
    monkeypatch.setattr(composer.io.room, "_status_bytes", lambda field: 1 << 30 if field == "VmSize" else 0)
    assert autobatch.free_memory(torch.device("cpu")) == composer.api.available_memory() == 5 << 30
    plan = composer.plan(composer.loads(TINY_NET))
    recipe = composer.train.load_recipe(None)
    _, info = autobatch.auto_batch(plan, recipe, torch.device("cpu"), limit=10_000)
    assert info["free_bytes"] == int((5 << 30) * autobatch.HEADROOM)
    monkeypatch.setattr(composer.io.room, "_cgroup_room", lambda: 2 << 30)  # a cgroup limit, tighter still
    assert autobatch.free_memory(torch.device("cpu")) == composer.api.available_memory() == 2 << 30


def test_under_a_real_rlimit_both_see_the_same_room():
    code = ("import resource, torch, composer.api\n"
            "from composer.train import autobatch\n"
            "from composer.io.room import _status_bytes\n"
            "resource.setrlimit(resource.RLIMIT_AS, (_status_bytes('VmSize') + (1 << 30), resource.RLIM_INFINITY))\n"
            "a, b = autobatch.free_memory(torch.device('cpu')), composer.api.available_memory()\n"
            "assert a <= 1 << 30 and b <= 1 << 30 and abs(a - b) < 64 << 20, (a, b)\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# --- once per run ------------------------------------------------------------------------------------

def _counting(monkeypatch, module, name: str) -> list:
    calls: list = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


def test_train_plans_once_and_eval_reads_the_checkpoint_once(tmp_path, monkeypatch):
    import composer.train.checkpoints
    import composer.weights.saved

    data = make_folder(tmp_path / "data", {"train": 16, "val": 8})
    bp = tmp_path / "tiny.yaml"
    bp.write_text(TINY_NET)
    import composer.planning.planner

    # every plan() ends with the network-wide checks: one call per planning, whoever imported plan()
    plans = _counting(monkeypatch, composer.planning.planner, "_network_checks")
    r = runner.invoke(app, quick_train_args(bp, data, tmp_path / "run"))
    assert r.exit_code == 0, r.output
    assert len(plans) == 1, f"planned {len(plans)} times"

    by_eval = _counting(monkeypatch, composer.train.checkpoints, "load_pickle")
    by_model = _counting(monkeypatch, composer.weights.saved, "load_pickle")
    r = runner.invoke(app, ["eval", str(tmp_path / "run" / "best.pt"), "--data", str(data), "--workers", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert len(by_eval) + len(by_model) == 1, f"read {len(by_eval)} + {len(by_model)} times"


def test_profiling_traces_a_stage_s_repeated_blocks_once(monkeypatch):
    """A 12-block stage is traced for its first block and one repeat (each block knows its place in
    its stage, which must not make every block look new), then replayed."""
    from composer.blocks.mbconv.module import MBConv

    calls = []
    real = MBConv.forward
    monkeypatch.setattr(MBConv, "forward", lambda self, x: calls.append(1) or real(self, x))
    bp = composer.load(BLUEPRINTS / "coatnet0.yaml", overrides={"input.size": 64, "stages.1.depth": 12})
    report = composer.profile(bp)
    assert len(calls) <= 2 + 3  # stage 0: 2 blocks; stage 1: the first, one repeat and an odd one at most
    assert report.params == sum(t.numel() for t in composer.build(bp, device="meta").parameters())
