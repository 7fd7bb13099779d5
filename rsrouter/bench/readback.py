"""A benchmark's results read back: every method's rows checked against what the benchmark
certifies (count columns, protocol, sigmas, a cascade's levels), against the count store for the
model of each role, and an oracle against its experts' rows. :mod:`rsrouter.bench.report`
rebuilds the summary from what :func:`load_methods` returns.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..cards.router import LAZY_KINDS
from ..certify.cascade import CASCADE_EXTRAS, cascade_bounds
from ..certify.checks import RADIUS_TOLERANCE
from ..certify.fallback import FALLBACK_EXTRAS
from ..certify.lazy_set import LAZY_SET_EXTRAS
from ..certify.routed import ROUTED_EXTRAS
from ..certify.set_certificate import SET_EXTRAS
from ..certify.tree import TREE_EXTRAS
from ..errors import ResultsError
from ..results.logs import N_COLUMNS, SIGMA_COLUMNS, column_values
from ..results.rows import EXPERT_EXTRAS
from ..results.tsv import read_tsv, settings_path
from .counts import read_counts
from .methods import oracle_frame

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
        raise ResultsError(f"{out} holds no benchmark (no bench.json); run `rsrouter bench run` "
                           "(for certification logs imported with `rsrouter leaderboard "
                           "import-tsv`, `rsrouter leaderboard compose` gives their envelope "
                           "and per-input oracle)")
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


def _store(out: Path, bench: dict) -> dict[tuple, dict[int, dict]]:
    """The run's count files (each checked by :func:`read_counts`), by the model they count:
    ``(weights sha256, config sha256, sigma)``, each as its rows by ``idx``."""
    if "counts" not in bench:
        raise ResultsError(f"{out}/bench.json lists no count files: rerun `rsrouter bench run` "
                           "(a report checks every certificate against the counts it used)")
    store = {}
    for name in bench["counts"]:
        settings = json.loads(settings_path(out / name).read_text())
        counts = read_counts(out / name, bench["inputs"])
        store[_model_key(settings["model"])] = counts.to_dict("index")
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
    return None if counts is None else counts.get(idx)


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
    if info.get("certificate") in LAZY_KINDS:
        return _lazy_against_store(row, info, router, store, idx)
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


def _votes(stored) -> str | None:
    return None if stored is None or stored["select"] is None else \
        ",".join(map(str, stored["select"]))


def _lazy_against_store(row, info, router, store, idx: int) -> str | None:
    """A lazy set row: the method's margin and alpha split (one plan rule for every input,
    fixed before the run), the router's estimation counts and selection votes, each expert's
    selection (its class and votes) and, where counted, its counts, all the store's."""
    if "margin" not in info or not math.isclose(float(row.margin), float(info["margin"])):
        return "margin (the method's, for every input)"
    fallback = info.get("certificate") == "lazy-set+cascade"
    share = float(info.get("fallback_share", 0.0)) if fallback else 0.0
    if fallback and not math.isclose(float(row.fallback_share), share):
        return "fallback_share (the method's, for every input)"
    if "alpha_split" not in info or not math.isclose(
            float(row.alpha_router), float(row.alpha) * (1 - share) * float(info["alpha_split"]),
            rel_tol=1e-9):
        return "alpha_router (alpha times the method's alpha_split)"
    stored = _counted(store, router, idx)
    if stored is None or row.router_counts != ",".join(map(str, stored["counts"])) \
            or str(row.router_select) != _votes(stored):
        return "router_counts or router_select"
    columns = [[int(float(v)) for v in str(getattr(row, c)).split(",")]
               for c in ("expert_cA", "expert_select_nA", "counted", "expert_nA", "expert_n")]
    sigmas = [float(v) for v in str(row.expert_sigma).split(",")]
    if not all(len(c) == len(info["experts"]) for c in [*columns, sigmas]):
        return "the experts' columns"
    for k, record in enumerate(info["experts"]):
        stored = _counted(store, record, idx)
        c_a, votes, counted, n_a, n = (c[k] for c in columns)
        if stored is None or stored["select"] is None or c_a != int(stored["cA"]) \
                or votes != int(stored["select"][c_a]) \
                or not math.isclose(sigmas[k], record["sigma"]) \
                or (n_a, n) != ((int(stored["nA"]), int(stored["n"])) if counted else (0, 0)):
            return f"expert {record['name']}'s selection, counts or sigma"
        if fallback and _class_counts_of(row, k) not in (None, list(map(int, stored["counts"]))):
            return f"expert {record['name']}'s class counts"
    return None


def _class_counts_of(row, k: int) -> list[int] | None:
    """Expert ``k``'s class counts in a router-then-cascade row (None: not evaluated)."""
    part = str(row.class_counts).split(";")[k]
    return None if part == "-" else [int(v) for v in part.split(",")]


def _required_columns(info: dict) -> tuple[str, ...]:
    """The count columns a method's rows must carry for its radii to be checked."""
    if info["type"] == "expert":
        return EXPERT_EXTRAS
    if info["type"] == "router" and info.get("certificate") == "set":
        return SET_EXTRAS
    if info["type"] == "router" and info.get("certificate") == "lazy-set":
        return LAZY_SET_EXTRAS
    if info["type"] == "router" and info.get("certificate") == "lazy-set+cascade":
        return FALLBACK_EXTRAS
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
