"""Compositions over certification logs on the same inputs: the envelope (per radius, the best
log: a selection, not a classifier) and the per-input oracle (per input, the largest radius
among the logs right on it: a ceiling for routing, not a certificate).

They are built from per-input radii recomputed from counts: a family of pinned sources
(:mod:`.sources`), or any logs imported with ``rsrouter leaderboard import-tsv``, which keeps
each log's recomputed radii beside its entry (``per-input/``, pinned by sha256 in the entry);
``rsrouter leaderboard compose`` composes those. Torch-free.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import IntegrityError, ResultsError
from ..files import atomic_write_json
from ..protocol import RADII
from ..results.curves import average_certified_radius, certified_accuracy, interval95
from .entries import entry_filename, entry_key, max_radius, read_entry, step_curve
from .logs import PER_INPUT, PER_INPUT_COLUMNS, log_entry


@dataclass(frozen=True)
class Member:
    """One log of a composition: its name, per-input frame (``idx label predict radius
    correct``, radii recomputed from counts) and the protocol they were recomputed under."""

    name: str
    frame: pd.DataFrame
    protocol: dict


def envelope_entry(members: Sequence[Member], *, dataset: str, benchmark: str, spec: str,
                   radii: Sequence[float] = RADII) -> dict:
    """Per radius, the best log's certified accuracy: a selection made on the test inputs,
    not a classifier (no ACR, no per-input curve)."""
    frames = _same_inputs(members)
    acc = np.max([certified_accuracy(f, radii).to_numpy() for f in frames], axis=0)
    count = len(frames[0])
    low, high = interval95(np.rint(acc * count), count)
    entry = {**log_entry(frames[0], dataset=dataset, benchmark=benchmark,
                         method="envelope (not a classifier)", protocol=_protocol(members),
                         kind="not a classifier: the best log per radius on these inputs",
                         spec=spec, radii=radii),
             "type": "envelope", "accuracy": [round(float(a), 4) for a in acc],
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": None, "abstain": None, "chosen_on": "test", "chosen_on_test": True,
             "pool": [m.name for m in members]}
    entry.pop("curve")  # a selection per radius, not per-input radii: drawn at its grid
    entry["key"] = entry_key(entry)
    return entry


def oracle_entry(members: Sequence[Member], *, dataset: str, benchmark: str, spec: str,
                 radii: Sequence[float] = RADII) -> dict:
    """Per input, the largest recomputed radius among the logs that are right on it (the
    label is used): a ceiling for routing over these logs, not a certificate."""
    frames = _same_inputs(members)
    right = np.stack([(f["correct"] == 1).to_numpy() for f in frames])
    radius = np.stack([f["radius"].to_numpy(dtype=float) for f in frames])
    best = np.where(right, radius, -1.0).max(axis=0)
    first = frames[0]
    frame = pd.DataFrame({"idx": first["idx"], "label": first["label"],
                          "predict": np.where(best >= 0, first["label"], -1),
                          "radius": np.maximum(best, 0.0), "correct": (best >= 0).astype(int)})
    entry = {**log_entry(frame, dataset=dataset, benchmark=benchmark,
                         method="oracle (not a certificate)", protocol=_protocol(members),
                         kind="not a certificate: per-input ceiling over these logs",
                         spec=spec, radii=radii),
             "type": "oracle", "chosen_on": "test", "chosen_on_test": True,
             "abstain": None,  # the inputs no log gets right: not abstentions
             "pool": [m.name for m in members]}
    entry["key"] = entry_key(entry)
    return entry


def _same_inputs(members: Sequence[Member]) -> list[pd.DataFrame]:
    """The members' frames, in input order; refused unless they certify the same inputs."""
    if len(members) < 2:
        raise ResultsError("a composition needs at least two logs")
    frames = [m.frame.sort_values("idx").reset_index(drop=True) for m in members]
    first = frames[0]
    for m, f in zip(members[1:], frames[1:]):
        if len(f) != len(first) or not (f["idx"].to_numpy() == first["idx"].to_numpy()).all():
            raise ResultsError(
                f"{m.name} certifies other inputs than {members[0].name} ({len(f)} against "
                f"{len(first)} rows, or other indices): an envelope or oracle compares logs on "
                "the same inputs only")
        if not (f["label"].to_numpy() == first["label"].to_numpy()).all():
            raise ResultsError(f"{m.name} and {members[0].name} give other labels to the same "
                               "indices: not the same dataset")
    return frames


def _protocol(members: Sequence[Member]) -> dict:
    protocols = [m.protocol for m in members]
    sigmas = set()
    for p in protocols:
        sigma = p.get("sigma")
        sigmas |= {float(s) for s in (sigma if isinstance(sigma, list) else [sigma])
                   if s is not None}
    n0 = {p.get("n0") for p in protocols}
    return {"n0": n0.pop() if len(n0) == 1 else None, "n": max(p["n"] for p in protocols),
            "alpha": max(p["alpha"] for p in protocols), "sigma": sorted(sigmas)}


