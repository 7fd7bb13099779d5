"""Certify experts and a routed ensemble on the same inputs; the per-input oracle; the report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..data import data_identity
from ..errors import CountsError, ResultsError
from ..files import atomic_write_text
from ..results import RADII, markdown_table, plot_curves, read_tsv, summary_table
from ..router import ROUTED_EXTRAS, RoutedClassifier, compose, routed_extras
from ..runs import certify_dataset, run_settings
from ..smoothing import ABSTAIN, certificate_from_counts


def certify_methods(
    experts: Sequence,
    routed: RoutedClassifier | None,
    dataset,
    indices: Sequence[int],
    out_dir: str | os.PathLike,
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int = 0,
    progress: bool = True,
    routed_name: str = "routed",
) -> tuple[dict[str, Path], dict[str, Path]]:
    """One resumable TSV per method under ``out_dir``: ``<expert name>.tsv``, then
    ``<routed_name>.tsv``; returns ``({expert: path}, {routed method: path})``."""
    out_dir = Path(out_dir)
    common = dict(data=data_identity(dataset), n0=n0, n=n, alpha=alpha, seed=seed)
    experts_out, routed_out = {}, {}
    for expert in experts:
        path = out_dir / f"{expert.name}.tsv"
        settings = run_settings({"expert": expert}, mode=expert.mode, **common)
        certify_dataset(expert, dataset, indices, path, n0=n0, n=n, alpha=alpha,
                        batch_size=batch_size, seed=seed, settings=settings, progress=progress,
                        desc=f"certify {expert.name}")
        experts_out[expert.name] = path
    if routed is not None:
        path = out_dir / f"{routed_name}.tsv"
        settings = run_settings(routed_models(routed), mode=routed.mode,
                                alpha_split=routed.alpha_split, **common)
        certify_dataset(routed, dataset, indices, path, n0=n0, n=n, alpha=alpha,
                        batch_size=batch_size, seed=seed, settings=settings,
                        extras=ROUTED_EXTRAS, row_extras=routed_extras, progress=progress,
                        desc=f"certify {routed_name}")
        routed_out[routed_name] = path
    return experts_out, routed_out


def routed_models(routed: RoutedClassifier) -> dict:
    """The router and its experts, by role, for :func:`run_settings`."""
    return {"router": routed.router, **{f"expert{k}": e for k, e in enumerate(routed.experts)}}


def compose_from_counts(router_df: pd.DataFrame, expert_dfs: Sequence[pd.DataFrame],
                        names: Sequence[str], alpha: float, alpha_split: float = 0.5
                        ) -> pd.DataFrame:
    """Routed certificates rebuilt from stored counts, without drawing a sample.

    ``router_df``: the router's certificates (``cA`` = chosen expert, ``nA``, ``n``, ``n0``,
    ``sigma``) on the router's noise streams; ``expert_dfs``: each expert's certificates of the
    same inputs (same seed): a routed run draws exactly these expert samples, so composing the
    counts at ``alpha_r`` / ``alpha_e`` gives the routed TSV bit for bit. For ablations over
    routers: certify each router alone, reuse the experts' counts.
    """
    alpha_r = alpha * alpha_split
    alpha_e = alpha - alpha_r
    by_idx = [df.set_index("idx") for df in expert_dfs]
    rows = []
    for r in router_df.itertuples(index=False):
        try:
            route = certificate_from_counts(int(r.cA), int(r.nA), int(r.n), int(r.n0),
                                            float(r.sigma), alpha_r)
            expert = None
            if route.prediction != ABSTAIN:
                if not 0 <= route.prediction < len(by_idx):
                    raise CountsError(f"the router chose expert {route.prediction}, but there are "
                                      f"{len(by_idx)}")
                if r.idx not in by_idx[route.prediction].index:
                    raise ResultsError(f"expert {names[route.prediction]!r} has no certificate "
                                       "of this input")
                e = by_idx[route.prediction].loc[r.idx]
                expert = certificate_from_counts(int(e.cA), int(e.nA), int(e.n), int(e.n0),
                                                 float(e.sigma), alpha_e)
        except (CountsError, ResultsError) as err:
            raise type(err)(f"input idx {r.idx}: {err}") from None
        cert = compose(route, expert, names[route.prediction] if expert else "", alpha,
                       alpha_r, alpha_e)
        rows.append({"idx": r.idx, "label": r.label, "predict": cert.prediction,
                     "radius": cert.radius,
                     "correct": int(cert.prediction != ABSTAIN and cert.prediction == r.label),
                     "time": 0.0, **routed_extras(cert)})
    return pd.DataFrame(rows)


ORACLE = "oracle (per-input best expert; not a certificate)"


def oracle_frame(expert_results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per input, the best expert in hindsight (largest certified radius among correct ones).

    A ceiling for any router over these experts, **not a certificate**: choosing the expert by
    the label is not something a certified classifier can do. ``predict`` is the label where some
    expert is correct, else the first non-abstaining expert's prediction, else ABSTAIN (so the
    abstain share counts inputs where every expert abstains).
    """
    frames = list(expert_results.values())
    idx = frames[0]["idx"].to_numpy()
    for df in frames[1:]:
        if not np.array_equal(df["idx"].to_numpy(), idx):
            raise ValueError("oracle: the experts were not certified on the same inputs")
    radius = np.stack([df["radius"].to_numpy() * df["correct"].to_numpy() for df in frames], 1)
    correct = np.stack([df["correct"].to_numpy() for df in frames], 1).any(1)
    predictions = np.stack([df["predict"].to_numpy() for df in frames], 1)
    answered = predictions != ABSTAIN
    first = predictions[np.arange(len(idx)), answered.argmax(1)]
    wrong = np.where(answered.any(1), first, ABSTAIN)
    best = radius.argmax(1)
    names = list(expert_results)
    return pd.DataFrame({"idx": idx, "label": frames[0]["label"],
                         "predict": np.where(correct, frames[0]["label"], wrong),
                         "radius": radius.max(1), "correct": correct.astype(int),
                         "best_expert": [names[b] if c else "-" for b, c in zip(best, correct)]})


