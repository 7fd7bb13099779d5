"""Certify experts and a routed ensemble on the same inputs; the per-input oracle; the report."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_text
from ..results import RADII, markdown_table, plot_curves, read_tsv, summary_table
from ..router import ROUTED_EXTRAS, RoutedClassifier, compose, routed_extras
from ..runs import certify_dataset
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
) -> dict[str, Path]:
    """One resumable TSV per method under ``out_dir``: ``<expert name>.tsv``, then
    ``<routed_name>.tsv``; returns ``{method: path}``."""
    out_dir = Path(out_dir)
    common = {"n0": n0, "n": n, "alpha": alpha, "seed": seed, "indices": list(indices)}
    paths = {}
    for expert in experts:
        path = out_dir / f"{expert.name}.tsv"
        settings = {**common, "weights_sha256": expert.card.weights_sha256, "mode": expert.mode}
        certify_dataset(expert, dataset, indices, path, n0=n0, n=n, alpha=alpha,
                        batch_size=batch_size, seed=seed, settings=settings, progress=progress,
                        desc=f"certify {expert.name}")
        paths[expert.name] = path
    if routed is not None:
        path = out_dir / f"{routed_name}.tsv"
        settings = {**common, "router_sha256": routed.router.card.weights_sha256,
                    "experts": [e.card.weights_sha256 for e in routed.experts],
                    "alpha_split": routed.alpha_split, "mode": routed.mode}
        certify_dataset(routed, dataset, indices, path, n0=n0, n=n, alpha=alpha,
                        batch_size=batch_size, seed=seed, settings=settings,
                        extras=ROUTED_EXTRAS, row_extras=routed_extras, progress=progress,
                        desc=f"certify {routed_name}")
        paths[routed_name] = path
    return paths


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
        route = certificate_from_counts(r.cA, r.nA, r.n, r.n0, r.sigma, alpha_r)
        expert = None
        if route.prediction != ABSTAIN:
            e = by_idx[route.prediction].loc[r.idx]
            expert = certificate_from_counts(int(e.cA), int(e.nA), int(e.n), int(e.n0),
                                             float(e.sigma), alpha_e)
        cert = compose(route, expert, names[route.prediction] if expert else "", alpha,
                       alpha_r, alpha_e)
        rows.append({"idx": r.idx, "label": r.label, "predict": cert.prediction,
                     "radius": cert.radius,
                     "correct": int(cert.prediction != ABSTAIN and cert.prediction == r.label),
                     "time": 0.0, **routed_extras(cert)})
    return pd.DataFrame(rows)


def oracle_frame(expert_results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per input, the best expert in hindsight (largest certified radius among correct ones).

    A ceiling for any router over these experts, not a certificate.
    """
    frames = list(expert_results.values())
    idx = frames[0]["idx"].to_numpy()
    for df in frames[1:]:
        if not np.array_equal(df["idx"].to_numpy(), idx):
            raise ValueError("oracle: the experts were not certified on the same inputs")
    radius = np.stack([df["radius"].to_numpy() * df["correct"].to_numpy() for df in frames], 1)
    correct = np.stack([df["correct"].to_numpy() for df in frames], 1).any(1)
    best = radius.argmax(1)
    names = list(expert_results)
    return pd.DataFrame({"idx": idx, "label": frames[0]["label"],
                         "predict": np.where(correct, frames[0]["label"], -1),
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


def report(paths: dict[str, Path], out_dir: str | os.PathLike, *, title: str,
           radii: Sequence[float] = RADII, with_oracle: bool = True) -> pd.DataFrame:
    """Table (md/csv/json) and curves (png) of ``paths``; returns the table."""
    out_dir = Path(out_dir)
    results = {name: read_tsv(p) for name, p in paths.items()}
    experts = {k: v for k, v in results.items() if k != "routed"}
    if with_oracle and len(experts) > 1:
        results["oracle (per-input best expert)"] = oracle_frame(experts)
    table = summary_table(results, radii)
    extra = {}
    if "routed" in results:
        extra = routing_stats(results["routed"])
    table.to_csv(out_dir / "summary.csv")
    atomic_write_text(out_dir / "summary.json",
                      json.dumps({"title": title, "table": table.to_dict(orient="index"),
                                  "routing": extra}, indent=2) + "\n")
    lines = [f"# {title}", "", "Certified accuracy (%) at l2 radius r; ACR = average certified "
             "radius.", "", markdown_table(table), ""]
    if extra:
        lines += ["Router: " + json.dumps(extra), ""]
    atomic_write_text(out_dir / "summary.md", "\n".join(lines))
    plot_curves(results, out_dir / "certified_accuracy.png", title=title)
    return table
