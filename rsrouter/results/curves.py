"""Certified-accuracy curves and tables of certification results."""

from __future__ import annotations

import html
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..certify.bounds import lower_bounds, upper_bounds
from ..protocol import RADII


def interval95(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided 95% (Clopper-Pearson) interval of ``k`` successes in ``n`` trials."""
    return lower_bounds(k, n, 0.025), upper_bounds(k, n, 0.025)


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


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``table`` (index as the first column)."""
    head = ["", *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index,
                                                         table.astype(object).to_numpy())]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def accuracy_figure(figsize: tuple[float, float]):
    """``(figure, axes)`` of an empty certified-accuracy plot: every plot rsrouter draws starts
    here and ends with :func:`finish_figure` (a matplotlib ``Figure`` on Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def finish_figure(fig, ax, title: str = "", *, top: float | None = None,
                  xlabel: str = "l2 radius (pixels in [0, 1])", legend: float = 8,
                  title_size: float | None = 10) -> None:
    """Axes labels, the 0-103% range (a curve at 100% stays visible above the frame's top
    line), the radius range ``[0, top]``, grid, legend and title (``$`` shown as typed)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)
    if top is not None:
        ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend)
    if title:
        ax.set_title(plot_label(title), fontsize=title_size)
    fig.tight_layout()


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` (120 dpi; the format its suffix names, PNG by default),
    atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix or '.png'}")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    return path


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
