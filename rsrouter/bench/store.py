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

import numpy as np
import torch

from .._moved import getattr_for as _getattr_for
from ..certify.smoothing import sequential_counts
from ..data import data_identity
from ..distributed import current, parts_of
from ..errors import CountsError, ResumeError
from ..files import FileLock, atomic_write_text
from ..protocol import Protocol
from ..results.runs import group_size, model_identity, run_rows
from ..results.tsv import own_lines
from .counts import COUNT_COLUMNS, COUNT_COLUMNS_02, count_path


def count_settings(model, stages: Sequence[str], protocol: Protocol, data: dict) -> dict:
    """What a model's counts depend on (alpha is not among them)."""
    return {"model": model_identity(model), "stages": list(stages), **protocol.counts_key(),
            "data": data, "mode": model.mode}


def ensure_counts(model, name: str, dataset, indices: Sequence[int], root: str | os.PathLike,
                  protocol: Protocol, *, stages: Sequence[str] = ("select", "estimate"),
                  progress: bool = True) -> Path:
    """Certify ``model`` on every input of ``indices`` not yet in its count file; returns the
    file. One pass of ``n0 + n`` noisy forwards per new input."""
    settings = count_settings(model, stages, protocol, data_identity(dataset))
    path = count_path(root, name, settings)
    n0, n = protocol.n0, protocol.n
    add_select_votes(model, path, dataset, protocol, stages=stages)

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


def add_select_votes(model, path: Path, dataset, protocol: Protocol, *,
                     stages: Sequence[str] = ("select", "estimate")) -> bool:
    """Give a count file of rsrouter 0.2 (no ``select`` column) its selection votes, in place:
    one pass of the ``n0`` selection draws per input (1% of its counts' cost at ``n0 = 100``,
    ``n = 10,000``; none in sequential mode, whose files keep no votes). Each input's votes
    must give its stored ``cA``. The file is read and rewritten (atomically) under its lock,
    complete lines only (a torn last line is dropped, as a resume drops it), by the main rank
    (the others wait). Returns whether it was rewritten.

    Raises:
        CountsError: votes that do not give the stored ``cA``.
        ResumeError: part files of a sharded run of rsrouter 0.2 (delete them to recount).
    """
    dist = current()
    changed = False
    if dist.is_main and _header(path) == list(COUNT_COLUMNS_02):  # read whole only if old
        with FileLock(f"{os.path.realpath(path)}.lock", str(path)):
            changed = _add_votes(model, path, dataset, protocol, stages[0])
    dist.barrier()
    return changed


def _header(path: Path) -> list[str]:
    """The columns of a count file's first line (none for a missing or empty file)."""
    if not path.is_file():
        return []
    with open(path) as f:
        return f.readline().rstrip("\n").split("\t")


def _add_votes(model, path: Path, dataset, protocol: Protocol, stage: str) -> bool:
    _, lines = own_lines(path)
    head = lines[0].split("\t") if lines else []
    if head != list(COUNT_COLUMNS_02):
        return False
    if parts_of(path):
        raise ResumeError(f"{path} has part files of an unfinished sharded run of rsrouter "
                          "0.2; delete them (and rerun) to count those inputs again")
    rows = [line.split("\t") for line in lines[1:] if line]
    at, c_a, votes = head.index("time"), head.index("cA"), {}
    if protocol.sequential is None:
        idx = [int(r[0]) for r in rows]
        for start in range(0, len(idx), group_size(protocol)):
            chunk = idx[start:start + group_size(protocol)]
            xs = torch.stack([dataset[i][0] for i in chunk])
            counts = model.sample_counts(xs, protocol.n0, batch_size=protocol.batch_size,
                                         seed=protocol.seed, indices=chunk, stage=stage)
            votes.update(zip(chunk, counts.tolist()))
    for r in rows:
        v = votes.get(int(r[0]))
        if v is not None and int(np.argmax(v)) != int(r[c_a]):
            raise CountsError(f"{path}: idx {r[0]}: the selection votes {v} do not give the "
                              f"stored cA {r[c_a]}: the file is not this model's counts (or "
                              "they were made in a mode that is not floating-point exact)")
        r.insert(at, "" if v is None else ",".join(map(str, v)))
    head.insert(at, "select")
    atomic_write_text(path, "\n".join("\t".join(r) for r in [head, *rows]) + "\n")
    return True


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
