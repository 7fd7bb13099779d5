"""A leaderboard's pages: ``leaderboard.md``, an ``index.html`` overview and a self-contained
page per dataset (``DATASET.html``: the routing headroom of each family of experts, every entry
with its provenance in a table sortable by any column, the curves and the cost plane as inline
SVG, and the numbers papers report without logs apart); no network, no CDN.
"""

from __future__ import annotations

import hashlib
import html
import re

from .. import __version__
from ..results.figures import md_text
from .entries import entry_sigmas, is_number
from .plots import cost_plane, curves
from .views import Family, counts_obtained, entry_flags, families, provenance, role

_INTRO = ("Certified accuracy (%) at l2 radius r (pixels in [0, 1]), exact 95% interval over "
          "the inputs in the JSON. Rows from `rsrouter bench` were checked against their count "
          "store; rows marked external were imported from certification logs, every radius "
          "recomputed from counts (the log's own, or recovered from its printed radii under the "
          "protocol shown). \"choices made on\": the split on which a method's settings were "
          "chosen (none: it has none; test: flagged). Numbers a paper prints without per-input "
          "logs are listed apart, reported, not recomputed, never ranked with the others.")


def _radii(entries: list[dict]) -> list[float]:
    return sorted({float(r) for e in entries for r in e["radii"]})


def _acc_at(entry: dict, r: float) -> tuple[float, float, float] | None:
    for radius, acc, (low, high) in zip(entry["radii"], entry["accuracy"], entry["ci95"]):
        if float(radius) == r:
            return acc, low, high
    return None


def _protocol(entry: dict) -> str:
    parts = [f"{entry['inputs'].get('count')} inputs"]  # n and alpha have their own columns
    sigmas = sorted({float(v) for v in entry_sigmas(entry) if is_number(v)})
    if sigmas:
        parts.append("sigma = " + ", ".join(f"{v:g}" for v in sigmas))
    return ", ".join(parts)


def page_name(dataset: str) -> str:
    """The file of a dataset's page: its name where safe, else a safe spelling and a hash."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", dataset).strip("._") or "dataset"
    if stem != dataset or stem in ("index", "leaderboard"):
        stem += "-" + hashlib.sha256(dataset.encode()).hexdigest()[:8]
    return f"{stem}.html"


def _split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(recomputed or measured rows, reported-only rows)."""
    return ([e for e in rows if e.get("type") != "reported"],
            [e for e in rows if e.get("type") == "reported"])


def _num(value, fmt: str) -> str:
    return "–" if value is None else fmt.format(value)


def _headroom_rows(family: Family) -> list[tuple[str, dict]]:
    rows = [("best single expert", family.best)]
    rows += [("routed or composed", e) for e in family.methods]
    rows += [(what, e) for what, e in (("envelope (not a classifier)", family.envelope),
                                       ("oracle (not a certificate)", family.oracle)) if e]
    return rows


def _gain(family: Family, entry: dict) -> str:
    gain = family.gain(entry)
    return "–" if gain is None else f"{gain:+.3f}"


