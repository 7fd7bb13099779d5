"""What every certificate kind's row check shares (torch-free): a row's counts are possible and
its prediction and radius follow from them. Each kind's own check sits next to its maths."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import CountsError, ResultsError
from .bounds import ABSTAIN, check_counts, radii_from_counts

RADIUS_TOLERANCE = 2e-6  # radii are written rounded to 6 decimals


def row_error(where: str, df: pd.DataFrame, bad: np.ndarray, what: str) -> ResultsError:
    """The error naming the first row of ``bad`` (a mask), what is wrong, and how many rows."""
    first = int(np.flatnonzero(bad)[0])
    return ResultsError(f"{where}: row {first + 1} (idx {df['idx'].iloc[first]}): {what}; "
                        f"{int(bad.sum())} row(s) affected. The file was edited or is corrupt")


def one_row(df: pd.DataFrame, i: int) -> np.ndarray:
    """The mask of row ``i`` alone."""
    bad = np.zeros(len(df), bool)
    bad[i] = True
    return bad


def numeric(df: pd.DataFrame, where: str, columns: Sequence[str]) -> None:
    """Raise ResultsError unless every column of ``columns`` holds numbers."""
    for column in columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise ResultsError(f"{where}: column {column} must hold numbers")


def require_columns(df: pd.DataFrame, where: str, columns: Sequence[str], what: str) -> None:
    """Raise ResultsError naming the columns of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}: {what} needs the columns {' '.join(columns)}; missing "
                           f"{missing}")


def ints(text: object) -> list[int]:
    """A TSV cell holding a comma list of integers."""
    return [int(v) for v in str(text).split(",")]


def floats(text: object) -> list[float]:
    """A TSV cell holding a comma list of numbers."""
    return [float(v) for v in str(text).split(",")]


def _int(value) -> int | object:
    return int(value) if float(value).is_integer() else value


def count_radii(df: pd.DataFrame, where: str, c_a: str, n_a: str, sigma: str, alpha: str,
                rows: np.ndarray) -> np.ndarray:
    """Check the counts of ``rows`` (a mask; ``n`` and ``n0`` columns); returns every row's
    radius recomputed from its counts (0 where it abstains; meaningful on ``rows`` only).

    Raises:
        CountsError: naming the first row with impossible counts.
    """
    numeric(df, where, [c_a, n_a, "n", "n0", sigma, alpha])
    columns = [df[c].to_numpy() for c in (c_a, n_a, "n", "n0", sigma, alpha)]
    for i in np.flatnonzero(rows):
        ca, na, n, n0, s, a = (c[i] for c in columns)
        try:
            check_counts(_int(ca), _int(na), _int(n), _int(n0), float(s), float(a))
        except CountsError as e:
            raise CountsError(f"{where}: row {i + 1} (idx {df['idx'].iloc[i]}): {e}") from None
    radius = radii_from_counts(df[n_a].to_numpy(), df["n"].to_numpy(), df[alpha].to_numpy(),
                               df[sigma].to_numpy())
    return np.where(rows, radius, 0.0)


def check_prediction(df: pd.DataFrame, where: str, predict: np.ndarray,
                     expected_radius: np.ndarray, c_a: str) -> None:
    """Raise ResultsError unless each row predicts its class ``c_a`` where the counts certify
    it and ABSTAIN elsewhere."""
    bad = np.where(expected_radius > 0, predict != df[c_a].to_numpy(), predict != ABSTAIN)
    if bad.any():
        raise row_error(where, df, bad, "predict must be the certified class (cA) when its "
                        "counts certify it and -1 (ABSTAIN) otherwise")
