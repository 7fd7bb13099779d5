"""The benchmark report, rebuilt from the method TSVs and their metadata alone.

``build_report(DIR)`` writes ``summary.csv``, ``summary.md``, ``summary.json``,
``envelope.tsv``, ``curves.png``, ``cost.png`` (the cost plane) and one leaderboard entry per
method under ``entries/``:
certified accuracy at each grid radius with its exact (Clopper-Pearson) 95% interval over the
inputs, ACR with its standard error, the abstention rate, max regret (the largest gap below the
envelope on the grid, in points), forward passes and wall time per input, and what the count
store saved against certifying each method on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from .._moved import getattr_for as _getattr_for
from ..files import atomic_write_json, atomic_write_text
from ..leaderboard.entries import SCHEMA, entry_filename, entry_key, step_curve
from ..results.curves import average_certified_radius, certified_accuracy
from ..results.figures import (
    CostPoint,
    accuracy_figure,
    cost_figure,
    drawn,
    figure_key,
    finish_figure,
    interval95,
    md_text,
    plot_label,
    save_figure,
)
from ..results.tsv import write_tsv
from .methods import envelope
from .readback import CERTIFICATES, load_methods


def build_report(out: str | os.PathLike) -> pd.DataFrame:
    """Rebuild every summary file of the benchmark in ``out``; returns the summary table."""
    out = Path(out)
    bench, methods = load_methods(out)
    cfg = bench["config"]
    radii = [float(r) for r in cfg["radii"]]
    experts = {info["method"]: df for info, df in methods if info["type"] == "expert"}
    envelope_info = next((info for info, _ in methods if info["type"] == "envelope"), None)
    pool = {name: experts[name] for name in (envelope_info["pool"] if envelope_info
                                             else list(experts))}
    n_inputs = len(bench["inputs"])
    env = envelope(pool, radii)["certified_accuracy"].to_numpy() if pool else None
    rows, entries = [], []
    for info, df in methods:
        if info["type"] == "envelope":
            acc, k = env, np.rint(env * n_inputs)
            acr, se, abstain = None, None, None
            forwards = sum(float(pool[name]["forwards"].mean()) for name in pool)
            seconds = sum(float(pool[name]["time"].mean()) for name in pool)
        else:
            acc = certified_accuracy(df, radii).to_numpy()
            k = np.rint(acc * len(df))
            acr = average_certified_radius(df)
            se = float(np.std(df["radius"] * df["correct"], ddof=1) / np.sqrt(len(df))) \
                if len(df) > 1 else 0.0
            abstain = float(np.mean(df["predict"] == -1))
            forwards, seconds = float(df["forwards"].mean()), float(df["time"].mean())
        low, high = interval95(k, n_inputs)
        regret = float(np.max(env - acc)) * 100 if env is not None else None
        row = {"method": info["method"], "kind": info["kind"], "chosen_on": info["chosen_on"],
               "chosen_on_test": info["chosen_on_test"]}
        for r, a, lo, hi in zip(radii, acc, low, high):
            row[f"r={r:g}"] = round(100 * a, 1)
            row[f"r={r:g} low"] = round(100 * lo, 1)
            row[f"r={r:g} high"] = round(100 * hi, 1)
        row.update({"ACR": None if acr is None else round(acr, 3),
                    "ACR se": None if se is None else round(se, 3),
                    "abstain%": None if abstain is None else round(100 * abstain, 1),
                    "max regret": None if regret is None else round(max(regret, 0.0), 1),
                    "forwards/input": round(forwards), "s/input": round(seconds, 4)})
        rows.append(row)
        entries.append(_entry(info, bench, radii, acc, low, high, row, df))
    table = pd.DataFrame(rows).set_index("method")
    table.to_csv(out / "summary.csv")
    saved = _savings(out, methods, bench)
    atomic_write_json(out / "summary.json", {
        "benchmark": cfg["name"], "radii": radii, "inputs": n_inputs,
        "table": json.loads(table.reset_index().to_json(orient="records")), "count_store": saved})
    atomic_write_text(out / "summary.md", _markdown(cfg, bench, table, radii, saved, methods))
    if pool:
        write_tsv(envelope(pool, radii), out / "envelope.tsv")
    _curves(out / "curves.png", methods, pool, cfg["name"], n_inputs)
    _cost(out / "cost.png", methods, table, cfg, n_inputs)
    (out / "entries").mkdir(exist_ok=True)
    for entry in entries:
        atomic_write_json(out / "entries" / entry_filename(entry), entry)
    return table


def _entry(info, bench, radii, acc, low, high, row, df=None) -> dict:
    cfg = bench["config"]
    entry = {"schema": SCHEMA, "key": "", "benchmark": info["benchmark"],
             "dataset": info["data"]["dataset"], "split": info["data"]["split"],
             "data": {k: info["data"].get(k) for k in ("dataset", "split", "length",
                                                       "labels_sha256")},
             "inputs": {**info["inputs"], "sha256": hashlib.sha256(
                 json.dumps(bench["inputs"]).encode()).hexdigest()},
             "protocol": info["protocol"], "certificate": info.get("certificate"),
             "method": info["method"], "type": info["type"], "kind": info["kind"],
             "radii": radii, "accuracy": [round(float(a), 4) for a in acc],
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": row["ACR"], "acr_se": row["ACR se"], "abstain": row["abstain%"],
             "max_regret": row["max regret"], "forwards_per_input": row["forwards/input"],
             "seconds_per_input": row["s/input"], "experts": info.get("experts", []),
             "router": info.get("router"), "alpha_accounting": info.get("alpha_accounting"),
             "chosen_on": info["chosen_on"], "chosen_on_test": info["chosen_on_test"],
             "note": info.get("note", ""), "external": False, "counts_available": True,
             "config": {"name": cfg["name"], "inputs": cfg["inputs"]},
             "rsrouter_version": bench.get("rsrouter_version", __version__),
             "date": bench.get("date", "")}
    if df is not None and info["type"] != "envelope":  # the step function, from the radii
        entry["curve"] = step_curve(df["radius"].to_numpy(), df["correct"].to_numpy() == 1)
    entry["key"] = entry_key(entry)
    return entry


def _savings(out: Path, methods, bench) -> dict:
    """Forward passes the count store spent, against certifying each method on its own."""
    inputs = bench["inputs"]
    spent = 0
    for name in bench.get("counts", []):  # the count files this run used (not stale ones),
        df = pd.read_csv(out / name, sep="\t", usecols=["idx", "n", "n0"])  # checked on reading
        df = df[df["idx"].isin(inputs)]
        spent += int((df["n"] + df["n0"]).sum())
    separate = sum(int(df["forwards"].sum()) for info, df in methods
                   if info["type"] in CERTIFICATES)
    return {"forward_passes": spent, "separately": separate,
            "saved": separate - spent, "ratio": round(separate / spent, 2) if spent else None}


def _fmt_cell(row, r) -> str:
    return f"{row[f'r={r:g}']:.1f} [{row[f'r={r:g} low']:.1f}, {row[f'r={r:g} high']:.1f}]"


def _markdown(cfg, bench, table, radii, saved, methods) -> str:
    proto = cfg["protocol"]
    n = len(bench["inputs"])
    head = ["method", *[f"r={r:g}" for r in radii], "ACR", "max regret", "abstain %",
            "forwards/input", "s/input"]
    lines = [f"# {md_text(cfg['name'])}", "",
             f"{bench['data']['dataset']} ({bench['data']['split']}), {n} inputs "
             f"({bench.get('inputs_spec', '')}), n0 = {proto['n0']}, n = {proto['n']}, "
             f"alpha = {proto['alpha']}, seed = {proto['seed']}.", "",
             "Certified accuracy (%) at l2 radius r with its exact 95% interval over the inputs; "
             "ACR = average certified radius (standard error); max regret = the largest gap "
             "below the envelope on this grid, in points; forwards/input = the noisy forward "
             "passes per input each method would spend certifying alone (one expert: n0 + n), "
             "not what the shared count store spent.", "",
             "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for method, row in table.iterrows():
        flags = []
        if row["kind"] != "certificate":
            flags.append(row["kind"].split(":")[0])
        elif row["chosen_on_test"]:
            flags.append("choices made on the test inputs")
        elif row["chosen_on"] == "unknown":
            flags.append("where its choices were made is not recorded")
        name = md_text(method) + (f" ({'; '.join(flags)})" if flags else "")
        acr = "–" if pd.isna(row["ACR"]) else f"{row['ACR']:.3f} ({row['ACR se']:.3f})"
        cells = [name, *[_fmt_cell(row, r) for r in radii], acr,
                 "–" if pd.isna(row["max regret"]) else f"{row['max regret']:.1f}",
                 "–" if pd.isna(row["abstain%"]) else f"{row['abstain%']:.1f}",
                 f"{int(row['forwards/input']):,}", f"{row['s/input']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Count store: {saved['forward_passes']:,} noisy forward passes, one pass per "
              f"model; certifying each method on its own would take {saved['separately']:,} "
              f"({saved['ratio']}x).", "", "![certified accuracy curves](curves.png)", "",
              "![cost plane](cost.png)", ""]
    for info, _ in methods:
        routing = info.get("routing")
        lines.append(f"- **{md_text(info['method'])}** ({info['type']}): {info['kind']}; alpha: "
                     f"{info.get('alpha_accounting', '')}; choices made on: {info['chosen_on']}"
                     + (_routing_text(routing) if routing else "")
                     + (f". {info['note']}" if info.get("note") else ""))
    return "\n".join(lines) + "\n"


def _routing_text(routing: dict) -> str:
    """One clause on what a router did: abstentions, choice shares and, for the set
    certificate, how often the chosen expert's own radius was the binding one."""
    text = "; router: "
    if "router_abstain" in routing:
        text += f"abstains on {100 * routing['router_abstain']:.1f}%, "
    text += "chooses " + ", ".join(f"{md_text(k)} {100 * v:.1f}%"
                                   for k, v in routing["choices"].items()
                                   if k != "-")
    if "through_a_child" in routing:
        text += f"; {100 * routing['through_a_child']:.1f}% of inputs go through a child router"
    if "radius_set_by_chosen_expert" in routing:
        text += (f"; the radius is set by the chosen expert on "
                 f"{100 * routing['radius_set_by_chosen_expert']:.1f}% of inputs and by another "
                 f"expert it may switch to on {100 * routing['radius_set_by_another_expert']:.1f}%")
    if "other_experts_counted_per_input" in routing:
        text += (f"; the plan counts another expert on "
                 f"{100 * routing['inputs_with_another_expert_counted']:.1f}% of inputs "
                 f"({routing['other_experts_counted_per_input']:.2f} per input)")
    if "inputs_fallback" in routing:
        text += (f"; the cascade behind it certifies {100 * routing['inputs_fallback']:.1f}% of "
                 f"inputs ({100 * routing['inputs_abstain']:.1f}% abstain), running "
                 f"{routing['experts_evaluated_beyond_the_plan_per_input']:.2f} experts per "
                 "input beyond the plan")
    return text


