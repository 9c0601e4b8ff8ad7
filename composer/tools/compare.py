"""compare: several planned networks side by side, as rows of figures and as a scatter plot.

Each row carries the same figures as `profile` (parameters, MACs, per-part split), taken from the
blocks' analytic costs (`composer.analysis.crosscheck.analytic`, equal to the traced count for every shipped
blueprint; tests/test_compare.py holds them to it) so that comparing needs no torch; a network with a
block family that states no analytic cost (a plugin) is traced instead. When asked, the row adds the
training-memory estimate of `memory`, which traces. The plot puts MACs against parameters, one labelled
marker per network, its area proportional to training memory when that was estimated.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..analysis.crosscheck import analytic
from ..io.files import atomic_write
from ..planning.planner import Plan


@dataclass
class Row:
    name: str
    file: str | None
    input: list[int]
    params: int
    macs: int
    parts: dict[str, dict[str, float]]  # part -> {"params", "macs", "share"} (share of MACs)
    train_memory: int | None = None  # bytes of one training step, when estimated
    train_batch: int | None = None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["flops"] = self.flops
        return d


def compare(plans: list[Plan], *, batch: int | None = None, dtype: str = "float32",
            optimizer: str = "adamw") -> list[Row]:
    """One row per plan; with `batch`, the training memory of a step at that batch too."""
    rows = []
    for p in plans:
        parts = _part_figures(p)
        macs = sum(m for _, _, m in parts)
        split = {name: {"params": params, "macs": m, "share": m / macs if macs else 0.0} for name, params, m in parts}
        memory = None
        if batch:
            from ..analysis.memory import train_memory

            memory = train_memory(p, batch=batch, dtype=dtype, optimizer=optimizer).total
        rows.append(Row(p.name, p.blueprint.source.file, list(p.input_shape), sum(n for _, n, _ in parts), macs,
                        split, memory, batch))
    return rows


def _part_figures(p: Plan) -> list[tuple[str, int, int]]:
    """(part, parameters, MACs for one sample) of the stem, each stage and the head: the analytic
    costs, or the traced count when a part's block family states none."""
    parts = analytic(p)
    if all(cost is not None for _, cost in parts):
        return [(name, cost.params, cost.macs) for name, cost in parts]
    from ..analysis.tracing import profile

    return [(part.name, part.params, part.macs) for part in profile(p).parts]


def plot(rows: list[Row], path: str | os.PathLike) -> None:
    """Scatter of MACs against parameters, each network labelled; written atomically (.png or .svg)."""
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in ("png", "svg"):
        raise ValueError(f"cannot plot to `{target.name}`: the file must end in .png or .svg")
    from .draw import _require_matplotlib
    plt = _require_matplotlib()
    with plt.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = figure(rows)
        try:
            with atomic_write(target, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=150 if fmt == "png" else None, bbox_inches="tight")
        finally:
            plt.close(fig)


def figure(rows: list[Row]):
    """The matplotlib figure of `plot` (the caller closes it); its labels are `fig.composer_labels`."""
    from .draw import _require_matplotlib, picture_text
    plt = _require_matplotlib()
    memories = [r.train_memory for r in rows if r.train_memory]
    biggest = max(memories) if memories else 0
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for r in rows:
        size = 60 + 1400 * r.train_memory / biggest if r.train_memory and biggest else 60
        ax.scatter(r.macs / 1e9, r.params / 1e6, s=size, alpha=0.55, edgecolors="#333333")
    for values, scale in (([r.macs for r in rows], ax.set_xscale), ([r.params for r in rows], ax.set_yscale)):
        if min(values) > 0 and max(values) / min(values) > 20:
            scale("log")  # spans of more than 20x read better on a log axis
    ax.margins(0.15)
    ax.set_xlabel("GMACs per image (FLOPs = 2 x MACs)")
    ax.set_ylabel("parameters (M)")
    title = "networks compared"
    if memories:
        title += f"; marker area = training memory at batch {rows[0].train_batch}"
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.composer_labels = _label(fig, ax, [(picture_text(r.name), r.macs / 1e9, r.params / 1e6) for r in rows])
    return fig


def _label(fig, ax, points: list[tuple[str, float, float]]) -> list:
    """Label each point at the first of rings of places around it where the text overlaps no label
    placed before it, tied to its point by a thin line. Where every place near the point is taken,
    the label goes into a column beside the axes, below the last one there: labels never overlap."""
    fig.canvas.draw()  # settle the axis limits (autoscaling is lazy): the boxes below are the final ones
    renderer = fig.canvas.get_renderer()
    ring = [(dx * r, dy * r) for r in (1, 2, 3, 4, 5, 6) for dx, dy in
            ((1, 1), (1, -1), (-1, 1), (-1, -1), (0, 1.3), (0, -1.3), (1.4, 0), (-1.4, 0))]
    placed, labels = [], []
    arrow = dict(arrowstyle="-", color="#777777", lw=0.6, shrinkA=0, shrinkB=4)
    for name, x, y in sorted(points, key=lambda p: (p[1], p[2])):
        ann = None
        for dx, dy in ring:
            ann = ax.annotate(name, (x, y), textcoords="offset points", xytext=(14 * dx, 12 * dy), va="center",
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", arrowprops=arrow)
            box = _text_box(ann, renderer)
            if not any(box.overlaps(other) for other in placed):
                break
            ann.remove()
            ann = None
        if ann is None:  # the column beside the axes, from the top down
            right = ax.get_window_extent(renderer).x1 + 12
            top = min([ax.get_window_extent(renderer).y1] + [b.y0 - 4 for b in placed if b.x0 >= right - 1])
            while True:
                ann = ax.annotate(name, (x, y), xycoords="data", textcoords="figure pixels", xytext=(right, top),
                                  va="top", ha="left", arrowprops=arrow, annotation_clip=False)
                box = _text_box(ann, renderer)
                clash = [b for b in placed if box.overlaps(b)]
                if not clash:
                    break
                ann.remove()
                top = min(b.y0 for b in clash) - 4
        placed.append(box)
        labels.append(ann)
    return labels


def _text_box(ann, renderer):
    """The bounding box of an annotation's text alone (matplotlib's includes the arrow), with a margin."""
    from matplotlib.text import Text

    ann.update_positions(renderer)
    return Text.get_window_extent(ann, renderer).expanded(1.05, 1.15)
