"""The benchmark report, rebuilt from the method TSVs and their metadata alone.

``build_report(DIR)`` writes ``summary.csv``, ``summary.md``, ``summary.json``,
``envelope.tsv``, ``curves.png`` and one leaderboard entry per method under ``entries/``:
certified accuracy at each grid radius with its exact (Clopper-Pearson) 95% interval over the
inputs, ACR with its standard error, the abstention rate, max regret (the largest gap below the
envelope on the grid, in points), forward passes and wall time per input, and what the count
store saved against certifying each method on its own.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..certify.cascade import CASCADE_EXTRAS, cascade_bounds
from ..certify.checks import RADIUS_TOLERANCE
from ..certify.routed import ROUTED_EXTRAS
from ..certify.set_certificate import SET_EXTRAS
from ..certify.tree import TREE_EXTRAS
from ..errors import ResultsError
from ..files import atomic_write_json, atomic_write_text
from ..leaderboard.board import SCHEMA, entry_filename, entry_key
from ..results.curves import (
    average_certified_radius,
    certified_accuracy,
    interval95,
    md_text,
    plot_label,
)
from ..results.logs import N_COLUMNS, SIGMA_COLUMNS, column_values
from ..results.rows import EXPERT_EXTRAS
from ..results.tsv import read_tsv, settings_path, write_tsv
from .counts import read_counts
from .methods import envelope, oracle_frame

CERTIFICATES = ("expert", "router", "tree", "cascade", "aces")


def load_methods(out: str | os.PathLike) -> tuple[dict, list[tuple[dict, pd.DataFrame | None]]]:
    """``(bench, [(metadata, rows)])`` of the benchmark in ``out``, in the config's order.

    Raises:
        ResultsError: no benchmark there, or a method file of another run (a rerun that stopped
            half-way): rerun `bench run` to finish it.
    """
    out = Path(out)
    path = out / "bench.json"
    if not path.is_file():
        raise ResultsError(f"{out} holds no benchmark (no bench.json); run `rsrouter bench run`")
    bench = json.loads(path.read_text())
    store = _store(out, bench)
    methods = []
    for spec in bench["config"]["methods"]:
        meta = out / f"{spec['name']}.method.json"
        if not meta.is_file():
            raise ResultsError(f"{out}: method {spec['name']} has no results; rerun `rsrouter "
                               "bench run` to finish the benchmark")
        info = json.loads(meta.read_text())
        if info.get("run_key") != bench.get("run_key"):
            raise ResultsError(f"{meta} belongs to another run of this folder (a rerun that did "
                               "not finish); rerun `rsrouter bench run` to finish it")
        rows = None
        if info["type"] != "envelope":
            where = str(out / f"{spec['name']}.tsv")
            rows = read_tsv(where)
            check_certificate_rows(rows, info, bench, where)
            if info["type"] in CERTIFICATES:
                check_against_store(rows, info, store, where)
        methods.append((info, rows))
    _check_oracles(methods, str(out))
    return bench, methods


def _model_key(record: dict) -> tuple:
    return record.get("weights_sha256"), record.get("config_sha256"), record.get("sigma")


def _store(out: Path, bench: dict) -> dict[tuple, pd.DataFrame]:
    """The run's count files (each checked by :func:`read_counts`), by the model they count:
    ``(weights sha256, config sha256, sigma)``."""
    if "counts" not in bench:
        raise ResultsError(f"{out}/bench.json lists no count files: rerun `rsrouter bench run` "
                           "(a report checks every certificate against the counts it used)")
    store = {}
    for name in bench["counts"]:
        settings = json.loads(settings_path(out / name).read_text())
        store[_model_key(settings["model"])] = read_counts(out / name, bench["inputs"])
    return store


def check_against_store(df: pd.DataFrame, info: dict, store: dict, where: str) -> None:
    """Every count a method's rows hold is the count store's, for the model of its role (the
    router, the expert each row names, a cascade's stage, a tree's child), at its sigma: rows
    can only be recomputed from the counts the run made, never edited into a certificate.

    Raises:
        ResultsError: naming the row, the column and the fix.
    """
    experts = {e["name"]: e for e in info.get("experts", [])}
    router = info.get("router") or {}
    children = router.get("children") or []
    for i, row in enumerate(df.itertuples(index=False)):
        bad = _row_against_store(row, info, experts, router, children, store)
        if bad:
            raise ResultsError(f"{where}: row {i + 1} (idx {row.idx}): {bad} is not what the "
                               "count store holds for it; the file was edited. Rerun `rsrouter "
                               "bench run` to rewrite it")


def _counted(store: dict, record: dict | None, idx: int):
    counts = store.get(_model_key(record)) if record else None
    return None if counts is None or idx not in counts.index else counts.loc[idx]


def _triple(row, names: tuple[str, str, str], stored) -> bool:
    return stored is not None and [int(getattr(row, c)) for c in names] == [
        int(stored["cA"]), int(stored["nA"]), int(stored["n"])]


def _row_against_store(row, info, experts, router, children, store) -> str | None:
    kind, idx = info["type"], int(row.idx)
    if kind == "expert":
        record = next(iter(experts.values()), None)
        ok = _triple(row, ("cA", "nA", "n"), _counted(store, record, idx)) \
            and math.isclose(row.sigma, record["sigma"])
        return None if ok else "cA, nA, n or sigma"
    if kind == "cascade":
        record = experts.get(row.stage_expert)
        ok = _triple(row, ("stage_cA", "stage_nA", "stage_n"), _counted(store, record, idx)) \
            and math.isclose(row.stage_sigma, record["sigma"])
        return None if ok else "stage_cA, stage_nA, stage_n or stage_sigma"
    if not math.isclose(float(getattr(row, "router_sigma", getattr(row, "root_sigma", 0))),
                        router.get("sigma", -1)):
        return "the router's sigma"
    if info.get("certificate") == "set":
        stored = _counted(store, router, idx)
        if stored is None or row.router_counts != ",".join(map(str, stored["counts"])):
            return "router_counts"
        columns = [[float(v) for v in str(getattr(row, c)).split(",")]
                   for c in ("expert_cA", "expert_nA", "expert_n", "expert_sigma")]
        expected = []
        for record in info["experts"]:
            stored = _counted(store, record, idx)
            if stored is None:
                return "the experts' counts"
            expected.append([stored["cA"], stored["nA"], stored["n"], record["sigma"]])
        ok = np.allclose(np.array(columns).T, expected) if len(expected) == len(columns[0]) \
            else False
        return None if ok else "the experts' counts or sigmas"
    if kind == "tree":
        stored = _counted(store, router, idx)
        if stored is None or row.root_counts != ",".join(map(str, stored["counts"])):
            return "root_counts"
        if int(row.child_n) > 0 and not any(
                _triple(row, ("child_cA", "child_nA", "child_n"), _counted(store, c, idx))
                and math.isclose(row.child_sigma, c["sigma"]) for c in children):
            return "the child router's counts"
    elif not _triple(row, ("router_cA", "router_nA", "router_n"), _counted(store, router, idx)):
        return "router_cA, router_nA or router_n"
    if row.expert != "-":
        record = experts.get(row.expert)
        if record is None or not _triple(row, ("cA", "nA", "n"), _counted(store, record, idx)) \
                or not math.isclose(row.sigma, record["sigma"]):
            return "the chosen expert's cA, nA, n or sigma"
    return None


def _required_columns(info: dict) -> tuple[str, ...]:
    """The count columns a method's rows must carry for its radii to be checked."""
    if info["type"] == "expert":
        return EXPERT_EXTRAS
    if info["type"] == "router" and info.get("certificate") == "set":
        return SET_EXTRAS
    if info["type"] in ("router", "aces"):
        return ROUTED_EXTRAS
    return {"tree": TREE_EXTRAS, "cascade": CASCADE_EXTRAS}.get(info["type"], ())


