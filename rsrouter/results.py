"""Certification results: the per-sample TSV (Cohen's columns first), resumable writing, curves.

TSV columns: ``idx label predict radius correct time`` then extras (counts, sigma, alpha, ...).
``predict`` is -1 on ABSTAIN; ``correct`` is 1 iff not abstaining and ``predict == label``.
Next to ``FILE.tsv`` a ``FILE.tsv.json`` records the run's settings; rerunning with the same
settings continues after the last complete row, with other settings it is refused.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ResumeError
from .files import atomic_write_json

COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)


def settings_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.json")


class ResumableTSV:
    """Append-only TSV whose rows are fsynced one by one; a torn last line is dropped on resume.

    Args:
        path: the TSV file.
        columns: all columns (Cohen's first).
        settings: what must match for a rerun to continue this file.

    Raises:
        ResumeError: the file exists with other settings or another header.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], settings: dict) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.done: set[int] = set()
        meta = settings_path(self.path)
        if self.path.exists():
            if not meta.exists():
                raise ResumeError(f"{self.path} exists but {meta} (its settings) does not; "
                                  "choose another --out or delete the file")
            old = json.loads(meta.read_text())
            if old != _jsonable(settings):
                diff = {k: (old.get(k), v) for k, v in _jsonable(settings).items()
                        if old.get(k) != v}
                raise ResumeError(f"{self.path} was written with other settings {diff} "
                                  "(old, new); choose another --out or delete the file to start "
                                  "over")
            self._recover()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(meta, _jsonable(settings))
            with open(self.path, "w") as f:
                f.write("\t".join(self.columns) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def _recover(self) -> None:
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # torn write: drop the partial last line
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        lines = complete.decode().splitlines()
        if not lines or lines[0].split("\t") != self.columns:
            raise ResumeError(f"{self.path} has another header than this run writes; choose "
                              "another --out or delete the file")
        self.done = {int(line.split("\t", 1)[0]) for line in lines[1:] if line}

    def append(self, rows: Iterable[dict]) -> None:
        """Write rows (dicts with every column) and fsync."""
        with open(self.path, "a") as f:
            for row in rows:
                f.write("\t".join(_fmt(row[c]) for c in self.columns) + "\n")
                self.done.add(int(row["idx"]))
            f.flush()
            os.fsync(f.fileno())


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return str(round(float(value), 6))
    return str(value)


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings))


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a certification TSV (any columns beyond Cohen's are kept)."""
    return pd.read_csv(path, sep="\t")


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
        row = {f"r={r:g}": round(v, 1) for r, v in acc.items()}
        row["ACR"] = round(average_certified_radius(df), 3)
        row["abstain%"] = round(100 * float(np.mean(df["predict"] == -1)), 1)
        row["inputs"] = len(df)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``table`` (index as the first column)."""
    head = ["", *map(str, table.columns)]
    rows = [[str(i), *map(str, r)] for i, r in zip(table.index, table.to_numpy().tolist())]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def plot_curves(results: dict[str, pd.DataFrame], path: str | os.PathLike, title: str = "",
                max_radius: float | None = None) -> Path:
    """Certified accuracy versus radius, one line per method; saved as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max_radius or max([float(df["radius"].max()) for df in results.values() if len(df)]
                            + [0.5]) * 1.05
    grid = np.linspace(0, top, 300)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, df in results.items():
        style = {"linestyle": "--", "color": "0.45"} if name.startswith("oracle") else {}
        ax.plot(grid, certified_accuracy(df, grid).to_numpy() * 100, label=name, **style)
    ax.set_xlabel("l2 radius (pixels in [0, 1])")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
