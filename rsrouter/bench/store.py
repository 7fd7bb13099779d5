"""The count store: each model certified once per input, its counts kept, every method composed
from them.

A count file holds, per input, the class ``cA`` chosen on ``n0`` selection samples and the class
counts of ``n`` fresh estimation samples (all classes, so that any bound at any alpha, or any
other test, can be recomputed), with the settings they depend on in its ``.json``: the model's
hashes and sigma, the noise stages, ``n0``, ``n``, the seed, the data as read and the mode. The
file name carries a fingerprint of those settings, so a changed protocol starts a new file and a
rerun with more inputs adds only the new ones (resumable, one writer at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..certify.bounds import check_counts
from ..certify.smoothing import sequential_counts
from ..data import data_identity
from ..errors import CountsError, ResultsError
from ..results.runs import group_size, model_identity, run_rows
from .config import Protocol

COUNT_COLUMNS = ("idx", "label", "cA", "nA", "n", "n0", "sigma", "share", "seed", "mode",
                 "counts", "time")


def count_settings(model, stages: Sequence[str], protocol: Protocol, data: dict) -> dict:
    """What a model's counts depend on (alpha is not among them)."""
    return {"model": model_identity(model), "stages": list(stages), **protocol.counts_key(),
            "data": data, "mode": model.mode}


def count_path(root: str | os.PathLike, name: str, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    return Path(root) / "counts" / f"{safe}-{digest}.tsv"


def ensure_counts(model, name: str, dataset, indices: Sequence[int], root: str | os.PathLike,
                  protocol: Protocol, *, stages: Sequence[str] = ("select", "estimate"),
                  progress: bool = True) -> Path:
    """Certify ``model`` on every input of ``indices`` not yet in its count file; returns the
    file. One pass of ``n0 + n`` noisy forwards per new input."""
    settings = count_settings(model, stages, protocol, data_identity(dataset))
    path = count_path(root, name, settings)
    n0, n = protocol.n0, protocol.n

    seq = protocol.sequential

    def rows(xs, chunk, labels):
        kw = dict(batch_size=protocol.batch_size, seed=protocol.seed, indices=chunk,
                  stages=tuple(stages))
        if seq is None:
            c_a, counts = model.count_batch(xs, n0, n, **kw)
            used, share, mode = [n] * len(chunk), [1.0] * len(chunk), model.mode
        else:  # stops each input once the grid is decided (opt-in, labelled in the mode)
            c_a, counts, used, share = sequential_counts(model, xs, n0, seq, protocol.alpha,
                                                         protocol.radii, **kw)
            used, share, mode = used.tolist(), share.tolist(), f"{model.mode}+seq"
        return [{"idx": i, "label": y, "cA": int(c), "nA": int(row[int(c)]), "n": int(m),
                 "n0": n0, "sigma": model.sigma, "share": float(s), "seed": protocol.seed,
                 "mode": mode, "counts": ",".join(map(str, row.tolist()))}
                for i, y, c, row, m, s in zip(chunk, labels, c_a, counts, used, share)]

    return run_rows(rows, dataset, indices, path, COUNT_COLUMNS, settings,
                    group=group_size(n0, n, protocol.batch_size), progress=progress,
                    desc=f"counts {name}")


def read_counts(path: str | os.PathLike, indices: Sequence[int] | None = None) -> pd.DataFrame:
    """A count file, checked row by row, indexed by ``idx`` (restricted to ``indices``).

    The ``counts`` column becomes an int array per row. Raises CountsError / ResultsError naming
    the row for impossible or inconsistent counts.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ResultsError(f"{path}: not a count file ({e})") from None
    if list(df.columns) != list(COUNT_COLUMNS):
        raise ResultsError(f"{path}: not a count file (columns {list(df.columns)})")
    if df["idx"].duplicated().any():
        raise ResultsError(f"{path}: an idx is listed more than once")
    counts = [np.array([int(v) for v in str(s).split(",")], dtype=np.int64) for s in df["counts"]]
    for row, vector in zip(df.itertuples(index=False), counts):
        try:
            check_counts(int(row.cA), int(row.nA), int(row.n), int(row.n0), float(row.sigma),
                         0.5 * float(row.share))
            if not 0 < float(row.share) <= 1:
                raise CountsError(f"share={row.share} (the share of alpha of its look, in (0, 1])")
            if not (row.cA < len(vector) and vector[row.cA] == row.nA and vector.sum() == row.n
                    and (vector >= 0).all()):
                raise CountsError(f"cA={row.cA}, nA={row.nA} and n={row.n} disagree with the "
                                  f"class counts {vector.tolist()}")
        except CountsError as e:
            raise CountsError(f"{path}: idx {row.idx}: {e}") from None
    df["counts"] = counts
    df = df.set_index("idx", drop=False)
    if indices is not None:
        missing = sorted(set(indices) - set(df.index))
        if missing:
            raise ResultsError(f"{path}: no counts for inputs {missing[:5]}; rerun `bench run`")
        df = df.loc[list(indices)]
    return df
