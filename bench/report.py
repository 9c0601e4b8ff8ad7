"""docs/benchmarks.md is written by several benchmark scripts: each owns one section, between
`<!-- begin NAME -->` and `<!-- end NAME -->`, and rewrites only that (atomically), so a run of one
script leaves the others' results as they were."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "benchmarks.md"
HEADER = ("# Benchmarks\n\nEach section is written by the script it names; rerun that script to refresh it.\n"
          "Training (trainer overhead, decode + augment throughput, DDP scaling) is in\n"
          "[benchmarks-train.md](benchmarks-train.md), written by `bench/train_bench.py`; eager against compiled\n"
          "throughput in [benchmarks-export.md](benchmarks-export.md), written by `bench/export_bench.py`.\n")


def machine() -> str:
    """This machine in one line (torch's version asked of a child, so the caller stays light)."""
    torch_version = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"],
                                   capture_output=True, text=True, check=True).stdout.strip()
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch_version}"


def write_section(name: str, text: str, target: Path = TARGET) -> None:
    """Replace (or append) the section `name` of `target` (docs/benchmarks.md) with `text`."""
    current = target.read_text() if target.exists() else HEADER
    block = f"<!-- begin {name} -->\n{text.strip()}\n<!-- end {name} -->"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    updated = pattern.sub(lambda _: block, current) if pattern.search(current) else current.rstrip() + "\n\n" + block + "\n"
    sys.path.insert(0, str(ROOT))
    from composer.io.files import write_text
    write_text(target, updated)
    print(f"wrote section `{name}` of {target.relative_to(ROOT)}")