def markdown(entries: list[dict]) -> str:
    """``leaderboard.md``: per dataset, the routing headroom of each family, a table of every
    entry (certified accuracy at every radius any of them reports, ACR, max regret, n, alpha,
    how the counts were obtained, where choices were made, provenance, flags) and the
    reported-only numbers apart."""
    lines = ["# Leaderboard", "", _INTRO, ""]
    for dataset in sorted({e["dataset"] for e in entries}):
        rows, reported = _split([e for e in entries if e["dataset"] == dataset])
        lines += [f"## {md_text(dataset)}", ""]
        fams = families(rows)
        if fams:
            lines += ["### Routing headroom", "", "| benchmark | role | method | ACR | r=0 | "
                      "ACR - best expert | forwards / input | flags |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for f in fams:
                for what, e in _headroom_rows(f):
                    lines.append(f"| {md_text(f.label)} | {what} | {md_text(e['method'])} | "
                                 f"{_num(e.get('acr'), '{:.3f}')} | "
                                 f"{_num((_acc_at(e, 0.0) or [None])[0], '{:.1%}')} | "
                                 f"{_gain(f, e)} | "
                                 f"{_num(e.get('forwards_per_input'), '{:,.0f}')} | "
                                 f"{md_text('; '.join(entry_flags(e)))} |")
            lines.append("")
        lines += _md_table(rows, ["ACR", "max regret", "n", "alpha", "counts",
                                  "choices made on", "provenance", "flags"])
        if reported:
            lines += ["### Reported, not recomputed", ""]
            lines += _md_table(reported, ["n", "alpha", "provenance"])
    return "\n".join(lines)


def _md_table(rows: list[dict], extra: list[str]) -> list[str]:
    if not rows:
        return []
    radii = _radii(rows)
    head = ["method", "benchmark", *[f"r={r:g}" for r in radii], *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for e in rows:
        protocol = e.get("protocol") or {}
        values = {"ACR": _num(e.get("acr"), "{:.3f}"),
                  "max regret": _num(e.get("max_regret"), "{:.1f}"),
                  "n": _num(protocol.get("n"), "{}"), "alpha": _num(protocol.get("alpha"), "{}"),
                  "counts": md_text(counts_obtained(e)),
                  "choices made on": md_text(str(e.get("chosen_on", "unknown"))),
                  "provenance": md_text(provenance(e)),
                  "flags": md_text("; ".join(entry_flags(e)))}
        cells = [md_text(e["method"]), md_text(f"{e['benchmark']} ({_protocol(e)})")]
        cells += ["–" if (got := _acc_at(e, r)) is None else f"{100 * got[0]:.1f}" for r in radii]
        lines.append("| " + " | ".join(cells + [values[k] for k in extra]) + " |")
    return lines + [""]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
nav a{margin-right:.8rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
td:first-child,th:first-child,td.text{text-align:left}
table.sortable th{background:#eee;cursor:pointer;user-select:none}
th{background:#eee}
tr.external td{color:#555;font-style:italic}
tr.reference td{color:#666}
td.prov{font-size:.72rem;max-width:24rem;word-break:break-all}
.flag{font-size:.75rem;color:#a33}
.curves svg,.cost svg{max-width:100%;height:auto}
.caption{font-size:.8rem;color:#444;max-width:60rem}
"""

_SCRIPT = """
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
  document.querySelectorAll('table.sortable th').forEach(th=>th.addEventListener('click',
    ()=>sortBy(th)));
});
"""


GENERATOR = "rsrouter leaderboard"  # every page names it: a rebuild may replace such pages only


def _document(title: str, body: str) -> str:
    esc = html.escape
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"generator\" "
            f"content=\"{GENERATOR}\"><title>{esc(title)}</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>{body}"
            f"<p><small>built by rsrouter {__version__}</small></p></body></html>\n")


def is_ours(text: str) -> bool:
    """Whether ``text`` is a page :func:`pages` wrote (by its generator tag)."""
    return f'<meta name="generator" content="{GENERATOR}">' in text[:400]


def _cell(value, fmt: str) -> str:
    return '<td data-v="">–</td>' if value is None else \
        f'<td data-v="{value}">{fmt.format(value)}</td>'


def _text(value: str, css: str = "text") -> str:
    return f'<td class="{css}">{html.escape(value)}</td>'


def _flags_cell(entry: dict) -> str:
    return f'<td class="text"><span class="flag">{html.escape("; ".join(entry_flags(entry)))}' \
        "</span></td>"


def _head(names: list[str]) -> str:
    return f"<thead><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in names)}</tr></thead>"


def _html_table(rows: list[dict], sortable: bool = True) -> str:
    """Every entry with its numbers and provenance; a cell's hover gives its 95% interval
    (none for a paper's printed numbers: their inputs are not ours to count)."""
    radii = _radii(rows)
    head = ["method", "benchmark", *[f"r={r:g}" for r in radii], "ACR", "max regret",
            "forwards / input", "n", "alpha", "counts", "choices made on", "provenance",
            "flags"]
    body = []
    for e in rows:
        protocol = e.get("protocol") or {}
        cells = [_text(e["method"]), _text(f"{e['benchmark']} ({_protocol(e)})")]
        for r in radii:
            got = _acc_at(e, r)
            hint = "" if got is None or e.get("type") == "reported" else \
                f' title="95% interval {100 * got[1]:.1f}–{100 * got[2]:.1f}"'
            cells.append(_cell(None, "") if got is None else
                         f'<td data-v="{got[0]:.4f}"{hint}>{100 * got[0]:.1f}</td>')
        cells += [_cell(e.get("acr"), "{:.3f}"), _cell(e.get("max_regret"), "{:.1f}"),
                  _cell(e.get("forwards_per_input"), "{:,.0f}"),
                  _cell(protocol.get("n"), "{:,}"), _cell(protocol.get("alpha"), "{:g}"),
                  _text(counts_obtained(e)), _text(str(e.get("chosen_on", "unknown"))),
                  _text(provenance(e), "text prov"), _flags_cell(e)]
        css = ' class="external"' if e.get("external") else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    css = ' class="sortable"' if sortable else ""
    return f"<table{css}>{_head(head)}<tbody>{''.join(body)}</tbody></table>"


def _headroom_html(fams: list[Family]) -> str:
    body = []
    for f in fams:
        for what, e in _headroom_rows(f):
            css = ' class="reference"' if e in (f.envelope, f.oracle) else ""
            body.append(f"<tr{css}>" + _text(f.label) + _text(what) + _text(e["method"])
                        + _cell(e.get("acr"), "{:.3f}")
                        + _cell((_acc_at(e, 0.0) or [None])[0], "{:.1%}")
                        + f"<td>{html.escape(_gain(f, e))}</td>"
                        + _cell(e.get("forwards_per_input"), "{:,.0f}") + _flags_cell(e)
                        + "</tr>")
    head = ["benchmark", "role", "method", "ACR", "r=0", "ACR - best expert",
            "forwards / input", "flags"]
    return ('<h2>Routing headroom</h2><p class="caption">Per family of experts on the same '
            "inputs: its best single expert by ACR, every routed or composed method (flagged "
            "where its choices were made on the test inputs), the envelope (the best expert per "
            "radius: a selection on the test inputs, not a classifier) and the per-input oracle "
            "(the best expert per input, using the label: a ceiling, not a certificate), both "
            "over exactly the family's experts. ACR - best expert: what a method gains over the "
            "best single expert; on the oracle's row, the headroom routing could at most "
            f'close.</p><table class="headroom">{_head(head)}<tbody>{"".join(body)}</tbody>'
            "</table>")


def _dataset_page(dataset: str, entries: list[dict], nav: str) -> str:
    rows, reported = _split(entries)
    fams = families(rows)
    body = [nav, f"<h1>{html.escape(dataset)}</h1><p class=\"caption\">{html.escape(_INTRO)} "
            "Hover a cell for its exact 95% interval; click a column to sort.</p>"]
    if fams:
        body.append(_headroom_html(fams))
    if rows:
        body += ["<h2>Every entry</h2>", _html_table(rows),
                 f'<div class="curves">{curves(rows, dataset)}</div>', cost_plane(rows, dataset)]
    if reported:
        body += ["<h2>Reported, not recomputed</h2><p class=\"caption\">Numbers a paper prints "
                 "without per-input logs: not recomputed from counts, no interval, never ranked "
                 "with the rows above; the provenance says where they were read.</p>",
                 _html_table(reported, sortable=False),
                 f'<div class="curves">{curves(reported, dataset)}</div>']
    return _document(f"rsrouter leaderboard: {dataset}", "".join(body))


def _overview(entries: list[dict], datasets: list[str], nav: str) -> str:
    summary, gaps = [], []
    for d in datasets:
        rows, reported = _split([e for e in entries if e["dataset"] == d])
        link = f'<a href="{html.escape(page_name(d))}">{html.escape(d)}</a>'
        best = max((e for e in rows if role(e) in ("expert", "method")
                    and not e.get("chosen_on_test") and is_number(e.get("acr"))),
                   key=lambda e: e["acr"], default=None)
        summary.append(f'<tr><td class="text">{link}</td><td>{len(rows)}</td>'
                       f"<td>{len(reported)}</td>" + _text(
                           "–" if best is None else
                           f"{best['method']} [{best['benchmark']}] ({best['acr']:.3f})") + "</tr>")
        for f in families(rows):
            top = next((e for e in f.methods if not e.get("chosen_on_test")), None)
            gaps.append(f'<tr><td class="text">{link}</td>' + _text(f.label)
                        + f"<td>{f.experts}</td>" + _text(f.best["method"])
                        + _cell(f.best["acr"], "{:.3f}")
                        + _text("–" if top is None else top["method"])
                        + _cell(None if top is None else top["acr"], "{:.3f}")
                        + _cell(None if f.oracle is None else f.oracle["acr"], "{:.3f}")
                        + "</tr>")
    head = ["dataset", "entries", "reported only",
            "best certificate by ACR [benchmark] (inputs, n and alpha differ between benchmarks)"]
    heads = ["dataset", "family (benchmark)", "experts", "best single expert", "ACR",
             "best routed or composed (choices not made on test)", "ACR",
             "oracle ACR (not a certificate)"]
    return _document("rsrouter leaderboard", (
        f"{nav}<h1>Certified robustness leaderboard</h1><p class=\"caption\">"
        f"{html.escape(_INTRO)}</p><table>{_head(head)}<tbody>{''.join(summary)}</tbody></table>"
        "<h2>Routing headroom</h2><p class=\"caption\">Per family of experts on the same "
        "inputs: the best single expert, the best routed or composed method and the per-input "
        "oracle's ACR, the ceiling routing over the family could reach (not a certificate). "
        "Each dataset's page has every row.</p>"
        f"<table class=\"headroom\">{_head(heads)}<tbody>{''.join(gaps)}</tbody></table>"))


def pages(entries: list[dict]) -> dict[str, str]:
    """``index.html`` and one page per dataset, each self-contained (inline CSS, JS and SVG;
    nothing fetched): file name -> HTML."""
    datasets = sorted({e["dataset"] for e in entries})
    nav = "<nav><a href=\"index.html\">overview</a>" + "".join(
        f'<a href="{html.escape(page_name(d))}">{html.escape(d)}</a>' for d in datasets) + "</nav>"
    out = {page_name(d): _dataset_page(d, [e for e in entries if e["dataset"] == d], nav)
           for d in datasets}
    out["index.html"] = _overview(entries, datasets, nav)
    return out
