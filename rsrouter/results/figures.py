"""The plotting frame and text helpers every rsrouter plot and page shares; no pandas, so the
leaderboard builds without it (matplotlib is imported when a figure is drawn)."""

from __future__ import annotations

import hashlib
import html
import math
import os
import re
from importlib.metadata import version
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import __version__
from ..certify.bounds import lower_bounds, upper_bounds

FIGURE_KEY = "rsrouter-figure"  # the PNG text field that holds what a figure was drawn from


def interval95(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided 95% (Clopper-Pearson) interval of ``k`` successes in ``n`` trials."""
    return lower_bounds(k, n, 0.025), upper_bounds(k, n, 0.025)


def md_text(text: object) -> str:
    """``text`` as plain text in markdown (a table cell): HTML and markdown's own characters
    escaped, one line."""
    text = html.escape(str(text), quote=False).replace("\n", " ").replace("\r", " ")
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)


def plot_label(text: object) -> str:
    """``text`` as plain text in a matplotlib label: ``$`` starts no math, a leading ``_`` hides
    nothing from the legend."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def accuracy_figure(figsize: tuple[float, float]):
    """``(figure, axes)`` of an empty certified-accuracy plot: every plot rsrouter draws starts
    here and ends with :func:`finish_figure` (a matplotlib ``Figure`` on Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def finish_figure(fig, ax, title: str = "", *, top: float | None = None,
                  xlabel: str = "l2 radius (pixels in [0, 1])", legend: float = 8,
                  title_size: float | None = 10,
                  margins: tuple[float, float, float, float] | None = None,
                  legend_at: dict | None = None) -> None:
    """Axes labels, the 0-103% range (a curve at 100% stays visible above the frame's top
    line), the radius range ``[0, top]``, grid, legend (where ``legend_at`` places it, else
    where it hides least) and title (``$`` shown as typed); laid out tightly, or with fixed
    ``margins`` (left, bottom, right, top, in inches: no text measured, faster)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)
    if top is not None:
        ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend, **(legend_at or {}))
    if title:
        ax.set_title(plot_label(title), fontsize=title_size)
    if margins is not None:
        (width, height), (left, bottom, right, up) = fig.get_size_inches(), margins
        fig.subplots_adjust(left=left / width, bottom=bottom / height, right=1 - right / width,
                            top=1 - up / height)
        return
    fig.tight_layout()
    fig.set_layout_engine(None)  # laid out once: saving need not draw the figure twice