def check_certificate_rows(df: pd.DataFrame, info: dict, bench: dict, where: str) -> None:
    """A method's rows are what its type certifies: the count columns its radii follow from
    (:func:`rsrouter.results.tsv.read_tsv` has checked that they do), at the benchmark's n0 and at
    most its alpha; an expert's at its recorded sigma. Rows without counts are not reported
    as certificates.

    Raises:
        ResultsError: naming the file, what is missing or at odds, and the fix.
    """
    missing = [c for c in (*_required_columns(info), "forwards") if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}: a {info['type']} method's rows need the columns "
                           f"{missing}; without its counts a radius is no certificate. Rerun "
                           "`rsrouter bench run` to rewrite it from the count store")
    if info["type"] not in CERTIFICATES or df.empty:
        return
    proto = bench["config"]["protocol"]
    n0 = df["stage_n0" if info["type"] == "cascade" else "n0"].to_numpy()
    bad = [f"n0 {int(n0[n0 != proto['n0']][0])} (the protocol's is {proto['n0']})"
           for _ in [0] if (n0 != proto["n0"]).any()]
    alpha = df["alpha"].to_numpy(dtype=float)
    if (alpha > proto["alpha"] * (1 + 1e-9)).any():
        bad.append(f"alpha {float(alpha.max())} (the protocol's is {proto['alpha']})")
    n = column_values(df, N_COLUMNS)
    if n and max(n) > proto["n"]:
        bad.append(f"n {int(max(n))} (the protocol's is {proto['n']})")
    router = info.get("router") or {}
    models = [*info.get("experts", []), router, *(router.get("children") or [])]
    sigmas = {float(m["sigma"]) for m in models if m.get("sigma") is not None}
    used = {v for v in column_values(df, SIGMA_COLUMNS) if v > 0}
    if not all(any(math.isclose(u, v) for v in sigmas) for u in used):
        bad.append(f"sigma {sorted(used - sigmas)} (its models' are {sorted(sigmas)})")
    if info["type"] == "cascade":
        bad += _cascade_levels(df, info, bench)
    if bad:
        raise ResultsError(f"{where}: rows certified with {'; '.join(bad)}: not what this "
                           "benchmark certifies. Rerun `rsrouter bench run` to rewrite it")


