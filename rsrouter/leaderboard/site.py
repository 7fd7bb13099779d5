"""A leaderboard's pages: ``leaderboard.md`` and a self-contained ``index.html`` (a tab per
dataset, a table sortable by any column, the curves and the cost plane as inline SVG; no
network, no CDN).
"""

from __future__ import annotations

import html
import io

import numpy as np

from .. import __version__
from ..results.figures import (
    CostPoint,
    accuracy_figure,
    cost_figure,
    finish_figure,
    md_text,
    plot_label,
    text_width,
)
from .entries import entry_sigmas, is_number, max_radius


def _flags(entry: dict) -> list[str]:
    flags = []
    if entry["kind"] != "certificate":
        flags.append(entry["kind"].split(":")[0])
    if entry.get("chosen_on_test") and entry["kind"] == "certificate":
        flags.append("choices made on the test inputs")
    if entry.get("protocol_inferred"):
        flags.append(entry["protocol_inferred"])
    if entry.get("external"):  # provenance of an imported log
        flags += [f"{what}: {entry[key]}" for key, what in (("paper", "paper"),
                                                            ("source", "source"))
                  if entry.get(key)]
        if entry["inputs"].get("spec") not in (None, "as published"):
            flags.append(f"inputs: {entry['inputs']['spec']}")
    return flags


def _radii(entries: list[dict]) -> list[float]:
    return sorted({float(r) for e in entries for r in e["radii"]})


def _acc_at(entry: dict, r: float) -> tuple[float, float, float] | None:
    for radius, acc, (low, high) in zip(entry["radii"], entry["accuracy"], entry["ci95"]):
        if float(radius) == r:
            return acc, low, high
    return None


def _protocol(entry: dict) -> str:
    p = entry.get("protocol") or {}
    parts = [f"{entry['inputs'].get('count')} inputs"]
    parts += [f"{k} = {p[k]}" for k in ("n", "alpha") if p.get(k) is not None]
    sigmas = sorted({float(v) for v in entry_sigmas(entry) if is_number(v)})
    if sigmas:
        parts.append("sigma = " + ", ".join(f"{v:g}" for v in sigmas))
    return ", ".join(parts)


