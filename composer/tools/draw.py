"""draw: a planned and profiled network -> a picture for a report (SVG or PNG, with matplotlib).

Top row: input -> stem -> one box per stage -> head. Each stage box names its layout letter, block
family, depth, width and output shape; arrows into a downsampling part carry its stride, the
boundary where feature maps become tokens (and back) is a dashed line, and a stage that inserts
a class token or a position embedding says so. Bottom: each part's share of MACs and parameters.

The SVG keeps its words as <text> elements, so a picture can be searched and checked for content.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..io.files import atomic_write
from ..planning.planner import Plan
from ..analysis.tracing import Profile

FORMATS = ("svg", "png")
_MAP, _TOKENS, _EDGE = "#d8e8f4", "#fbe3c8", "#e6e6e6"
NAME_LIMIT = 60  # characters of a name shown in a picture (draw, compare --plot, search --plot)


def picture_text(text: str, limit: int = NAME_LIMIT) -> str:
    """A name from a file as a picture shows it: on one line, cut to `limit` characters (a huge
    name would take matplotlib minutes to lay out), dollar signs escaped (matplotlib reads `$...$`
    as mathtext and fails on what it cannot parse), lone surrogates replaced (SVG is UTF-8)."""
    text = " ".join(str(text).split())
    text = text.encode("utf-8", "replace").decode("utf-8")
    if len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text.replace("$", r"\$")


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("drawing needs matplotlib: pip install -e '.[draw]' in composer's clone") from None
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def _shape(dims) -> str:
    return "x".join(str(d) for d in dims)


def _boxes(plan: Plan) -> list[dict]:
    """One entry per box of the top row: its lines of text, colour, stride into it, format."""
    c, h, w = plan.input_shape
    boxes = [dict(part="input", lines=["input", _shape((c, h, w))], color="white", stride=1, fmt="map")]
    stem = plan.stem
    boxes.append(dict(part="stem", lines=["stem", stem.type, _shape(plan.stem_shape)], color=_EDGE,
                      stride=plan.stem.total_stride, fmt="map"))
    for sp in plan.stages:
        family = sp.block.type_name()
        label = sp.label[len(family):].strip() if sp.label.startswith(family) else sp.label
        lines = [f"s{sp.index + 1}  ({sp.letter})", family]
        if label:
            lines.append(label)
        lines += [f"depth {sp.depth} · {sp.out_channels} ch", _shape(sp.output_shape)]
        extras = []
        if sp.transition.type != "none":
            extras.append(f"{sp.transition.type} transition")
        if sp.class_token:
            extras.append("+ class token")
        if sp.pos_embed:
            extras.append("+ pos. embedding")
        lines += extras
        fmt = sp.data_format
        boxes.append(dict(part=f"s{sp.index + 1}", lines=lines, color=_TOKENS if fmt == "tokens" else _MAP,
                          stride=sp.stride, fmt=fmt))
    out = f"{plan.classes} classes" if plan.classes else f"{plan.head_channels} features"
    boxes.append(dict(part="head", lines=["head", plan.head.type, out], color=_EDGE,
                      stride=1, fmt="head"))
    return boxes


def draw(plan: Plan, profile: Profile, path: str | os.PathLike) -> None:
    """Write the picture of `plan` (with the figures of `profile`) to `path`, .svg or .png."""
    target = Path(path)
    fmt = target.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot draw to `{target.name}`: the file must end in .svg or .png")
    plt = _require_matplotlib()
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    boxes = _boxes(plan)
    n = len(boxes)
    box_w, gap = 1.9, 0.55
    rows = max(len(b["lines"]) for b in boxes)
    box_h = 0.32 * rows + 0.3
    width = n * box_w + (n - 1) * gap + 0.6
    with plt.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig = plt.figure(figsize=(max(width, 7.0), box_h + 4.3))
        top = fig.add_axes([0, 0.42, 1, 0.52])
        top.set_xlim(-0.3, max(width, 7.0) - 0.3)
        top.set_ylim(-0.9, box_h + 0.5)
        top.axis("off")
        top.set_title(f"{picture_text(plan.name)}: {profile.params:,} parameters, {profile.macs / 1e9:.3f} GMACs "
                      f"at {_shape(plan.input_shape)}", fontsize=11)
        prev_fmt = "map"
        for i, b in enumerate(boxes):
            x = i * (box_w + gap)
            top.add_patch(FancyBboxPatch((x, 0), box_w, box_h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                         facecolor=b["color"], edgecolor="#444444", linewidth=1.0))
            for j, line in enumerate(b["lines"]):
                top.text(x + box_w / 2, box_h - 0.3 - 0.32 * j, line, ha="center", va="center",
                         fontweight="bold" if j == 0 else "normal")
            if i == 0:
                continue
            x0 = x - gap
            top.add_patch(FancyArrowPatch((x0 + 0.03, box_h / 2), (x - 0.03, box_h / 2), arrowstyle="-|>",
                                          mutation_scale=12, color="#444444"))
            if b["stride"] > 1:
                top.text(x - gap / 2, box_h / 2 + 0.18, f"↓{b['stride']}", ha="center", va="bottom",
                         color="#b03030", fontsize=9)
            if b["fmt"] in ("map", "tokens") and b["fmt"] != prev_fmt:
                edge = x - gap / 2
                top.plot([edge, edge], [-0.55, box_h / 2 - 0.12], linestyle="--", color="#b06000", linewidth=1)
                words = "map → tokens" if b["fmt"] == "tokens" else "tokens → map"
                top.text(edge, -0.75, words, ha="center", va="center", color="#b06000", fontsize=8)
            if b["fmt"] in ("map", "tokens"):
                prev_fmt = b["fmt"]

        bars = fig.add_axes([0.08, 0.08, 0.88, 0.28])
        names = [p.name for p in profile.parts]
        mac_share = [100 * p.macs / profile.macs if profile.macs else 0 for p in profile.parts]
        param_share = [100 * p.params / profile.params if profile.params else 0 for p in profile.parts]
        xs = range(len(names))
        bars.bar([x - 0.2 for x in xs], mac_share, width=0.4, label="share of MACs", color="#4477aa")
        bars.bar([x + 0.2 for x in xs], param_share, width=0.4, label="share of parameters", color="#ee8844")
        bars.set_xticks(list(xs), names)
        bars.set_ylabel("%")
        bars.set_ylim(0, max([*mac_share, *param_share, 1]) * 1.25)
        bars.legend(loc="upper left", frameon=False)
        for x, m, p in zip(xs, mac_share, param_share):
            bars.text(x - 0.2, m, f"{m:.0f}", ha="center", va="bottom", fontsize=7)
            bars.text(x + 0.2, p, f"{p:.0f}", ha="center", va="bottom", fontsize=7)
        for side in ("top", "right"):
            bars.spines[side].set_visible(False)
        try:
            with atomic_write(target, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=150 if fmt == "png" else None)
        finally:
            plt.close(fig)
