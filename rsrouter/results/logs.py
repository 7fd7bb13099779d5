"""Published certification logs: their radius formats, counts recovered from their radii, and
which sample sizes and noise levels a TSV names."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from ..certify.bounds import radii_from_counts
from ..errors import ProtocolMismatch

# the columns of a TSV's sample sizes and noise levels, whatever its certificate
N_COLUMNS = ("n", "router_n", "root_n", "child_n", "stage_n", "expert_n")
SIGMA_COLUMNS = ("sigma", "router_sigma", "root_sigma", "child_sigma", "stage_sigma",
                 "expert_sigma")


def column_values(df: pd.DataFrame, columns: Sequence[str]) -> list[float]:
    """Every value of ``columns`` present in ``df`` (comma lists split), sorted, distinct."""
    return sorted({float(v) for c in columns if c in df.columns for cell in df[c]
                   for v in str(cell).split(",")})


def has_counts(df: pd.DataFrame) -> bool:
    """Whether a TSV carries the counts its radii follow from (checked by
    :func:`rsrouter.results.tsv.read_tsv`):
    an expert's, a routed, set, tree or cascade certificate's. Cohen et al.'s published logs
    carry none."""
    return any(c in df.columns for c in ("stage_nA", "expert_nA", "root_groups", "nA"))


def half_unit(text: str) -> float:
    """Half a unit of the last digit of a number as printed (``"0.412"`` -> 0.0005,
    ``"1.2e-05"`` -> 5e-07, ``"3"`` -> 0.5): how far the value it was rounded from may lie."""
    text = text.strip().lower()
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


# how published logs print radii: Python's general format ("{:.3}", Cohen et al.'s certify.py:
# 3 significant digits, trailing zeros dropped) or fixed point ("%.4f")
_FORMATS = (*(f".{p}" for p in range(1, 13)), *(f".{d}f" for d in range(13)))


def log_format(logged: Sequence[str]) -> str | None:
    """The coarsest format spec that prints every logged radius back exactly as logged (the
    general ``.p`` formats first, then fixed point ``.df``); None when none does."""
    texts = [str(t).strip() for t in logged]
    values = [float(t) for t in texts]
    for fmt in _FORMATS:
        if all(format(v, fmt) == t for v, t in zip(values, texts)):
            return fmt
    return None


def _unit(value: float, fmt: str) -> float:
    """One unit of the last digit ``fmt`` prints for ``value``."""
    if fmt.endswith("f"):
        return 10.0 ** -int(fmt[1:-1])
    digits = int(fmt[1:])
    return 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1) if value else 1.0


@lru_cache(maxsize=64)
def _grid(n: int, alpha: float, sigma: float) -> np.ndarray:
    """The radius of every count ``0..n`` (0 where it does not certify), read-only."""
    grid = np.concatenate([[0.0], radii_from_counts(np.arange(1, n + 1), n, alpha, sigma)])
    grid.setflags(write=False)
    return grid


def _recover(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float, sigma: float,
             fmt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(nA, ok)`` per row: the smallest certifying ``nA`` whose radius prints as logged (with
    ``fmt``; without one, lies within half a unit of the logged digits), and whether one does."""
    grid = _grid(n, alpha, sigma)
    certifies = int(np.argmax(grid > 0)) if grid[-1] > 0 else n + 1  # the first nA that does
    n_a, ok = np.zeros(len(logged), np.int64), np.zeros(len(logged), bool)
    for i, (text, p) in enumerate(zip(logged, predict)):
        text = str(text).strip()
        value = float(text)
        if p == -1:
            ok[i] = value == 0
            continue
        if not math.isfinite(value) or value < 0:  # "0.0000": a radius printed below a digit
            continue
        half = 0.5 * _unit(value, fmt) if fmt else half_unit(text)
        k = max(int(np.searchsorted(grid, value - half * (1 + 1e-6))) - 2, certifies)
        while k <= n and grid[k] <= value + half * (1 + 1e-6) + 1e-12:
            if (format(grid[k], fmt) == text if fmt
                    else abs(grid[k] - value) <= half * (1 + 1e-9) + 1e-12):
                n_a[i], ok[i] = k, True
                break
            k += 1
    return n_a, ok


def producible(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
               sigma: float) -> np.ndarray:
    """Per row, whether some count out of ``n`` at ``alpha`` and ``sigma`` gives the logged
    radius as the log prints it."""
    return _recover_rows(logged, predict, n, alpha, sigma)[1]


def _recover_rows(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
                  sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_recover` with the log's format; a row it does not fit (printed otherwise than the
    rest) is checked by its own digits."""
    predict = np.asarray(predict)
    n_a, ok = _recover(logged, predict, n, alpha, sigma, log_format(logged))
    if not ok.all():
        rows = np.flatnonzero(~ok)
        again, fits = _recover([logged[i] for i in rows], predict[rows], n, alpha, sigma, None)
        n_a[rows], ok[rows] = again, fits
    return n_a, ok


def protocols_that_fit(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
                       sigma: float) -> list[tuple[int, float]]:
    """``(n, alpha)`` of the usual protocols other than the given one (n of 1,000 to 100,000,
    alpha of 0.001 to 0.05; the given ``n`` first) under which every logged radius comes from
    a count at ``sigma``."""
    return [(m, a) for m in dict.fromkeys((n, 1_000, 10_000, 100_000))
            for a in dict.fromkeys((alpha, 0.001, 0.01, 0.05)) if (m, a) != (n, alpha)
            and _recover_rows(logged, predict, m, a, sigma)[1].all()]


def protocol_hint(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
                  sigma: float) -> str:
    """What to check when a log's radii do not fit ``n``, ``alpha``, ``sigma``: the usual
    protocols (n of 1,000 to 100,000, alpha of 0.001 to 0.05) under which every row fits, if
    any."""
    fits = [f"n = {m}, alpha = {a}" for m, a in protocols_that_fit(logged, predict, n, alpha,
                                                                     sigma)]
    return (f"every row fits {' or '.join(fits)}: check which the source used" if fits else
            "check the declared protocol (--n, --alpha, --sigma) or the log")


def counts_from_radii(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
                      sigma: float, where: str) -> np.ndarray:
    """The smallest ``nA`` out of ``n`` whose radius at ``alpha`` and ``sigma``, printed as the
    log prints its radii (:func:`log_format`), is each row's logged radius (0 on an abstaining
    row): counts recovered from a published log. The radius recomputed from them is never above
    the logged one by more than the log's rounding.

    Raises:
        ProtocolMismatch: naming the first row whose radius no count can produce at this ``n``,
            with the usual protocols under which every row fits, if any.
    """
    fmt = log_format(logged)
    n_a, ok = _recover_rows(logged, predict, n, alpha, sigma)
    if ok.all():
        return n_a
    i = int(np.flatnonzero(~ok)[0])
    hint = protocol_hint(logged, predict, n, alpha, sigma)
    printed = f" (radii printed as {{:{fmt}}})" if fmt else ""
    raise ProtocolMismatch(
        f"{where}: row {i + 1}: logged radius {str(logged[i]).strip()} (predict {predict[i]}) "
        f"cannot come from any count at n = {n}, alpha = {alpha}, sigma = {sigma}{printed}; "
        f"{int((~ok).sum())} row(s) affected; {hint}")