def read_member(entry_file: str | os.PathLike,
                entry: dict | None = None) -> tuple[dict, Member]:
    """An imported entry (``entry``: the file, already read and checked) and its per-input
    radii, checked against the sha256 it pins.

    Raises:
        ResultsError: an entry without per-input radii (not written by ``import-tsv``), or
            whose file leaves its folder.
        IntegrityError: the per-input file missing or not the bytes the entry pins.
    """
    entry_file = Path(entry_file)
    entry = read_entry(entry_file) if entry is None else entry
    per_input = entry.get("per_input")
    if not isinstance(per_input, dict) or not {"path", "sha256"} <= set(per_input):
        raise ResultsError(f"{entry_file}: no per-input radii (entries written by `rsrouter "
                           "leaderboard import-tsv` keep them); import the log again")
    folder = entry_file.parent.resolve()
    file = (folder / str(per_input["path"])).resolve()
    if not file.is_relative_to(folder / PER_INPUT):
        raise ResultsError(f"{entry_file}: per_input path {per_input['path']!r} leaves "
                           f"{folder / PER_INPUT}")
    if not file.is_file():
        raise IntegrityError(f"{entry_file}: its per-input radii {file} are missing")
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != per_input["sha256"]:
        raise IntegrityError(f"{file}: not the per-input radii {entry_file.name} pins (sha256 "
                             "differs): import the log again")
    frame = pd.read_csv(file, sep="\t")
    problem = _frame_problem(frame, entry)
    if problem:
        raise ResultsError(f"{file}: {problem}: not the per-input radii of {entry_file.name}; "
                           "import the log again")
    return entry, Member(entry["method"], frame, entry["protocol"])


def _frame_problem(frame: pd.DataFrame, entry: dict) -> str:
    """What makes ``frame`` not the per-input radii behind ``entry`` ('' if nothing): its
    columns, unique inputs, rows that contradict themselves (right without the label, radius
    without a prediction, beyond the protocol's largest radius), or numbers other than the
    entry's (count, grid accuracy, ACR, step curve)."""
    if list(frame.columns) != PER_INPUT_COLUMNS:
        return f"columns must be {' '.join(PER_INPUT_COLUMNS)}"
    if len(frame) != entry["inputs"]["count"] or frame["idx"].duplicated().any():
        return f"not {entry['inputs']['count']} distinct inputs"
    radius, predict = frame["radius"].to_numpy(dtype=float), frame["predict"].to_numpy()
    right = (predict == frame["label"].to_numpy()) & (predict != -1)
    top = max_radius(entry) * (1 + 1e-9) + 1e-9  # radii are written to 10 digits
    if not (frame["correct"].to_numpy() == right).all() or (radius < 0).any() \
            or (radius[predict == -1] != 0).any() or radius.max() > top:
        return "rows that no certificate gives (correct, abstentions or radii)"
    acc = certified_accuracy(frame, entry["radii"]).to_numpy()
    if np.abs(acc - entry["accuracy"]).max() > 1e-4:
        return "another certified accuracy"
    if entry.get("acr") is not None and round(average_certified_radius(frame), 3) != entry["acr"]:
        return "another ACR"
    curve = entry.get("curve")
    if curve is not None and step_curve(radius, right) != curve:
        return "another step curve"
    return ""


def compose(sources: Iterable[str | os.PathLike], out: str | os.PathLike | None = None, *,
            benchmark: str | None = None,
            radii: Sequence[float] = RADII) -> tuple[list[dict], Path]:
    """The envelope and the oracle over imported logs (entry files, or folders of them) on the
    same inputs, written to ``out`` (default: the first log's folder); returns them and the
    folder.

    Raises:
        ResultsError: fewer than two logs, logs of other datasets or inputs, or an entry
            without per-input radii.
        IntegrityError: as :func:`read_member`.
    """
    files: list[tuple[Path, dict | None]] = []
    for source in map(Path, sources):
        if source.is_dir():  # each entry read once; composed and other entries left out
            found = [(p, e) for p in sorted(source.glob("*.json"))
                     if isinstance((e := read_entry(p)).get("per_input"), dict)]
            if not found:
                raise ResultsError(f"{source}: no imported logs (entries with per-input radii, "
                                   "from `rsrouter leaderboard import-tsv`)")
            files += found
        elif source.is_file():
            files.append((source, None))
        else:
            raise ResultsError(f"{source} not found")
    read = [read_member(f, e) for f, e in files]
    entries, members = [e for e, _ in read], [m for _, m in read]
    datasets = {e["dataset"] for e in entries}
    if len(datasets) != 1:
        raise ResultsError(f"logs of several datasets ({', '.join(sorted(datasets))}): compose "
                           "the logs of one dataset")
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ResultsError(f"two logs named alike among {names}: one log is one entry")
    benchmark = benchmark or _common(e["benchmark"] for e in entries) or "composed"
    spec = _common(e["inputs"].get("spec") for e in entries) or "the same inputs"
    args = dict(dataset=datasets.pop(), benchmark=benchmark, spec=spec, radii=radii)
    composed = [envelope_entry(members, **args), oracle_entry(members, **args)]
    out = Path(out) if out is not None else files[0][0].parent
    for entry in composed:
        atomic_write_json(out / entry_filename(entry), entry)
    return composed, out


def _common(values: Iterable) -> str | None:
    values = set(values)
    return values.pop() if len(values) == 1 else None