def save_figure(fig, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write ``fig`` to ``path`` (120 dpi; the format its suffix names, PNG by default),
    atomically; returns the path. A PNG stores ``key`` (see :func:`figure_key`) in its text
    field ``rsrouter-figure``, so that :func:`drawn` can tell it need not be drawn again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".png"
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    metadata = {FIGURE_KEY: key} if key is not None and suffix == ".png" else None
    fig.savefig(tmp, dpi=120, metadata=metadata)
    os.replace(tmp, path)
    return path


def figure_key(*parts: object, code: tuple[str | os.PathLike, ...] = ()) -> str:
    """sha256 of everything a figure is drawn from: ``parts`` (arrays by dtype, shape and bytes,
    anything else by ``repr``), the source files in ``code`` (the module that draws it), this
    module, and the rsrouter and matplotlib versions."""
    digest = hashlib.sha256(f"rsrouter {__version__} matplotlib {version('matplotlib')}".encode())
    for source in (__file__, *code):
        digest.update(Path(source).read_bytes())
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def drawn(path: str | os.PathLike, key: str) -> bool:
    """Whether the PNG at ``path`` was drawn from exactly what ``key`` names (its text field
    ``rsrouter-figure``), so that drawing it again would give the same figure; False when there
    is no such file or it is unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(FIGURE_KEY) == key
    except (OSError, UnidentifiedImageError, ValueError):
        return False


# ---- the cost plane: ACR and max regret against forward passes per input ---------------------

COST_XLABEL = "forward passes per input (x one expert's n0 + n)"
MARKERS = {"expert": "o", "router": "s", "tree": "P", "cascade": "^", "aces": "D"}  # by type
KIND_NAMES = {"tree": "router tree", "cascade": "multiscale cascade",
              "aces": "entropy router (ACES)"}  # a type's name in the legend, where not its own


class CostPoint(NamedTuple):
    """One method on the cost plane: its name, forward passes per input in units of one
    expert's ``n0 + n``, ACR with its standard error, max regret in points (None: unknown), its
    type (the marker, :data:`MARKERS`) and colour."""

    label: str
    cost: float
    acr: float
    acr_se: float | None
    regret: float | None
    kind: str
    color: str


def cost_figure(points: list[CostPoint], *, oracles: tuple = (), groups: tuple = (),
                title: str = "", figsize: tuple[float, float] = (10.0, 4.6)):
    """The cost plane as one figure of two panels: ACR with standard-error bars (left) and max
    regret (right) against forward passes per input, one point per method, named beside it.
    ``oracles`` ((ACR, colour) each) are dashed horizontal lines and regret 0 (the envelope) a
    dashed line, never points; ``groups`` ((name, colour) each) name the colours in the legend.
    Returns the matplotlib ``Figure`` (fixed margins, no layout engine)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    handles = _cost_handles(points, groups, bool(oracles))
    widths = [text_width(label, 7) + 32 for label, _ in handles]  # marker, gap: 32 pt
    ncol = max(n for n in range(1, len(handles) + 1)
               if n == 1 or sum(sorted(widths)[-n:]) < 72 * figsize[0] - 20)
    rows = -(-len(handles) // ncol)
    fig = Figure(figsize=figsize)
    acr_ax, regret_ax = fig.subplots(1, 2)
    fig.subplots_adjust(left=0.6 / figsize[0], right=1 - 0.15 / figsize[0], wspace=0.16,
                        top=1 - 0.45 / figsize[1], bottom=(0.6 + 0.2 * rows) / figsize[1])
    top = max([p.cost for p in points] + [1.0]) * 1.1
    for ax, ylabel in ((acr_ax, "ACR (bars: one standard error)"),
                       (regret_ax, "max regret (points below the envelope; lower is better)")):
        ax.set_xlim(0, top)
        ax.set_xlabel(COST_XLABEL, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))  # whole experts; few ticks
        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    low = [p.acr - (p.acr_se or 0) for p in points]
    high = [p.acr + (p.acr_se or 0) for p in points] + [acr for acr, _ in oracles]
    _set_ylim(acr_ax, min(low + high, default=0.0), max(high, default=1.0))
    shown = [p for p in points if p.regret is not None]
    _set_ylim(regret_ax, 0.0, max([p.regret for p in shown] + [1.0]))
    for acr, color in oracles:
        acr_ax.axhline(acr, linestyle="--", color=color, linewidth=0.9, alpha=0.8)
    regret_ax.axhline(0, linestyle="--", color="0.3", linewidth=0.9)
    bars = [p for p in points if p.acr_se]
    acr_ax.vlines([p.cost for p in bars], [p.acr - p.acr_se for p in bars],
                  [p.acr + p.acr_se for p in bars], colors=[p.color for p in bars],
                  linewidth=0.7)
    for kind, color in dict.fromkeys((p.kind, p.color) for p in points):  # a line per style
        for ax, field in ((acr_ax, "acr"), (regret_ax, "regret")):
            mine = [p for p in points if (p.kind, p.color) == (kind, color)
                    and getattr(p, field) is not None]
            if mine:
                ax.plot([p.cost for p in mine], [getattr(p, field) for p in mine],
                        MARKERS.get(kind, "X"), color=color, markersize=5, zorder=3,
                        markeredgecolor="white", markeredgewidth=0.5)
    _label_points(fig, acr_ax, [(p.cost, p.acr, p.acr_se or 0, p.label) for p in points],
                  [acr for acr, _ in oracles])
    _label_points(fig, regret_ax, [(p.cost, p.regret, 0, p.label) for p in shown], [0.0])
    fig.legend(handles=[Line2D([], [], label=plot_label(label), **style)
                        for label, style in handles],
               loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    if title:
        fig.suptitle(plot_label(title), fontsize=10)
    return fig


def _cost_handles(points: list[CostPoint], groups: tuple, oracles: bool) -> list:
    """``(label, Line2D style)`` of each legend entry: the methods' types (grey where colours
    name groups, else in their colour when they all share one), the groups' colours (bars),
    then the dashed references."""
    handles = []
    for kind in dict.fromkeys(p.kind for p in points):
        colors = {p.color for p in points if p.kind == kind}
        handles.append((KIND_NAMES.get(kind, kind), {
            "marker": MARKERS.get(kind, "X"), "linestyle": "",
            "color": colors.pop() if len(colors) == 1 and not groups else "0.35"}))
    handles += [(name, {"linewidth": 5, "color": color}) for name, color in groups]
    if oracles:
        handles.append(("oracle's ACR (not a certificate)", {"linestyle": "--", "color": "0.3"}))
    handles.append(("envelope: regret 0 (not a classifier)", {"linestyle": "--", "color": "0.3"}))
    return handles


def _set_ylim(ax, low: float, high: float) -> None:
    pad = max(high - low, 0.05) * 0.08
    ax.set_ylim(low - pad, high + pad)


def text_width(text: str, fontsize: float) -> float:
    """The width of ``text`` in points at ``fontsize`` in the default font (nothing drawn)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import text_to_path

    return text_to_path.get_text_width_height_descent(text, FontProperties(size=fontsize),
                                                      ismath=False)[0]


def _label_points(fig, ax, points: list[tuple[float, float, float, str]],
                  lines: list[float], fontsize: float = 6) -> None:
    """Name each ``(x, y, error bar, label)`` beside its point in ``ax`` (limits set), in the
    first free place nearest to it, off the horizontal ``lines`` (greedy, in points, without
    drawing the figure); a leader line joins a label moved off its point's line; a name already
    placed next to the same spot is not written again."""
    from matplotlib.collections import LineCollection

    width, height = (72 * s for s in fig.get_size_inches())
    box = ax.get_position()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    xs, ys = (x1 - x0) / (box.width * width), (y1 - y0) / (box.height * height)  # per point

    def at(x: float, y: float) -> tuple[float, float]:
        return (box.x0 * width + (x - x0) / xs, box.y0 * height + (y - y0) / ys)

    frame = (box.x0 * width + 2, box.y0 * height + 2, box.x1 * width - 2, box.y1 * height - 2)
    taken = []  # boxes (left, bottom, right, top) in points: markers, error bars, labels
    for x, y, bar, _ in points:
        (px, py), (_, low), (_, high) = at(x, y), at(x, y - bar), at(x, y + bar)
        taken += [(px - 3.5, py - 3.5, px + 3.5, py + 3.5), (px - 1.5, low, px + 1.5, high)]
    taken += [(frame[0], at(x0, y)[1] - 1, frame[2], at(x0, y)[1] + 1) for y in lines]
    pitch = fontsize * 1.25  # one line of labels, in points
    named: dict[str, list[tuple[float, float]]] = {}
    leaders = []
    for x, y, _, label in sorted(points, key=lambda p: (p[0], -p[1])):
        px, py = at(x, y)
        if any(abs(px - qx) < 20 and abs(py - qy) < 12 for qx, qy in named.get(label, [])):
            continue
        named.setdefault(label, []).append((px, py))
        w = text_width(label, fontsize)
        best = None
        for step in (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6):
            for side in (1, -1):
                left, middle = px + 5 if side > 0 else px - 5 - w, py + step * pitch
                place = (left, middle - pitch / 2, left + w, middle + pitch / 2)
                cost = sum(_overlap(place, t) for t in taken) + 1e6 * (
                    _overlap(place, frame) < w * pitch - 1e-6)
                if best is None or cost < best[0]:
                    best = (cost, step, side, place)
            if best[0] == 0:
                break
        _, step, side, place = best
        taken.append(place)
        tx, ty = x + 5 * side * xs, y + step * pitch * ys
        ax.text(tx, ty, plot_label(label), ha="left" if side > 0 else "right", va="center",
                fontsize=fontsize)
        if step:
            length = math.hypot(5, step * pitch)  # from the marker's edge to the label's
            leaders.append([(x + 5 * side * 3 / length * xs, y + step * pitch * 3 / length * ys),
                            (tx, ty)])
    if leaders:
        ax.add_collection(LineCollection(leaders, colors="0.55", linewidths=0.4), autolim=False)


def _overlap(a: tuple, b: tuple) -> float:
    """The area two boxes ``(left, bottom, right, top)`` share."""
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
