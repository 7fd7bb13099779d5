"""Leaderboard entries for published certification logs (Cohen et al.'s TSV format), every
radius recomputed from counts: the log's own, or recovered under the protocol its source states.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..certify.bounds import radii_from_counts
from ..errors import ResultsError
from ..files import atomic_write_json
from ..protocol import RADII
from ..results.curves import average_certified_radius, certified_accuracy, interval95
from ..results.logs import N_COLUMNS, SIGMA_COLUMNS, column_values, counts_from_radii, has_counts
from ..results.tsv import read_tsv
from ..urls import scrub_text
from .entries import MAX_SIGMA, SCHEMA, entry_filename, entry_key


def import_tsv(log: str | os.PathLike, *, dataset: str, method: str, out: str | os.PathLike,
               benchmark: str | None = None, source: str = "", n: int | None = None,
               n0: int | None = None, alpha: float | None = None, sigma: float | None = None,
               radii: Sequence[float] = RADII) -> Path:
    """An entry, marked external, for a certification log in Cohen et al.'s format (``idx
    label predict radius correct time``), every radius recomputed from counts: the log's own
    (an rsrouter TSV: checked by :func:`rsrouter.results.tsv.read_tsv`) or, for a published log
    without counts, recovered under the declared protocol (``n``, ``alpha``, ``sigma``): the
    smallest ``nA`` whose radius prints as the logged one
    (:func:`rsrouter.results.logs.counts_from_radii`). Returns the entry file.

    Raises:
        ResultsError: a log that is not a certification TSV, a protocol missing or at odds with
            the log's counts, or a logged radius that no count can produce (the row named).
    """
    log = Path(log)
    df = read_tsv(log)
    if sigma is not None and not 0 < sigma <= MAX_SIGMA:
        raise ResultsError(f"--sigma {sigma}: a noise level in pixel units (inputs in [0, 1]) is "
                           f"in (0, {MAX_SIGMA:g}]")
    if has_counts(df):
        protocol = _stored_protocol(df, log, n=n, n0=n0, alpha=alpha, sigma=sigma)
        counts = "stored in the log, each radius checked against them"
    else:
        missing = [flag for flag, v in (("--n", n), ("--alpha", alpha), ("--sigma", sigma))
                   if v is None]
        if missing:
            raise ResultsError(f"{log} has no counts: give the protocol it was certified with "
                               f"({', '.join(missing)}), so that each radius is recomputed from "
                               "the counts it implies")
        logged = pd.read_csv(log, sep="\t", dtype={"radius": str})["radius"].tolist()
        predict = df["predict"].to_numpy()
        n_a = counts_from_radii(logged, predict, n, alpha, sigma, str(log))
        df = df.assign(radius=np.where(predict == -1, 0.0,
                                       radii_from_counts(n_a, n, alpha, sigma)))
        protocol = {"n0": n0, "n": n, "alpha": alpha, "sigma": sigma}
        counts = ("recovered from published radii (the smallest nA whose radius, printed as "
                  "the log prints it, is the logged one)")
    acc = certified_accuracy(df, radii).to_numpy()
    low, high = interval95(np.rint(acc * len(df)), len(df))
    benchmark = benchmark or f"{dataset}-external"
    body = hashlib.sha256(log.read_bytes()).hexdigest()
    source = scrub_text(source)
    entry = {"schema": SCHEMA, "key": "", "benchmark": benchmark, "dataset": dataset,
             "split": "test",
             "inputs": {"spec": "as published", "count": len(df)}, "protocol": protocol,
             "method": method, "type": "external", "kind": f"external: counts {counts}",
             "radii": list(radii), "accuracy": [round(float(a), 4) for a in acc],
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": round(average_certified_radius(df), 3),
             "abstain": round(100 * float(np.mean(df["predict"] == -1)), 1),
             "max_regret": None, "forwards_per_input": None, "seconds_per_input": None,
             "experts": [], "router": None,
             "chosen_on": "unknown", "chosen_on_test": False, "external": True,
             "counts_available": has_counts(df), "counts": counts, "radii_recomputed": True,
             "source": source, "log_sha256": body,
             "note": f"imported from {log.name}" + (f" ({source})" if source else ""),
             "rsrouter_version": __version__, "date": date.today().isoformat()}
    entry["key"] = entry_key(entry)
    path = Path(out) / entry_filename(entry)
    atomic_write_json(path, entry)
    return path


def _stored_protocol(df: pd.DataFrame, log: Path, **declared) -> dict:
    """The protocol a log's own counts were made with (its largest ``n``, its noise levels);
    a declared value must agree.

    Raises:
        ResultsError: a declared value at odds with the counts, or a noise level beyond
            :data:`MAX_SIGMA`.
    """
    n0 = column_values(df, ("n0", "stage_n0"))
    alphas = column_values(df, ("alpha",))
    sigmas = [s for s in column_values(df, SIGMA_COLUMNS) if s > 0]
    stored = {"n0": int(n0[0]) if len(n0) == 1 else None,
              "n": int(max(column_values(df, N_COLUMNS), default=0)) or None,
              "alpha": alphas[0] if len(alphas) == 1 else None,
              "sigma": sigmas[0] if len(sigmas) == 1 else sigmas or None}
    if sigmas and max(sigmas) > MAX_SIGMA:
        raise ResultsError(f"{log}: its counts were made at sigma {max(sigmas):g}; a noise level "
                           f"in pixel units (inputs in [0, 1]) is at most {MAX_SIGMA:g}")
    for key, value in declared.items():
        if value is not None and stored[key] is not None and not np.allclose(
                np.atleast_1d(value), np.atleast_1d(stored[key])):
            raise ResultsError(f"{log}: --{key} {value} but its counts were made with "
                               f"{key} = {stored[key]}; drop --{key} (the counts say it)")
    return stored
