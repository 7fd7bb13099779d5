"""The multiscale cascade of Jeong & Shin (NeurIPS 2023), from counts (torch-free).

Experts from the largest sigma to the smallest; the first stage whose lower bound reaches the
threshold ``p0`` predicts, capped by every earlier stage's off-class bound (:func:`cascade_one`).
Its alpha accounting is :func:`stage_level`. A cascade's TSV row: :data:`CASCADE_EXTRAS`,
checked on reading by :func:`check_cascade_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import ResultsError
from .bounds import ABSTAIN, lower_bounds, lower_confidence_bound, upper_confidence_bound
from .checks import RADIUS_TOLERANCE, count_radii, row_error

CASCADE_EXTRAS = ("stage", "stage_expert", "stage_sigma", "stage_cA", "stage_nA", "stage_n",
                  "stage_n0", "stage_alpha", "threshold", "alpha")
CASCADE_COUNT_COLUMNS = ("stage_cA", "stage_nA", "stage_n", "stage_n0", "stage_sigma",
                         "stage_alpha", "threshold")


def _grouped(counts: np.ndarray, c: int) -> np.ndarray:
    """Class ``c``'s count first, then the other classes largest first, those with fewer than 5
    samples pooled until a pool reaches 5 (a leftover pool joins the last group of other classes,
    never class ``c``'s): the grouping of Jeong & Shin's code, which Goodman's intervals need
    (the ``faithful`` rule only: the sound rule does not pool)."""
    rest = counts.astype(np.int64).copy()
    first = int(rest[c])
    rest[c] = 0
    groups, pool = [first], 0
    for k in np.argsort(-rest, kind="stable"):
        if rest[k] >= 5:
            groups.append(int(rest[k]))
        else:
            pool += int(rest[k])
            if pool >= 5:
                groups.append(pool)
                pool = 0
    if pool:
        if len(groups) > 1:
            groups[-1] += pool
        else:
            groups.append(pool)
    return np.array(groups)


def off_class_upper(counts: np.ndarray, c: int, a: float, exact: bool = True) -> float:
    """An upper bound, at level ``a``, on the probability of every class other than ``c``.

    ``exact`` (the sound rule): a one-sided Clopper-Pearson upper bound on each of the other
    ``C - 1`` classes at ``a / (C - 1)``, their maximum (Bonferroni over a number of bounds fixed
    before the counts are seen: exact). Otherwise Jeong & Shin's code: classes with fewer than 5
    samples pooled (:func:`_grouped`), then Goodman's simultaneous intervals at two-sided level
    ``2a`` (asymptotic, chi-square based: not exact), or, with two groups, one minus the lower
    bound on ``p_c``. Pooling decided by the counts makes the number of bounds depend on the
    data they bound, so it is kept out of the sound rule."""
    if len(counts) < 2 or not 0 <= c < len(counts):
        raise ValueError(f"off-class bound: class {c} of {len(counts)} (needs >= 2 classes)")
    n = int(counts.sum())
    if exact:
        others = [k for k in range(len(counts)) if k != c]
        share = a / len(others)
        return max(upper_confidence_bound(int(counts[k]), n, share) for k in others)
    groups = _grouped(counts, c)
    if len(groups) <= 2:
        return 1.0 - lower_confidence_bound(int(counts[c]), n, a)
    from statsmodels.stats.proportion import multinomial_proportions_confint

    return float(multinomial_proportions_confint(groups, alpha=2 * a, method="goodman")[1:, 1]
                 .max())


def cascade_bounds(stages: int) -> int:
    """How many bounds a K-stage cascade can use: a lower bound per stage (on its own selected
    class), and at each stage j an off-class bound for each class a later stage may predict
    (one per later stage, since each later stage's class is fixed by its selection samples):
    ``K + K (K - 1) / 2``."""
    return stages + stages * (stages - 1) // 2


def stage_level(alpha: float, stage, stages: int, rule: str = "sound"):
    """The level of every bound used when the cascade stops at ``stage`` (an index, or an
    array of them): "faithful" ``alpha / (stage + 1)``, as Jeong & Shin's certify.py; "sound"
    ``alpha / cascade_bounds(stages)`` (a union over every bound any stopping stage can use)."""
    return alpha / (stage + 1) if rule == "faithful" else alpha / cascade_bounds(stages)


def cascade_one(stages: Sequence[tuple[int, np.ndarray, float]], alpha: float, threshold: float,
                rule: str = "sound", shares: Sequence[float] | None = None
                ) -> tuple[int, float, int, float]:
    """The cascade on one input.

    ``stages``: ``(cA, estimation counts, sigma)`` from the largest sigma to the smallest. A
    stage whose lower bound on ``p_cA`` reaches ``threshold`` (p0) predicts ``cA`` within
    ``sigma (Phi^-1(pA_low) - Phi^-1(p0))``, capped so that every earlier stage, which declined,
    keeps every other class below p0: ``-sigma_j (Phi^-1(pB_high_j) - Phi^-1(p0))``. A stage
    whose upper bound still reaches p0 is undecided: ABSTAIN. A stage below p0 declines: next.

    ``rule``: see :func:`stage_level`. ``shares`` (sequential mode) scale each stage's bounds by
    the share of alpha of the look where that stage's counts stopped. Returns ``(prediction,
    radius, stage, alpha of that stage)``.
    """
    big_k = len(stages)
    shares = shares or [1.0] * big_k
    for k, (c_a, counts, sigma) in enumerate(stages):
        a = stage_level(alpha, k, big_k, rule)
        n = int(counts.sum())
        low = lower_confidence_bound(int(counts[c_a]), n, a * shares[k])
        if low >= threshold:
            radius = sigma * (ndtri(low) - ndtri(threshold))
            for j, (_, earlier, sigma_j) in enumerate(stages[:k]):
                upper = off_class_upper(earlier, c_a, a * shares[j], exact=rule == "sound")
                radius = min(radius, -sigma_j * (ndtri(upper) - ndtri(threshold)))
            a_k = a * shares[k]
            return (int(c_a), float(radius), k, a_k) if radius >= 0 else (ABSTAIN, 0.0, k, a_k)
        if upper_confidence_bound(int(counts[c_a]), n, a * shares[k]) >= threshold:
            return ABSTAIN, 0.0, k, a * shares[k]
    return ABSTAIN, 0.0, big_k - 1, a * shares[-1]


def check_cascade_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                       radius: np.ndarray) -> None:
    """Cascade rows: the stage that decided holds possible counts, the prediction is its class
    or ABSTAIN, and the radius is at most what that stage certifies above the threshold (the
    earlier stages' caps need their counts, kept in the count store).

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    missing = [c for c in CASCADE_COUNT_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}: a cascade TSV needs {' '.join(CASCADE_COUNT_COLUMNS)}; "
                           f"missing {missing}")
    frame = df.rename(columns={"stage_n": "n", "stage_n0": "n0"})
    count_radii(frame, where, "stage_cA", "stage_nA", "stage_sigma", "stage_alpha",
                np.ones(len(df), bool))
    low = lower_bounds(df["stage_nA"].to_numpy(), df["stage_n"].to_numpy(),
                       df["stage_alpha"].to_numpy())
    p0 = df["threshold"].to_numpy()
    with np.errstate(all="ignore"):
        stage = df["stage_sigma"].to_numpy() * (ndtri(np.clip(low, p0, 1)) - ndtri(p0))
    certified = low >= p0
    bad = (predict != ABSTAIN) & (~certified | (predict != df["stage_cA"].to_numpy()))
    if bad.any():
        raise row_error(where, df, bad, "predict must be the deciding stage's cA, certified "
                        "above the threshold, or -1")
    bad = radius > np.where(certified, stage, 0.0) + RADIUS_TOLERANCE
    if bad.any():
        raise row_error(where, df, bad, "its radius exceeds what its deciding stage certifies")
