"""Eager against compiled throughput on this machine's CPU for the shipped blueprints, written to
docs/benchmarks-export.md (a benchmark, not a test: it times things). From the repository root:

    .venv/bin/python bench/export_bench.py                    # every blueprint, 224x224, batch 8
    .venv/bin/python bench/export_bench.py --only resnet50 vit_b16 --batch 4 --iters 3

Per blueprint (classes 1000, eval mode, no_grad, float32): images per second in eager mode, eager
with channels_last, and under `torch.compile(fullgraph=True)` (inductor, default settings); the
seconds the first compiled call took (tracing and code generation); and the largest difference of
the compiled outputs from eager's. Each timing is the median of `--iters` timed calls after one
warm-up call.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import composer  # noqa: E402
from composer.io.files import write_text  # noqa: E402


def throughput(fn, x: torch.Tensor, iters: int) -> float:
    fn(x)  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return x.shape[0] / statistics.median(times)


def measure(name: str, size: int, batch: int, iters: int) -> dict:
    net = composer.build(composer.load(ROOT / "blueprints" / f"{name}.yaml", overrides={"input.size": size})).eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    row = {"name": name, "params": sum(p.numel() for p in net.parameters())}
    with torch.no_grad():
        want = net(x)
        row["eager"] = throughput(net, x, iters)
        torch._dynamo.reset()
        compiled = torch.compile(net, fullgraph=True)
        start = time.perf_counter()
        got = compiled(x)
        row["compile_s"] = time.perf_counter() - start
        row["diff"] = float((got - want).abs().max())
        row["compiled"] = throughput(compiled, x, iters)
        net = net.to(memory_format=torch.channels_last)
        row["eager_cl"] = throughput(net, x.to(memory_format=torch.channels_last), iters)
    return row


def table(rows: list[dict]) -> list[str]:
    out = ["| blueprint | params | eager img/s | eager channels_last img/s | compiled img/s | compiled / eager | "
           "first compiled call s | max abs diff |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| `{r['name']}` | {r['params'] / 1e6:.1f} M | {r['eager']:.1f} | {r['eager_cl']:.1f} | "
                   f"{r['compiled']:.1f} | {r['compiled'] / r['eager']:.2f}x | {r['compile_s']:.0f} | {r['diff']:.1e} |")
    return out


def main() -> None:
    names = sorted(p.stem for p in (ROOT / "blueprints").glob("*.yaml"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=names, default=names, metavar="NAME")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--note", default="", help="A sentence about the conditions, printed under the table.")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "benchmarks-export.md")
    args = ap.parse_args()
    rows = []
    for i, name in enumerate(args.only, 1):
        print(f"[{i}/{len(args.only)}] {name} ...", file=sys.stderr, flush=True)
        rows.append(measure(name, args.size, args.batch, args.iters))
        r = rows[-1]
        print(f"    eager {r['eager']:.1f} img/s, compiled {r['compiled']:.1f} img/s "
              f"(first call {r['compile_s']:.0f} s), max abs diff {r['diff']:.1e}", file=sys.stderr, flush=True)
    command = "python bench/export_bench.py" + "".join(
        f" --{k} {v}" for k, v in (("size", args.size), ("batch", args.batch), ("iters", args.iters))) + (
        "" if args.only == names else " --only " + " ".join(args.only))
    machine = (f"{platform.machine()}, {os.cpu_count()} cores ({torch.get_num_threads()} torch threads), "
               f"Python {platform.python_version()}, torch {torch.__version__}")
    text = "\n".join([
        "# Benchmarks: eager and compiled throughput",
        "",
        f"<!-- written by `{command}`; rerun it to refresh -->",
        "",
        f"Machine: {machine}. Input {args.batch}x3x{args.size}x{args.size}, float32, inference (eval, no_grad);",
        f"median of {args.iters} timed calls after a warm-up. `compiled` is `torch.compile(net, fullgraph=True)`",
        "(CPU inductor, default settings, contiguous input); the first compiled call includes tracing and",
        "code generation. The difference column compares compiled outputs (logits) with eager ones.",
        "",
        *table(rows),
        "",
        *([args.note, ""] if args.note else []),
        "Not measured here: timm's own implementations of the same architectures (timm cannot be",
        "imported on this machine: it needs torchvision, which this project does not install), and GPU",
        "(bf16) throughput, since no GPU was lent when these figures were taken. Both comparisons run",
        "with this script's timing loop once those are available.",
        "",
    ])
    write_text(args.output, text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
