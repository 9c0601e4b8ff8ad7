"""What a run shows and leaves behind: a progress bar (rich on a terminal, plain lines otherwise),
metrics.jsonl, training curves and confusion matrices as PNG (matplotlib, Agg backend). Every file
is written atomically."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from ..fileio import atomic_write, write_text
from .extras import require


class Progress:
    """One bar per phase (an epoch, an evaluation). `stream` defaults to stderr; on a terminal a rich
    bar with loss, lr, images/s and ETA, else a plain line every `every` seconds and at the end."""

    def __init__(self, stream: Optional[TextIO] = None, enabled: bool = True, every: float = 10.0):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.rich = enabled and self.stream.isatty()
        self.every = every
        self._bar = None

    def start(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.images, self.t0, self.last = label, total, 0, 0, time.perf_counter(), 0.0
        self.fields: dict[str, str] = {}
        if self.rich:
            rp = require("rich.progress")
            console = require("rich.console").Console(file=self.stream)
            self._bar = rp.Progress(rp.TextColumn("{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
                                    rp.TextColumn("{task.fields[info]}"), rp.TimeRemainingColumn(), console=console, transient=False)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, info="")

    def update(self, steps: int = 1, images: int = 0, **fields: float) -> None:
        if not self.enabled:
            return
        self.done += steps
        self.images += images
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        self.fields = {k: (f"{v:.3g}" if isinstance(v, float) else str(v)) for k, v in fields.items()}
        if self.images:
            self.fields["img/s"] = f"{self.images / elapsed:.0f}"
        info = " ".join(f"{k} {v}" for k, v in self.fields.items())
        if self._bar is not None:
            self._bar.update(self._task, advance=steps, info=info)
        elif elapsed - self.last >= self.every or self.done == self.total:
            self.last = elapsed
            eta = elapsed / self.done * (self.total - self.done)
            self.stream.write(f"{self.label}: {self.done}/{self.total} {info} eta {eta:.0f}s\n")
            self.stream.flush()

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def line(self, text: str) -> None:
        if self.enabled:
            self.stream.write(text + "\n")
            self.stream.flush()


def read_metrics(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(path: Path, rows: list[dict]) -> None:
    """metrics.jsonl: one JSON object per epoch, the whole file replaced atomically."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot")


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, and the learning rate, as one PNG."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(epochs, [r["train_loss"] for r in rows], label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in rows], label="val")
    axes[0].set_title("loss")
    axes[1].plot(epochs, [r["val_top1"] for r in rows], label="top-1")
    axes[1].plot(epochs, [r["val_top5"] for r in rows], label="top-5")
    if any("ema_top1" in r for r in rows):
        axes[1].plot(epochs, [r.get("ema_top1") for r in rows], label="EMA top-1")
    axes[1].set_title("validation accuracy")
    axes[2].plot(epochs, [r["lr"] for r in rows])
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_confusion(matrix, classes: list[str], path: Path) -> None:
    """A confusion matrix (rows: true class, columns: predicted), row-normalised, as a PNG."""
    plt = _pyplot()
    m = matrix.double()
    rates = (m / m.sum(1, keepdim=True).clamp(min=1)).numpy()
    n = len(classes)
    side = min(2 + 0.4 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 50:
        ax.set_xticks(range(n), classes, rotation=90)
        ax.set_yticks(range(n), classes)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig, path: Path) -> None:
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