def _curves(path: Path, methods, pool: dict, title: str, n_inputs: int) -> None:
    """curves.png: one line per method, 95% bands on certificates; not drawn again (nor
    matplotlib imported) when the PNG there was drawn from the same lines (its key)."""
    frames = [df for _, df in methods if df is not None and len(df)]
    top = max([float(df["radius"].max()) for df in frames] + [0.5]) * 1.05
    grid = np.linspace(0, top, 240)
    lines = []  # (label, accuracy %, style, 95% band or None)
    for info, df in methods:
        if info["type"] == "envelope":
            if pool:
                env = envelope(pool, grid)["certified_accuracy"].to_numpy() * 100
                lines.append((f"{info['method']} (not a classifier)", env,
                              {"linestyle": ":", "color": "black"}, None))
            continue
        acc = certified_accuracy(df, grid).to_numpy()
        if info["type"] == "oracle":
            lines.append((f"{info['method']} (not a certificate)", acc * 100,
                          {"linestyle": "--", "color": "0.45"}, None))
            continue
        low, high = interval95(np.rint(acc * len(df)), len(df))
        lines.append((info["method"], acc * 100, {}, (low * 100, high * 100)))
    title = f"{title}: {n_inputs} inputs, 95% intervals shaded"
    key = figure_key(grid, title, *[x for line in lines for x in _flat(line)], code=(__file__,))
    if drawn(path, key):
        return
    fig, ax = accuracy_figure((7.2, 4.6))
    for label, acc, style, band in lines:
        line, = ax.plot(grid, acc, label=plot_label(label), **style)
        if band is not None:
            ax.fill_between(grid, *band, color=line.get_color(), alpha=0.12, linewidth=0)
    finish_figure(fig, ax, title, top=top, legend=7)
    save_figure(fig, path, key)