def _cascade_levels(df: pd.DataFrame, info: dict, bench: dict) -> list[str]:
    """A cascade's rows use its rule's level and threshold (see :func:`cascade_one`)."""
    spec = next((m for m in bench["config"]["methods"] if m["name"] == info["method"]), {})
    alpha = bench["config"]["protocol"]["alpha"]
    if spec.get("alpha_rule", "sound") == "sound":
        level = alpha / cascade_bounds(len(info.get("experts", [])))
    else:
        level = alpha / (df["stage"].to_numpy() + 1)
    bad = []
    if (df["stage_alpha"].to_numpy() > level * (1 + 1e-9)).any():
        bad.append(f"stage_alpha {float(df['stage_alpha'].max())} (its rule allows at most "
                   f"{float(np.min(level)):g})")
    if not np.allclose(df["threshold"].to_numpy(), spec.get("threshold", 0.5)):
        bad.append(f"threshold {df['threshold'].iloc[0]} (its config's is "
                   f"{spec.get('threshold', 0.5)})")
    return bad


def _check_oracles(methods: list, where: str) -> None:
    """An oracle's rows are recomputed from its experts' rows; they must be the same."""
    rows = {info["method"]: df for info, df in methods}
    for info, df in methods:
        if info["type"] != "oracle":
            continue
        pool = {name: rows[name] for name in info.get("pool", []) if name in rows}
        expected = oracle_frame(pool) if pool else None
        if expected is None or not (
                np.array_equal(expected["idx"], df["idx"])
                and np.array_equal(expected["correct"], df["correct"])
                and np.allclose(expected["radius"], df["radius"], atol=RADIUS_TOLERANCE)):
            raise ResultsError(f"{where}: method {info['method']} (oracle) does not follow from "
                               "its experts' rows; rerun `rsrouter bench run` to rewrite it")


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
        entries.append(_entry(info, bench, radii, acc, low, high, row))
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
    (out / "entries").mkdir(exist_ok=True)
    for entry in entries:
        atomic_write_json(out / "entries" / entry_filename(entry), entry)
    return table


def _entry(info, bench, radii, acc, low, high, row) -> dict:
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
    entry["key"] = entry_key(entry)
    return entry


def _savings(out: Path, methods, bench) -> dict:
    """Forward passes the count store spent, against certifying each method on its own."""
    inputs = bench["inputs"]
    spent = 0
    for name in bench.get("counts", []):  # the count files this run used (not stale ones)
        df = read_counts(out / name)
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
             "below the envelope on this grid, in points.", "",
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
              f"({saved['ratio']}x).", ""]
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
    return text


def _curves(path: Path, methods, pool: dict, title: str, n_inputs: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = [df for _, df in methods if df is not None and len(df)]
    top = max([float(df["radius"].max()) for df in frames] + [0.5]) * 1.05
    grid = np.linspace(0, top, 240)
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for info, df in methods:
        if info["type"] == "envelope":
            if pool:
                env = envelope(pool, grid)["certified_accuracy"].to_numpy() * 100
                ax.plot(grid, env, ":", color="black",
                        label=plot_label(f"{info['method']} (not a classifier)"))
            continue
        acc = certified_accuracy(df, grid).to_numpy()
        low, high = interval95(np.rint(acc * len(df)), len(df))
        if info["type"] == "oracle":
            ax.plot(grid, acc * 100, "--", color="0.45",
                    label=plot_label(f"{info['method']} (not a certificate)"))
            continue
        line, = ax.plot(grid, acc * 100, label=plot_label(info["method"]))
        ax.fill_between(grid, low * 100, high * 100, color=line.get_color(), alpha=0.12,
                        linewidth=0)
    ax.set_xlabel("l2 radius (pixels in [0, 1])")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)
    ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(plot_label(f"{title}: {n_inputs} inputs, 95% intervals shaded"), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
