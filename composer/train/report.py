"""What a run shows and leaves behind: a progress bar (rich on a terminal, plain lines otherwise),
metrics.jsonl, training curves and confusion matrices as PNG (matplotlib, Agg backend). Every file
is written atomically."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path
from typing import Optional, TextIO

from ..io.files import atomic_write, write_text
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
    """The rows of metrics.jsonl; a line that is not a JSON object (a cut last line, an edit) is left out."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("epoch"), int):
            rows.append(row)
    return rows


def write_metrics(path: Path, rows: list[dict]) -> None:
    """metrics.jsonl: one JSON object per epoch, the whole file replaced atomically."""
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))


def write_metrics_csv(path: Path, rows: list[dict]) -> None:
    """metrics.csv: the same rows as a table (epoch first, then the names in order), atomically."""
    names = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(names)
    for r in rows:
        writer.writerow([f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "") for k in names])
    write_text(path, buf.getvalue())


class Records:
    """What a run writes each epoch besides checkpoints: metrics.jsonl and metrics.csv always, and
    TensorBoard event files under OUT/tensorboard when tensorboard is installed."""

    def __init__(self, out: Path, enabled: bool = True):
        self.out, self.enabled, self.written = out, enabled, 0
        self.board = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional (the `tensorboard` extra)
                SummaryWriter = None
            if SummaryWriter is not None:
                self.board = SummaryWriter(str(out / "tensorboard"))

    def write(self, rows: list[dict]) -> None:
        if not self.enabled:
            return
        write_metrics(self.out / "metrics.jsonl", rows)
        write_metrics_csv(self.out / "metrics.csv", rows)
        if self.board is not None:
            row = rows[-1]
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.board.add_scalar(key.replace("_", "/", 1), value, row["epoch"])
            self.board.flush()

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
            self.board = None


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot")


def plot_curves(rows: list[dict], path: Path) -> None:
    """Loss and accuracy per epoch, and the learning rate, as one PNG (curves_figure)."""
    plt = _pyplot()
    fig = curves_figure(rows)
    _save(fig, path)
    plt.close(fig)


def curves_figure(rows: list[dict]):
    """The figure of plot_curves: the best epoch (validation top-1) marked on each panel, and every
    epoch a marker (a one-epoch run shows its points)."""
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    style = {"marker": "o", "markersize": 4 if len(rows) > 30 else 6}

    def curve(ax, key, label=None, **kw):
        if any(key in r for r in rows):
            ax.plot(epochs, [r.get(key, float("nan")) for r in rows], label=label, **style, **kw)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    curve(axes[0], "train_loss", "train")
    curve(axes[0], "val_loss", "val")
    curve(axes[0], "train_loss_smoothed", "train (label-smoothed)", linestyle=":")
    axes[0].set_title("loss (cross-entropy)")
    curve(axes[1], "val_top1", "val top-1")
    curve(axes[1], "val_top5", "val top-5")
    curve(axes[1], "train_top1", "train top-1", linestyle=":")
    curve(axes[1], "ema_top1", "EMA top-1")
    axes[1].set_title("accuracy")
    curve(axes[2], "lr")
    axes[2].set_title("learning rate (end of epoch)")
    best = max(rows, key=lambda r: r.get("val_top1", -1.0))
    for ax in axes:
        ax.axvline(best["epoch"], color="grey", linestyle="--", linewidth=1, label=f"best: epoch {best['epoch']}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if len(rows) == 1:
            ax.set_xlim(best["epoch"] - 1, best["epoch"] + 1)
    axes[1].annotate(f"{best['val_top1']:.1%}", (best["epoch"], best["val_top1"]), textcoords="offset points", xytext=(4, -12))
    axes[0].legend()
    axes[1].legend()
    fig.tight_layout()
    return fig


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
