"""Benchmarks of the commands used before training (not tests: they time things). From the root:

    .venv/bin/python bench/lookahead.py             # rewrites its section of docs/benchmarks.md

1. Start-up: wall time of each command in a fresh process (median of 5), against the floor of
   `python -c "import torch"` and of a bare Python; and whether the command imported torch.
2. Search: candidates per minute over spaces/coatnet.yaml (5,832 CoAtNet-like networks), with and
   without a training-memory budget.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from report import ROOT, machine, write_section

SPACE = "spaces/coatnet.yaml"
COATNET = "blueprints/coatnet0.yaml"
PY = sys.executable
# runs the command, then says on stderr whether torch was imported
PROBE = ("import sys; from cli.app import main\n"
         "try:\n    main()\nfinally:\n    sys.stderr.write('\\nTORCH=%d\\n' % ('torch' in sys.modules))")

COMMANDS = [
    ("composer --help", ["--help"]),
    ("composer validate coatnet0", ["validate", COATNET]),
    ("composer blocks", ["blocks"]),
    ("composer schema", ["schema"]),
    ("composer compare coatnet0 resnet50", ["compare", COATNET, "blueprints/resnet50.yaml"]),
    ("composer search (MACs and params budget)", ["search", SPACE, "--budget", "macs=4.5G,params=30M", "--top", "3"]),
    ("composer profile coatnet0", ["profile", COATNET]),
]


def timed(args: list[str], repeats: int = 5) -> tuple[float, str]:
    walls, err = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr}")
        err = proc.stderr
    return statistics.median(walls), err


def startup_rows() -> list[str]:
    python, _ = timed([PY, "-c", "pass"])
    torch_floor, _ = timed([PY, "-c", "import torch"])
    rows = [f"Floors: bare Python {python:.2f} s, `python -c \"import torch\"` {torch_floor:.2f} s.", "",
            "| command | wall time | / import torch | imports torch |", "| --- | ---: | ---: | :---: |"]
    for label, args in COMMANDS:
        wall, err = timed([PY, "-c", PROBE, *args])
        uses = "yes" if "TORCH=1" in err else "no"
        rows.append(f"| `{label}` | {wall:.2f} s | {wall / torch_floor:.2f} | {uses} |")
        print(rows[-1], flush=True)
    return rows


# where a profile's time goes, in one process: each step after the one before
BREAKDOWN = """\
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import cli.app, composer
from composer.analysis.tracing import profile
t2 = time.perf_counter()
import torch._dynamo
t3 = time.perf_counter()
plan = composer.plan("%s")
profile(plan)
t4 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3]))
""" % COATNET


def profile_breakdown() -> str:
    runs = []
    for _ in range(5):
        proc = subprocess.run([PY, "-c", BREAKDOWN], cwd=ROOT, capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout))
    torch_s, composer_s, dynamo_s, trace_s = (statistics.median(r[i] for r in runs) for i in range(4))
    return (f"Where `composer profile coatnet0` spends its time beyond starting Python (medians of 5, one process): "
            f"`import torch` {torch_s:.2f} s, the command line and composer {composer_s:.2f} s, `torch._dynamo` "
            f"{dynamo_s:.2f} s, loading, planning and tracing {trace_s:.2f} s. torch imports `torch._dynamo` itself "
            "on the first call of a function it guards against compilation (`torch._disable_dynamo`): "
            "`TorchDispatchMode.__torch_dispatch__` and the Python meta kernels (`torch._refs`) that batch norm, "
            "GELU and other operators run on meta tensors; any meta-tensor trace pays it.")


def search_rows() -> list[str]:
    rows = ["| budget | candidates | within budget | front | wall time | candidates per minute |",
            "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for budget in ("macs=4.5G,params=30M", "macs=4.5G,params=30M,train_memory=24GiB@128"):
        start = time.perf_counter()
        proc = subprocess.run([PY, "-c", "from cli.app import main; main()", "search", SPACE, "--budget", budget,
                               "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        d = json.loads(proc.stdout)
        rows.append(f"| `{budget}` | {d['evaluated']:,} | {d['fitting']:,} | {len(d['front'])} | {wall:.1f} s "
                    f"| {60 * d['evaluated'] / wall:,.0f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    text = "\n".join([
        "## Before training: start-up and search",
        "",
        f"Written by `.venv/bin/python bench/lookahead.py` on {machine()}.",
        "",
        "Each command in a fresh process, median wall time of 5 runs, with whether it imported torch.",
        "",
        *startup_rows(),
        "",
        profile_breakdown(),
        "",
        f"`composer search {SPACE}` over all 5,832 candidates, in a fresh process (start-up included).",
        "Parameters and MACs come from the blocks' analytic costs; the training-memory budget traces",
        "each distinct stage once on meta tensors (`composer.analysis.memory.ActivationCache`).",
        "",
        *search_rows(),
    ])
    write_section("lookahead", text)


if __name__ == "__main__":
    main()