def markdown(entries: list[dict]) -> str:
    """``leaderboard.md``: a table per dataset (certified accuracy at every radius any of its
    entries reports, ACR, max regret, where choices were made, flags)."""
    lines = ["# Leaderboard", "", "Certified accuracy (%) at l2 radius r (pixels in [0, 1]), "
             "exact 95% interval over the inputs in the JSON; rows from `rsrouter bench` were "
             "checked against their count store; rows marked external were imported from "
             "certification logs, their radii recomputed from counts (the log's own, or "
             "recovered from its printed radii under the protocol shown). \"choices made on\": "
             "the split on which a method's settings were chosen (none: it has none; test: "
             "flagged).", ""]
    for dataset in sorted({e["dataset"] for e in entries}):
        rows = [e for e in entries if e["dataset"] == dataset]
        radii = _radii(rows)
        head = ["method", "benchmark", *[f"r={r:g}" for r in radii], "ACR", "max regret",
                "choices made on", "flags"]
        lines += [f"## {md_text(dataset)}", "", "| " + " | ".join(head) + " |",
                  "|" + " --- |" * len(head)]
        for e in rows:
            cells = [md_text(e["method"]), md_text(f"{e['benchmark']} ({_protocol(e)})")]
            for r in radii:
                got = _acc_at(e, r)
                cells.append("–" if got is None else f"{100 * got[0]:.1f}")
            cells += ["–" if e.get("acr") is None else f"{e['acr']:.3f}",
                      "–" if e.get("max_regret") is None else f"{e['max_regret']:.1f}",
                      md_text(str(e.get("chosen_on", "unknown"))), md_text("; ".join(_flags(e)))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _curves(rows: list[dict], dataset: str) -> str:
    """A dataset's curves: one figure per benchmark (entries on the same inputs, short legends)
    when it has several, else one."""
    benchmarks = sorted({e["benchmark"] for e in rows})
    if len(benchmarks) == 1:
        return _svg(rows, f"{dataset}: certified accuracy versus radius")
    return "".join(_svg([e for e in rows if e["benchmark"] == b],
                        f"{dataset}, {b}: certified accuracy versus radius", named=False)
                   for b in benchmarks)


def _svg(rows: list[dict], title: str, named: bool = True) -> str:
    """The curves of one dataset's entries as inline SVG, the legend beside the axes: the
    figure grows with it, the axes keep their size. An entry with its step curve (per-input
    radii) is drawn as that step function, a single-sigma entry's largest certifiable radius
    at its n marked with a bar; one without (an envelope, an entry of rsrouter < 0.3) only as
    its grid points, never joined by lines that the radii do not show."""
    labels = [e["method"] + (f" [{e['benchmark']}]" if named else "")
              + (f" ({_flags(e)[0]})" if _flags(e) and _flags(e)[0] not in e["method"] else "")
              for e in rows]
    legend = (max(text_width(label, 6) for label in labels) + 34) / 72  # inches, with handle
    fig, ax = accuracy_figure((5.9 + legend, max(4.0, 0.7 + 9.6 * len(labels) / 72)))
    for e, label in zip(rows, labels):
        style = {}
        if e.get("external"):
            style = {"linestyle": "-.", "alpha": 0.8}
        elif e.get("type") == "envelope":
            style = {"linestyle": ":", "color": "black"}
        elif e["kind"] != "certificate":
            style = {"linestyle": "--", "color": "0.5"}
        curve = e.get("curve")
        if curve is None:
            ax.plot(e["radii"], 100 * np.asarray(e["accuracy"]), marker="o", markersize=2.5,
                    linestyle="none", label=plot_label(label),
                    **{k: v for k, v in style.items() if k != "linestyle"})
            continue
        xs, ys = _thin(curve["radius"], [100 * a for a in curve["accuracy"]])
        line, = ax.step(xs + [xs[-1] * 1.02 + 0.01], ys + [ys[-1]], where="post",
                        linewidth=1.0, label=plot_label(label), **style)
        if len(set(entry_sigmas(e))) == 1:  # the cap at its n: nothing certified beyond it
            ax.plot([max_radius(e)], [0], marker="|", markersize=7, color=line.get_color())
    finish_figure(fig, ax, title, xlabel="l2 radius", legend=6, title_size=9,
                  margins=(0.65, 0.5, legend + 0.15, 0.3),
                  legend_at={"loc": "upper left", "bbox_to_anchor": (1.02, 1),
                             "borderaxespad": 0})
    return _svg_text(fig)


def _thin(xs: list[float], ys: list[float], step: float = 0.5) -> tuple[list, list]:
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


def _svg_text(fig, fonttype: str = "path") -> str:
    """``fig`` as inline SVG: the same figure, the same bytes (no date, a fixed hash salt); its
    text as glyph paths, or as SVG text when ``fonttype`` is ``"none"`` (smaller, faster)."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "rsrouter",  # the same entries, the same bytes
                                "svg.fonttype": fonttype}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _expert_forwards(entry: dict) -> int | None:
    """One expert's forward passes per input under ``entry``'s protocol, ``n0 + n`` (None when
    the protocol does not say)."""
    protocol = entry.get("protocol") or {}
    n0, n = protocol.get("n0"), protocol.get("n")
    return n0 + n if is_number(n0, low=0) and is_number(n, low=1) else None


def _cost_plane(rows: list[dict], dataset: str) -> str:
    """The cost plane of one dataset's entries (those with a forward count; the oracles' ACR
    and regret 0 dashed, never points), as HTML: inline SVG above its caption, which names the
    entries left out; only the caption when none has a forward count."""
    esc = html.escape
    benchmarks = sorted({e["benchmark"] for e in rows})
    colors = {b: f"C{i % 10}" for i, b in enumerate(benchmarks)}
    points, oracles, left_out, shown = [], [], [], set()
    for e in rows:
        unit, color = _expert_forwards(e), colors[e["benchmark"]]
        if e.get("type") in ("oracle", "envelope"):  # references, never points
            if e.get("type") == "oracle" and e.get("acr") is not None:
                oracles.append((e["acr"], color))
                shown.add(e["benchmark"])
        elif e["kind"] != "certificate" or e.get("acr") is None \
                or e.get("forwards_per_input") is None or unit is None:
            left_out.append(f"{e['method']} [{e['benchmark']}]")
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
    if left_out:
        caption += (f" Not drawn, without a forward count ({len(left_out)}): "
                    f"{'; '.join(left_out)}.")
    if not points and not oracles:
        return f'<p class="caption">{esc(caption)}</p>'
    fig = cost_figure(points, oracles=tuple(oracles),
                      groups=tuple((b, colors[b]) for b in benchmarks if b in shown),
                      title=f"{dataset}: ACR and max regret against forward passes per input",
                      figsize=(11.0, 6.0))
    svg = _svg_text(fig, "none")  # dozens of small labels: as text, drawn in half the time
    return f'<div class="cost">{svg}</div><p class="caption">{esc(caption)}</p>'


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
.tabs button{font-size:1rem;padding:.4rem .9rem;margin-right:.3rem;border:1px solid #999;
background:#f4f4f4;cursor:pointer}
.tabs button.active{background:#335;color:#fff}
.tab{display:none}.tab.active{display:block}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
td:first-child,th:first-child,td.text{text-align:left}
th{background:#eee;cursor:pointer;user-select:none}
tr.external td{color:#555;font-style:italic}
.flag{font-size:.75rem;color:#a33}
.curves svg,.cost svg{max-width:100%;height:auto}
.caption{font-size:.8rem;color:#444;max-width:60rem}
"""