def routing_stats(routed: pd.DataFrame) -> dict:
    """Router behaviour on the certified inputs: choice shares, abstain rate, mean radius."""
    choices = routed["expert"].value_counts(normalize=True).round(4).to_dict()
    return {"router_mean_radius": round(float(routed["router_radius"].mean()), 4),
            "router_abstain": round(float((routed["expert"] == "-").mean()), 4),
            "choices": {str(k): float(v) for k, v in choices.items()},
            "expert_abstain_given_route": round(float(
                ((routed["predict"] == -1) & (routed["expert"] != "-")).mean()), 4)}


def report(experts: dict[str, Path], out_dir: str | os.PathLike, *, title: str,
           routed: dict[str, Path] | None = None, radii: Sequence[float] = RADII,
           with_oracle: bool = True) -> pd.DataFrame:
    """Table (md/csv/json) and curves (png) of the expert TSVs and the routed TSVs; returns the
    table. The per-input oracle over the experts is added, labelled as not a certificate."""
    out_dir = Path(out_dir)
    routed = routed or {}
    expert_results = {name: read_tsv(p) for name, p in experts.items()}
    routed_results = {name: read_tsv(p) for name, p in routed.items()}
    results = {**expert_results, **routed_results}
    baselines = []
    if with_oracle and len(expert_results) > 1:
        results[ORACLE] = oracle_frame(expert_results)
        baselines.append(ORACLE)
    table = summary_table(results, radii)
    routing = {name: routing_stats(df) for name, df in routed_results.items()}
    table.to_csv(out_dir / "summary.csv")
    atomic_write_text(out_dir / "summary.json",
                      json.dumps({"title": title, "table": table.to_dict(orient="index"),
                                  "not_certificates": baselines, "routing": routing},
                                 indent=2) + "\n")
    lines = [f"# {title}", "", "Certified accuracy (%) at l2 radius r; ACR = average certified "
             "radius.", "", markdown_table(table), ""]
    if baselines:
        lines += [f"The {ORACLE.split(' (')[0]} row picks the best expert per input knowing the "
                  "label: a ceiling for routing, not a certificate.", ""]
    lines += [f"Router ({name}): " + json.dumps(stats) for name, stats in routing.items()]
    atomic_write_text(out_dir / "summary.md", "\n".join([*lines, ""]))
    plot_curves(results, out_dir / "certified_accuracy.png", title=title, baselines=baselines)
    return table