TYPE_COLORS = {"expert": "C0", "router": "C3", "tree": "C4", "cascade": "C2", "aces": "C1"}


def _cost(path: Path, methods, table, cfg: dict, n_inputs: int) -> None:
    """cost.png: ACR and max regret against forward passes per input (as each method would
    spend them alone), one point per certificate, the oracle's ACR and regret 0 as dashed lines;
    keyed like curves.png (not drawn again while its points are unchanged)."""
    unit = cfg["protocol"]["n0"] + cfg["protocol"]["n"]
    points = [CostPoint(info["method"], float(df["forwards"].mean()) / unit,
                        float(table.at[info["method"], "ACR"]),
                        float(table.at[info["method"], "ACR se"]),
                        None if pd.isna(table.at[info["method"], "max regret"])
                        else float(table.at[info["method"], "max regret"]),
                        info["type"], TYPE_COLORS.get(info["type"], "C7"))
              for info, df in methods if info["type"] in CERTIFICATES and len(df)]
    oracles = tuple((float(table.at[info["method"], "ACR"]), "0.3") for info, df in methods
                    if info["type"] == "oracle" and len(df))
    title = (f"{cfg['name']}: {n_inputs} inputs; forward passes as each method would spend "
             "them alone")
    key = figure_key(title, points, oracles, code=(__file__,))
    if drawn(path, key):
        return
    save_figure(cost_figure(points, oracles=oracles, title=title), path, key)


def _flat(line: tuple) -> list:
    label, acc, style, band = line
    return [label, acc, sorted(style.items()), *(band or ("no band",))]


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
