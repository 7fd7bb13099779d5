"""The count store: each model certified once per input, its counts kept, every method composed
from them.

A count file holds, per input, the class ``cA`` chosen on ``n0`` selection samples (and, at a
fixed ``n``, the selection votes ``select`` it was chosen by) and the class counts of ``n`` fresh
estimation samples (all classes, so that any bound at any alpha, or any
other test, can be recomputed), with the settings they depend on in its ``.json``: the model's
hashes and sigma, the noise stages, ``n0``, ``n``, the seed, the data as read and the mode. The
file name carries a fingerprint of those settings, so a changed protocol starts a new file and a
rerun with more inputs adds only the new ones (resumable, one writer at a time). The files are
read by :mod:`.counts`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._moved import getattr_for as _getattr_for
from ..certify.smoothing import sequential_counts
from ..data import data_identity
from ..protocol import Protocol
from ..results.runs import group_size, model_identity, run_rows
from .counts import COUNT_COLUMNS, count_path


def count_settings(model, stages: Sequence[str], protocol: Protocol, data: dict) -> dict:
    """What a model's counts depend on (alpha is not among them)."""
    return {"model": model_identity(model), "stages": list(stages), **protocol.counts_key(),
            "data": data, "mode": model.mode, "select_votes": protocol.sequential is None}


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
            select, counts = model.vote_batch(xs, n0, n, **kw)
            c_a, votes = select.argmax(dim=1), [",".join(map(str, v)) for v in select.tolist()]
            used, share, mode = [n] * len(chunk), [1.0] * len(chunk), model.mode
        else:  # stops each input once the grid is decided (opt-in, labelled in the mode)
            c_a, counts, used, share = sequential_counts(model, xs, n0, seq, protocol.alpha,
                                                         protocol.radii, **kw)
            used, share, mode = used.tolist(), share.tolist(), f"{model.mode}+seq"
            votes = [""] * len(chunk)  # the looks' counts are what a sequential file holds
        return [{"idx": i, "label": y, "cA": int(c), "nA": int(row[int(c)]), "n": int(m),
                 "n0": n0, "sigma": model.sigma, "share": float(s), "seed": protocol.seed,
                 "mode": mode, "counts": ",".join(map(str, row.tolist())), "select": v}
                for i, y, c, row, m, s, v in zip(chunk, labels, c_a, counts, used, share, votes)]

    return run_rows(rows, dataset, indices, path, COUNT_COLUMNS, settings,
                    group=group_size(protocol), progress=progress,
                    desc=f"counts {name}")


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
