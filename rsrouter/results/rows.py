"""The rows of a certification TSV: Cohen's columns first, then each certificate kind's extras.

Every kind's extra columns, its row (``*_extras``) and its row check sit next to its maths:
an expert's here, a routed one's in :mod:`rsrouter.certify.routed`, a set certificate's in
:mod:`rsrouter.certify.set_certificate`, a lazy one's in :mod:`rsrouter.certify.lazy_set`, a
router tree's in :mod:`rsrouter.certify.tree`, a cascade's in :mod:`rsrouter.certify.cascade`.
:func:`check_rows` checks Cohen's columns and hands a frame to its kind's check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..certify.bounds import ABSTAIN, Certificate
from ..certify.cascade import check_cascade_rows
from ..certify.checks import RADIUS_TOLERANCE, check_prediction, count_radii, row_error
from ..certify.fallback import check_fallback_rows
from ..certify.lazy_set import check_lazy_set_rows
from ..certify.routed import ROUTED_COUNT_COLUMNS, check_routed_rows
from ..certify.set_certificate import check_set_rows
from ..certify.tree import check_tree_rows
from ..errors import ResultsError

COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
EXPERT_EXTRAS = ("cA", "nA", "n", "n0", "sigma", "alpha", "seed", "mode")
# the columns a TSV with counts holds, whatever its certificate
COUNT_COLUMNS = ("cA", "nA", "n", "n0", "sigma", "alpha")


def cohen_row(idx: int, label: int, prediction: int, radius: float) -> dict:
    """Cohen's columns of one input but ``time``: ``correct`` is 1 exactly when the prediction
    is not ABSTAIN and is the label."""
    return {"idx": int(idx), "label": int(label), "predict": prediction, "radius": radius,
            "correct": int(prediction != ABSTAIN and prediction == label)}


def certificate_extras(cert: Certificate) -> dict:
    """The TSV extras of a single-expert certificate (:data:`EXPERT_EXTRAS`): its counts and
    settings."""
    return {"cA": cert.cA, "nA": cert.nA, "n": cert.n, "n0": cert.n0, "sigma": cert.sigma,
            "alpha": cert.alpha, "seed": cert.seed, "mode": cert.mode}


def check_expert_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                      radius: np.ndarray) -> None:
    """An expert's rows: possible counts, and the radius and prediction they give."""
    expected = count_radii(df, where, "cA", "nA", "sigma", "alpha", np.ones(len(df), bool))
    bad = np.abs(expected - radius) > RADIUS_TOLERANCE
    if bad.any():
        raise row_error(where, df, bad, "its radius does not follow from its counts "
                        f"(stored {radius[bad][0]}, counts give {expected[bad][0]:.6f})")
    check_prediction(df, where, predict, expected, "cA")


def check_rows(df: pd.DataFrame, where: str) -> None:
    """Check a certification frame: Cohen's columns hold integers and numbers, no ``idx``
    twice, ``correct`` and ``radius`` agree with ``predict``, and, where counts are stored,
    each row's kind check (see the module docstring).

    Raises:
        ResultsError: naming ``where``, the first row that fails and what is wrong.
        CountsError: impossible counts (the row is named).
    """
    if df.empty:
        return
    for column in ("idx", "label", "predict", "correct"):
        if not pd.api.types.is_integer_dtype(df[column]):
            raise ResultsError(f"{where}: column {column} must hold integers")
    if not pd.api.types.is_numeric_dtype(df["radius"]):
        raise ResultsError(f"{where}: column radius must hold numbers")
    dup = df["idx"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise row_error(where, df, dup, "this idx is listed more than once")
    predict, label, radius = (df[c].to_numpy() for c in ("predict", "label", "radius"))
    correct = df["correct"].to_numpy()
    bad = correct != ((predict != ABSTAIN) & (predict == label)).astype(int)
    if bad.any():
        raise row_error(where, df, bad, "correct must be 1 exactly when predict equals label")
    bad = ~np.isfinite(radius) | (radius < 0) | ((predict == ABSTAIN) & (radius != 0))
    if bad.any():
        raise row_error(where, df, bad, "radius must be >= 0, and 0 when abstaining")
    if "stage_nA" in df.columns:
        return check_cascade_rows(df, where, predict, radius)
    if "class_counts" in df.columns:
        return check_fallback_rows(df, where, predict, radius)
    if "counted" in df.columns:
        return check_lazy_set_rows(df, where, predict, radius)
    if "expert_nA" in df.columns:
        return check_set_rows(df, where, predict, radius)
    if "root_groups" in df.columns:
        return check_tree_rows(df, where, predict, radius)
    present = [c for c in COUNT_COLUMNS if c in df.columns]
    if not present:
        return  # a log without counts (Cohen et al.'s format): nothing more to check
    if len(present) < len(COUNT_COLUMNS):
        raise ResultsError(f"{where}: has count column(s) {present} but not "
                           f"{sorted(set(COUNT_COLUMNS) - set(present))}; a TSV holds all of "
                           f"{' '.join(COUNT_COLUMNS)} or none")
    routed_columns = [c for c in ROUTED_COUNT_COLUMNS if c in df.columns]
    if routed_columns and len(routed_columns) < len(ROUTED_COUNT_COLUMNS):
        raise ResultsError(f"{where}: a routed TSV needs all of {' '.join(ROUTED_COUNT_COLUMNS)}"
                           f", this one has only {routed_columns}")
    if routed_columns:
        check_routed_rows(df, where, predict, radius)
    else:
        check_expert_rows(df, where, predict, radius)
