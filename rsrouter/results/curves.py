"""Certified-accuracy curves and tables of certification results."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..protocol import RADII
from .figures import (  # noqa: F401  (re-exported: the plotting frame lives in figures.py)
    accuracy_figure,
    finish_figure,
    interval95,
    md_text,
    plot_label,
    save_figure,
)


def certified_accuracy(df: pd.DataFrame, radii: Sequence[float] = RADII) -> pd.Series:
    """Share of rows that are correct with ``radius >= r``, for each ``r`` (Cohen's curve)."""
    correct = df["correct"].to_numpy().astype(bool)
    radius = df["radius"].to_numpy()
    return pd.Series([float(np.mean(correct & (radius >= r))) if len(df) else float("nan")
                      for r in radii], index=list(radii), name="certified_accuracy")


def average_certified_radius(df: pd.DataFrame) -> float:
    """ACR: mean over rows of the radius when correct, else 0."""
    return float(np.mean(df["radius"].to_numpy() * df["correct"].to_numpy())) if len(df) else 0.0


def summary_table(results: dict[str, pd.DataFrame], radii: Sequence[float] = RADII) -> pd.DataFrame:
    """One row per method: certified accuracy (%) at each radius, ACR, abstain share, inputs."""
    rows = {}
    for name, df in results.items():
        acc = certified_accuracy(df, radii) * 100
        row: dict = {f"r={r:g}": round(v, 1) for r, v in acc.items()}
        row["ACR"] = round(average_certified_radius(df), 3)
        row["abstain%"] = round(100 * float(np.mean(df["predict"] == -1)), 1)
        row["inputs"] = len(df)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    if "inputs" in table:
        table["inputs"] = table["inputs"].astype(int)
    return table






def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``table`` (index as the first column)."""
    head = ["", *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index,
                                                         table.astype(object).to_numpy())]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])








def curves_figure(results: dict[str, pd.DataFrame], title: str = "",
                  max_radius: float | None = None, baselines: Sequence[str] = ()):
    """The matplotlib Figure of :func:`plot_curves`."""
    top = max_radius or max([float(df["radius"].max()) for df in results.values() if len(df)]
                            + [0.5]) * 1.05
    grid = np.linspace(0, top, 300)
    fig, ax = accuracy_figure((6.4, 4.2))
    for name, df in results.items():
        style = {"linestyle": "--", "color": "0.45"} if name in baselines else {}
        ax.plot(grid, certified_accuracy(df, grid).to_numpy() * 100, label=plot_label(name),
                **style)
    finish_figure(fig, ax, title, top=top)
    return fig


def plot_curves(results: dict[str, pd.DataFrame], path: str | os.PathLike, title: str = "",
                max_radius: float | None = None, baselines: Sequence[str] = ()) -> Path:
    """Certified accuracy versus radius, one line per method; saved as PNG at ``path``.

    ``baselines`` (methods that are not certificates, such as the per-input oracle) are drawn
    dashed and grey, and their names say so.
    """
    return save_figure(curves_figure(results, title, max_radius, baselines), path)