_SCRIPT = """
function showTab(name){
  document.querySelectorAll('.tab').forEach(t=>t.classList.toggle('active',t.dataset.tab===name));
  document.querySelectorAll('.tabs button').forEach(b=>b.classList.toggle('active',
    b.dataset.tab===name));
}
function sortBy(th){
  const table=th.closest('table'), col=[...th.parentNode.children].indexOf(th);
  const down=th.dataset.dir!=='desc'; th.dataset.dir=down?'desc':'asc';
  const rows=[...table.tBodies[0].rows];
  const key=r=>{const v=r.cells[col].dataset.v;return v===undefined?r.cells[col].textContent:
    (v===''?-Infinity:parseFloat(v));};
  rows.sort((a,b)=>{const x=key(a),y=key(b);const c=(typeof x==='number')?x-y:
    String(x).localeCompare(String(y));return down?-c:c;});
  rows.forEach(r=>table.tBodies[0].appendChild(r));
}
document.addEventListener('DOMContentLoaded',()=>{
  document.querySelectorAll('th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
  document.querySelectorAll('.tabs button').forEach(b=>b.addEventListener('click',
    ()=>showTab(b.dataset.tab)));
  const first=document.querySelector('.tabs button'); if(first) showTab(first.dataset.tab);
});
"""


def page(entries: list[dict]) -> str:
    """The self-contained index.html (inline CSS, JS and SVG; nothing fetched)."""
    esc = html.escape
    datasets = sorted({e["dataset"] for e in entries})
    tabs = "".join(f'<button data-tab="{esc(d)}">{esc(d)}</button>' for d in datasets)
    sections = []
    for d in datasets:
        rows = [e for e in entries if e["dataset"] == d]
        radii = _radii(rows)
        head = ["method", "benchmark", *[f"r={r:g}" for r in radii], "ACR", "max regret",
                "forwards / input", "choices made on", "flags"]
        body = []
        for e in rows:
            cells = [f'<td class="text">{esc(e["method"])}</td>',
                     f'<td class="text">{esc(e["benchmark"])} ({esc(_protocol(e))})</td>']
            for r in radii:
                got = _acc_at(e, r)
                cells.append('<td data-v="">–</td>' if got is None else
                             f'<td data-v="{got[0]:.4f}" title="95% interval '
                             f'{100 * got[1]:.1f}–{100 * got[2]:.1f}">{100 * got[0]:.1f}</td>')
            for key, fmt in (("acr", "{:.3f}"), ("max_regret", "{:.1f}"),
                             ("forwards_per_input", "{:,.0f}")):
                value = e.get(key)
                cells.append('<td data-v="">–</td>' if value is None else
                             f'<td data-v="{value}">{fmt.format(value)}</td>')
            cells.append(f'<td class="text">{esc(str(e.get("chosen_on", "unknown")))}</td>')
            cells.append(f'<td class="text"><span class="flag">{esc("; ".join(_flags(e)))}'
                         "</span></td>")
            css = ' class="external"' if e.get("external") else ""
            body.append(f"<tr{css}>{''.join(cells)}</tr>")
        sections.append(
            f'<section class="tab" data-tab="{esc(d)}"><h2>{esc(d)}</h2>'
            f"<table><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            f'<div class="curves">{_curves(rows, d)}</div>'
            f"{_cost_plane(rows, d)}"
            "</section>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>rsrouter leaderboard"
            f"</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            "<h1>Certified robustness leaderboard</h1><p>Certified accuracy (%) at l2 radius r "
            "(pixels in [0, 1]); hover a cell for its exact 95% interval; click a column to "
            "sort. Rows from <code>rsrouter bench</code> were checked against their count "
            "store; rows marked external were imported from certification logs, their radii "
            "recomputed from counts stored or recovered under the protocol shown.</p>"
            f"<div class=\"tabs\">{tabs}</div>{''.join(sections)}"
            f"<p><small>built by rsrouter {__version__}</small></p></body></html>\n")
