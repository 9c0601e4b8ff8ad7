"""CPU training: composer's own split of torch threads and decoding workers against every hand
setting on this machine (not a test: it times things). Writes the `threads` section of
docs/benchmarks-train.md.

    .venv/bin/python bench/threads_bench.py [--rounds 3] [--epochs 3]

Each setting trains the same small network on the same synthetic PNGs in a fresh process; the
settings run in alternating order, round after round (A/B/C..., then again), so a change in the
machine's load touches all of them alike. The figure is the training images/s of the last epoch
(the first one warms up), the best of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLUEPRINT = """\
name: bench-threads
input: {channels: 3, size: 64}
classes: 3
stem: {type: conv, channels: [16], stride: 2, act: gelu}
layout: C-C-T
blocks:
  C: {type: mbconv, expand: 4, kernel: 3, se: 0.25}
  T: {type: transformer, attention: relative, head_dim: 16}
stages:
  - {depth: 1, channels: 32, stride: 2}
  - {depth: 1, channels: 48, stride: 2}
  - {depth: 1, channels: 64, stride: 2}
head: {type: pool}
"""

# One run in a fresh process: with THREADS/WORKERS given, composer's split is replaced by them.
CHILD = """
import json, sys
from pathlib import Path
import composer
from composer.train import distributed, load_recipe, train
bp, data, out, epochs, threads, workers = sys.argv[1:7]
chosen = []
if threads != "default":
    distributed.cpu_split = lambda cores, processes, wanted: (int(threads), int(workers))
else:  # record what composer chose
    split = distributed.cpu_split
    distributed.cpu_split = lambda *a: chosen.append(split(*a)) or chosen[-1]
recipe = load_recipe(overrides={"epochs": int(epochs), "batch": 32, "data.workers": 4, "schedule.warmup_epochs": 0})
r = train(composer.load(bp), Path(data), recipe, Path(out), device="cpu", progress=False, exist_ok=True)
rows = [json.loads(l) for l in (Path(out) / "metrics.jsonl").read_text().splitlines()]
print(json.dumps({"images_per_s": rows[-1]["images_per_s"], "chosen": chosen[-1] if chosen else None}))
"""


def settings(cores: int) -> list[tuple[str, str]]:
    hand = [(str(t), str(w)) for t in sorted({1, max(1, cores // 2), cores}) for w in (0, 1, 2) if t + w <= cores + 2]
    return [("default", "default")] + hand


def run_once(tmp: Path, data: Path, threads: str, workers: str, epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = tmp / f"run-{threads}-{workers}"
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "bp.yaml"), str(data), str(out), str(epochs), threads, workers],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(f"setting {threads}/{workers} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--images", type=int, default=96, help="training images per class")
    args = ap.parse_args()
    from bench.report import machine, write_section
    from composer.train.distributed import usable_cores
    from tests.synthetic import make_folder

    cores = usable_cores()
    choices: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="composer-threads-"))
    (tmp / "bp.yaml").write_text(BLUEPRINT)
    data = make_folder(tmp / "data", {"train": args.images, "val": 8})
    # the synthetic images are 32 px; the network reads 64 (decoding resizes), as small data sets do
    load = os.getloadavg()[0]
    results: dict[tuple[str, str], list[float]] = {s: [] for s in settings(cores)}
    order = list(results)
    for i in range(args.rounds):
        for s in (order if i % 2 == 0 else order[::-1]):
            got = run_once(tmp, data, *s, args.epochs)
            results[s].append(got["images_per_s"])
            if got["chosen"]:
                choices.append(f"{got['chosen'][0]}/{got['chosen'][1]}")
            print(s, f"{results[s][-1]:.1f} images/s", got["chosen"] or "", flush=True)
    import statistics
    best_hand = max((max(v), s) for s, v in results.items() if s[0] != "default")
    median_hand = max((statistics.median(v), s) for s, v in results.items() if s[0] != "default")
    default = max(results[("default", "default")])
    default_median = statistics.median(results[("default", "default")])
    rows = ["| torch threads | decoding workers | images/s (best of rounds) | median | all rounds | best, relative to the best hand setting |",
            "| ---: | ---: | ---: | ---: | --- | ---: |"]
    for s, v in results.items():
        name = ("composer's choice", ", ".join(choices) + " (threads/workers per round)") if s[0] == "default" else s
        rows.append(f"| {name[0]} | {name[1]} | {max(v):.1f} | {statistics.median(v):.1f} | {', '.join(f'{x:.1f}' for x in v)} "
                    f"| {max(v) / best_hand[0]:.2f} |")
    text = "\n".join([
        "## CPU threads and decoding workers",
        "",
        f"Written by `bench/threads_bench.py --rounds {args.rounds} --epochs {args.epochs}` on {machine()}; "
        f"{cores} usable cores, load average {load:.1f} at the start.",
        f"A C-C-T hybrid at 64x64, batch 32, {3 * args.images} synthetic PNGs, float32; the last epoch's "
        "training images/s; settings alternated round by round, each in a fresh process.",
        "",
        *rows,
        "",
        f"composer's default reaches {default / best_hand[0]:.0%} of the best hand setting by the best round "
        f"({best_hand[1][0]} threads, {best_hand[1][1]} workers), and {default_median / median_hand[0]:.0%} of the best "
        f"by the median of rounds ({median_hand[1][0]} threads, {median_hand[1][1]} workers).",
        "",
        "composer counts the cores other work keeps busy when a run starts (the kernel's runnable",
        "threads) and gives torch only the free ones: torch's threads meet at a barrier after every",
        "operation, so one thread on a busy core stalls them all, and on a loaded machine a second",
        "thread costs far more than it brings (the rows with 2 threads). A decoding worker gets a core",
        "of its own only from 3 free cores up: small PNGs decode faster than a core computes a step.",
    ])
    write_section("threads", text, ROOT / "docs" / "benchmarks-train.md")


if __name__ == "__main__":
    main()
