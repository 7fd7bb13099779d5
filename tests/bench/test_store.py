"""The count store: selection votes in every count file, and a count file of rsrouter 0.2
(without them) given its votes in place by a selection-only pass that must agree with it."""

from __future__ import annotations

import pytest

from rsrouter.bench.counts import read_counts
from rsrouter.bench.store import ensure_counts
from rsrouter.data import load_dataset
from rsrouter.errors import CountsError
from rsrouter.protocol import Protocol
from rsrouter.registry.core import Registry

PROTOCOL = Protocol(n0=20, n=200, alpha=0.01, seed=3, batch_size=1000)


def _strip_votes(path) -> str:
    """Rewrite ``path`` as rsrouter 0.2 wrote it (no ``select`` column); returns the votes."""
    lines = path.read_text().splitlines()
    at = lines[0].split("\t").index("select")
    votes = [line.split("\t")[at] for line in lines[1:]]
    path.write_text("\n".join("\t".join(c for i, c in enumerate(line.split("\t")) if i != at)
                              for line in lines) + "\n")
    return "\n".join(votes)


def test_old_count_files_get_their_selection_votes(digits_expert, tmp_path):
    expert = Registry().load(digits_expert)
    data = load_dataset("digits", "test")
    indices = list(range(0, 60, 6))
    path = ensure_counts(expert, "e", data, indices, tmp_path, PROTOCOL, progress=False)
    frame = read_counts(path, indices)
    assert all(v.sum() == 20 and v.argmax() == c for v, c in zip(frame["select"], frame["cA"]))
    before = path.read_text()
    votes = _strip_votes(path)
    assert read_counts(path)["select"].isna().all()  # 0.2's files still read
    with open(path, "a") as f:
        f.write("54\t3\t3\t19")  # a torn last line (a crash mid-write): dropped, recounted
    assert ensure_counts(expert, "e", data, indices, tmp_path, PROTOCOL, progress=False) == path
    assert path.read_text() == before and votes  # the same votes and rows
    # votes that do not give the stored cA: not this model's file
    _strip_votes(path)
    lines = path.read_text().splitlines()
    cells = lines[1].split("\t")
    cells[2] = str((int(cells[2]) + 1) % 10)
    lines[1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CountsError, match="do not give the stored cA"):
        ensure_counts(expert, "e", data, indices, tmp_path, PROTOCOL, progress=False)


def test_selection_votes_are_checked_on_reading(digits_expert, tmp_path):
    expert = Registry().load(digits_expert)
    path = ensure_counts(expert, "e", load_dataset("digits", "test"), [0, 5], tmp_path, PROTOCOL,
                         progress=False)
    lines = path.read_text().splitlines()
    at = lines[0].split("\t").index("select")
    cells = lines[1].split("\t")
    votes = [int(v) for v in cells[at].split(",")]
    votes[int(cells[2])] -= 1  # no longer sums to n0
    cells[at] = ",".join(map(str, votes))
    lines[1] = "\t".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CountsError, match="selection votes"):
        read_counts(path)
