"""Count files (:mod:`.store` writes them): their columns, their names, and reading them back,
checked row by row. Torch-free: a report reads counts without loading a model."""

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
from ..errors import CountsError, ResultsError

COUNT_COLUMNS = ("idx", "label", "cA", "nA", "n", "n0", "sigma", "share", "seed", "mode",
                 "counts", "select", "time")
# rsrouter 0.2's count files: no selection votes (every method but the lazy set certificate)
COUNT_COLUMNS_02 = tuple(c for c in COUNT_COLUMNS if c != "select")


def count_path(root: str | os.PathLike, name: str, settings: dict) -> Path:
    """``ROOT/counts/NAME-FINGERPRINT.tsv``: the fingerprint of the settings the counts depend
    on, so that a changed protocol starts a new file. Where no file of that name exists, a
    count file of the same settings under another name (copied from another folder, or named
    after another method) is that model's if the model is pinned (its weights hash in the
    settings): its path is returned, so no pass is repeated."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    path = Path(root) / "counts" / f"{safe}-{digest}.tsv"
    model = settings.get("model") or {}
    if path.is_file() or not path.parent.is_dir() or not model.get("weights_sha256"):
        return path  # an unpinned model's counts are found by its own name only
    for other in sorted(path.parent.glob(f"*-{digest}.tsv")):
        try:
            same = json.loads(Path(f"{other}.json").read_text()) == settings
        except (OSError, ValueError):
            same = False
        if same:
            return other
    return path


def read_counts(path: str | os.PathLike, indices: Sequence[int] | None = None) -> pd.DataFrame:
    """A count file, checked row by row, indexed by ``idx`` (restricted to ``indices``).

    The ``counts`` column becomes an int array per row, and so does ``select`` (the selection
    votes; None where the file has none: rsrouter 0.2's files, sequential looks). Raises
    CountsError / ResultsError naming the row for impossible or inconsistent counts.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ResultsError(f"{path}: not a count file ({e})") from None
    if list(df.columns) not in (list(COUNT_COLUMNS), list(COUNT_COLUMNS_02)):
        raise ResultsError(f"{path}: not a count file (columns {list(df.columns)})")
    if "select" not in df.columns:
        df.insert(len(COUNT_COLUMNS) - 2, "select", None)
    if df["idx"].duplicated().any():
        raise ResultsError(f"{path}: an idx is listed more than once")
    counts = [np.array([int(v) for v in str(s).split(",")], dtype=np.int64) for s in df["counts"]]
    votes = [None if not isinstance(s, str) or not s else
             np.array([int(v) for v in s.split(",")], dtype=np.int64) for s in df["select"]]
    for row, vector, select in zip(df.itertuples(index=False), counts, votes):
        try:
            check_counts(int(row.cA), int(row.nA), int(row.n), int(row.n0), float(row.sigma),
                         0.5 * float(row.share))
            if not 0 < float(row.share) <= 1:
                raise CountsError(f"share={row.share} (the share of alpha of its look, in (0, 1])")
            if not (row.cA < len(vector) and vector[row.cA] == row.nA and vector.sum() == row.n
                    and (vector >= 0).all()):
                raise CountsError(f"cA={row.cA}, nA={row.nA} and n={row.n} disagree with the "
                                  f"class counts {vector.tolist()}")
            if select is not None and not (len(select) == len(vector) and (select >= 0).all()
                                           and select.sum() == row.n0
                                           and int(np.argmax(select)) == row.cA):
                raise CountsError(f"the selection votes {select.tolist()} do not sum to "
                                  f"n0={row.n0} with cA={row.cA} on top")
        except CountsError as e:
            raise CountsError(f"{path}: idx {row.idx}: {e}") from None
    df["counts"], df["select"] = counts, votes
    df = df.set_index("idx", drop=False)
    if indices is not None:
        missing = sorted(set(indices) - set(df.index))
        if missing:
            raise ResultsError(f"{path}: no counts for inputs {missing[:5]}; rerun `bench run`")
        df = df.loc[list(indices)]
    return df
