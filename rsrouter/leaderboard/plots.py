"""A leaderboard's figures, as inline SVG: the curves of certified accuracy against radius
(step functions of the per-input radii) and the cost plane (ACR and max regret against forward
passes per input).
"""

from __future__ import annotations

import html
import io

import numpy as np

from ..results.figures import (
    CostPoint,
    accuracy_figure,
    cost_figure,
    finish_figure,
    plot_label,
    text_width,
)
from .entries import entry_sigmas, is_number, max_radius
from .views import entry_flags


def curves(rows: list[dict], dataset: str) -> str:
    """A dataset's curves: one figure per benchmark (entries on the same inputs, short legends)
    when it has several, else one."""
    benchmarks = sorted({e["benchmark"] for e in rows})
    if len(benchmarks) == 1:
        return svg(rows, f"{dataset}: certified accuracy versus radius")
    return "".join(svg([e for e in rows if e["benchmark"] == b],
                        f"{dataset}, {b}: certified accuracy versus radius", named=False)
                   for b in benchmarks)


def svg(rows: list[dict], title: str, named: bool = True) -> str:
    """The curves of one dataset's entries as inline SVG, the legend beside the axes: the
    figure grows with it, the axes keep their size. An entry with its step curve (per-input
    radii) is drawn as that step function, a single-sigma entry's largest certifiable radius
    at its n marked with a bar; one without (an envelope, an entry of rsrouter < 0.3) only as
    its grid points, never joined by lines that the radii do not show."""
    labels = [e["method"] + (f" [{e['benchmark']}]" if named else "") + _flag(e) for e in rows]
    legend = (max(text_width(label, 6) for label in labels) + 34) / 72  # inches, with handle
    fig, ax = accuracy_figure((5.9 + legend, max(4.0, 0.7 + 9.6 * len(labels) / 72)))
    for e, label in zip(rows, labels):
        style = {}
        if e.get("type") == "envelope":
            style = {"linestyle": ":", "color": "black"}
        elif e.get("type") == "oracle" or (e["kind"] != "certificate" and not e.get("external")):
            style = {"linestyle": "--", "color": "0.5"}  # references, never certificates
        elif e.get("external"):
            style = {"linestyle": "-.", "alpha": 0.8}
        curve = e.get("curve")
        if curve is None:
            reported = e.get("type") == "reported"  # a paper's print: crosses, never lines
            ax.plot(e["radii"], 100 * np.asarray(e["accuracy"]), marker="x" if reported else "o",
                    markersize=4 if reported else 2.5,
                    linestyle="none", label=plot_label(label),
                    **{k: v for k, v in style.items() if k != "linestyle"})
            continue
        xs, ys = thin(curve["radius"], [100 * a for a in curve["accuracy"]])
        line, = ax.step(xs + [xs[-1] * 1.02 + 0.01], ys + [ys[-1]], where="post",
                        linewidth=1.0, label=plot_label(label), **style)
        if len(set(entry_sigmas(e))) == 1:  # the cap at its n: nothing certified beyond it
            ax.plot([max_radius(e)], [0], marker="|", markersize=7, color=line.get_color())
    finish_figure(fig, ax, title, xlabel="l2 radius", legend=6, title_size=9,
                  margins=(0.65, 0.5, legend + 0.15, 0.3),
                  legend_at={"loc": "upper left", "bbox_to_anchor": (1.02, 1),
                             "borderaxespad": 0})
    return svg_text(fig)


def _flag(entry: dict) -> str:
    """An entry's first flag, for its legend label, unless its name says it already."""
    flags = entry_flags(entry)
    return f" ({flags[0]})" if flags and flags[0] not in entry["method"] else ""


def thin(xs: list[float], ys: list[float], step: float = 0.5) -> tuple[list, list]:
    """A step curve with drops under ``step`` points merged, each group drawn at its first
    radius (never above the curve; what a 0.5-point line width shows anyway)."""
    out_x, out_y, start = [xs[0]], [ys[0]], None
    for x, y, nxt in zip(xs[1:], ys[1:], [*ys[2:], None]):
        start = x if start is None else start
        if nxt is None or out_y[-1] - nxt >= step:
            out_x.append(start)
            out_y.append(y)
            start = None
    return out_x, out_y


def svg_text(fig, fonttype: str = "path") -> str:
    """``fig`` as inline SVG: the same figure, the same bytes (no date, a fixed hash salt); its
    text as glyph paths, or as SVG text when ``fonttype`` is ``"none"`` (smaller, faster)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "rsrouter",  # the same entries, the same bytes
                                "svg.fonttype": fonttype}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def expert_forwards(entry: dict) -> int | None:
    """One expert's forward passes per input under ``entry``'s protocol, ``n0 + n`` (None when
    the protocol does not say)."""
    protocol = entry.get("protocol") or {}
    n0, n = protocol.get("n0"), protocol.get("n")
    return n0 + n if is_number(n0, low=0) and is_number(n, low=1) else None


def cost_plane(rows: list[dict], dataset: str) -> str:
    """The cost plane of one dataset's entries (those with a forward count; the oracles' ACR
    and regret 0 dashed, never points), as HTML: inline SVG above its caption, which names the
    entries left out; only the caption when none has a forward count."""
    esc = html.escape
    benchmarks = sorted({e["benchmark"] for e in rows})
    colors = {b: f"C{i % 10}" for i, b in enumerate(benchmarks)}
    points, oracles, left_out, shown = [], [], [], set()
    for e in rows:
        unit, color = expert_forwards(e), colors[e["benchmark"]]
        if e.get("type") in ("oracle", "envelope"):  # references, never points
            if e.get("type") == "oracle" and e.get("acr") is not None:
                oracles.append((e["acr"], color))
                shown.add(e["benchmark"])
        elif e["kind"] != "certificate" or e.get("acr") is None \
                or e.get("forwards_per_input") is None or unit is None:
            left_out.append((e["method"], e["benchmark"]))
        else:
            points.append(CostPoint(e["method"], e["forwards_per_input"] / unit, e["acr"],
                                    e.get("acr_se"), e.get("max_regret"), e.get("type") or "",
                                    color))
            shown.add(e["benchmark"])
    caption = ("Cost plane: ACR (left; bars: one standard error) and max regret (right; below "
               "each benchmark's own envelope) against forward passes per input as each method "
               "would spend them alone, in multiples of one expert's n0 + n; colour: the "
               "benchmark; dashed: the per-input oracle's ACR (not a certificate) and regret 0 "
               "(the envelope, not a classifier).")
    if left_out:  # named one by one, or counted per benchmark when there are many
        named = [f"{m} [{b}]" for m, b in left_out] if len(left_out) <= 8 else [
            f"{sum(b == g for _, b in left_out)} of {g}" for g in benchmarks
            if any(b == g for _, b in left_out)]
        caption += (f" Not drawn, without a forward count ({len(left_out)}): "
                    f"{'; '.join(named)}.")
    if not points and not oracles:
        return f'<p class="caption">{esc(caption)}</p>'
    fig = cost_figure(points, oracles=tuple(oracles),
                      groups=tuple((b, colors[b]) for b in benchmarks if b in shown),
                      title=f"{dataset}: ACR and max regret against forward passes per input",
                      figsize=(11.0, 6.0))
    svg = svg_text(fig, "none")  # dozens of small labels: as text, drawn in half the time
    return f'<div class="cost">{svg}</div><p class="caption">{esc(caption)}</p>'
