"""Leaderboard entries for published certification logs (Cohen et al.'s TSV format), every
radius recomputed from counts: the log's own, or recovered under the protocol its source states.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..certify.bounds import radii_from_counts
from ..errors import ProtocolMismatch, ResultsError
from ..files import atomic_write_json, atomic_write_text
from ..protocol import RADII
from ..results.curves import average_certified_radius, certified_accuracy, interval95
from ..results.logs import (
    N_COLUMNS,
    SIGMA_COLUMNS,
    column_values,
    counts_from_radii,
    half_unit,
    has_counts,
    protocol_hint,
)
from ..results.tsv import read_tsv
from ..urls import scrub_text
from .entries import MAX_SIGMA, SCHEMA, entry_filename, entry_key, step_curve

PER_INPUT = "per-input"  # the folder beside an imported entry that keeps its recomputed radii
PER_INPUT_COLUMNS = ["idx", "label", "predict", "radius", "correct"]

# the evaluation sets published logs certify: (images, classes). ImageNet's is the ILSVRC2012
# validation set, which the field uses as its test set.
LOG_DATASETS = {"cifar10": (10_000, 10), "imagenet": (50_000, 1000), "mnist": (10_000, 10),
                "fashion-mnist": (10_000, 10), "digits": (500, 10)}


@dataclass(frozen=True)
class Inputs:
    """Which test images a log certifies: every ``every``-th from ``start``; ``spec`` as
    declared (``every-20``, ``every-20-from-10``, ``all``)."""

    spec: str
    every: int = 1
    start: int = 0

    def selected(self, size: int) -> int:
        """How many of ``size`` images the selection holds."""
        return len(range(self.start, size, self.every))

    def describe(self, size: int, count: int | None = None) -> str:
        """The selection in words; ``count``: the rows the log holds, said where fewer."""
        whole = self.selected(size)
        some = "" if count is None or count >= whole else f"{count} of "
        if self.every == 1:
            return f"{count} of the {size} images" if some else "every image"
        return f"{some}every {self.every}th of the {size} images from index {self.start}"


def parse_inputs(spec: str) -> Inputs:
    """``--inputs``: ``all``, ``every-K`` or ``every-K-from-S``.

    Raises:
        ResultsError: naming the forms allowed.
    """
    m = re.fullmatch(r"every-(\d+)(?:-from-(\d+))?", spec.strip())
    if spec.strip() == "all":
        return Inputs("all")
    if not m or int(m.group(1)) < 1 or int(m.group(2) or 0) >= int(m.group(1)):
        raise ResultsError(f"--inputs {spec!r}: give all, every-K (every K-th test image from "
                           "index 0, as Cohen et al.'s every 20th CIFAR-10 and every 100th "
                           "ImageNet image) or every-K-from-S (S < K)")
    return Inputs(spec.strip(), int(m.group(1)), int(m.group(2) or 0))


def check_declared(df: pd.DataFrame, log: Path, dataset: str, inputs: Inputs | None) -> None:
    """What the user declares must fit the log: a known dataset, indices inside its evaluation
    set and on the declared selection, labels and predictions among its classes.

    Raises:
        ResultsError: naming the declaration, the first row at odds with it, and the fix.
    """
    if dataset not in LOG_DATASETS:
        raise ResultsError(f"--dataset {dataset!r}: published logs are taken on one of "
                           f"{', '.join(LOG_DATASETS)}")
    size, classes = LOG_DATASETS[dataset]
    idx, label, predict = (df[c].to_numpy() for c in ("idx", "label", "predict"))
    for bad, what in [((idx < 0) | (idx >= size), f"idx outside the {size} images of "
                       f"{dataset}'s evaluation set: is --dataset right?"),
                      ((label < 0) | (label >= classes), f"a label outside {dataset}'s "
                       f"{classes} classes: is --dataset right?"),
                      ((predict < -1) | (predict >= classes), f"a prediction outside "
                       f"{dataset}'s {classes} classes (or -1, abstain)")]:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ResultsError(f"{log}: row {i + 1} (idx {idx[i]}, label {label[i]}, predict "
                               f"{predict[i]}): {what}")
    if inputs is not None:
        off = (idx % inputs.every) != inputs.start
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise ResultsError(f"{log}: row {i + 1} has idx {idx[i]}, not on --inputs "
                               f"{inputs.spec} ({inputs.describe(size)}): check the selection")


def check_sigma_cap(logged: Sequence[str], predict: np.ndarray, log: Path, n: int, alpha: float,
                    sigma: float) -> None:
    """No logged radius may exceed the largest one ``n`` samples can certify at ``sigma`` (all
    ``n`` votes for the class): ``sigma Phi^-1(alpha^(1/n))``, up to the log's rounding.

    Raises:
        ProtocolMismatch: naming the row, the cap and the noise level the radius would need.
    """
    values = np.array([float(t) for t in logged])
    cap = float(radii_from_counts(np.array([n]), n, alpha, sigma)[0])
    slack = np.array([half_unit(str(t)) for t in logged])
    over = values > cap + slack + 1e-12
    if over.any():
        i = int(np.flatnonzero(over)[0])
        need = values[i] / (cap / sigma)
        raise ProtocolMismatch(f"{log}: row {i + 1}: radius {str(logged[i]).strip()} is beyond the "
                           f"largest radius n = {n} samples can certify at sigma {sigma:g} "
                           f"({cap:.3f}, every vote for the class at alpha {alpha:g}); it needs "
                           f"sigma >= {need:.3g}; {int(over.sum())} row(s) affected; "
                           f"{protocol_hint(logged, predict, n, alpha, sigma)}")


def _already_imported(out: Path, body: str, method: str, benchmark: str) -> None:
    """Refuse a log (by its sha256) that ``out`` already holds under another name."""
    for path in sorted(out.glob("*.json")) if out.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if entry.get("log_sha256") == body and (entry.get("method"), entry.get(
                "benchmark")) != (method, benchmark):
            raise ResultsError(f"this log (sha256 {body[:12]}...) is already imported as "
                               f"{entry.get('benchmark')}/{entry.get('method')} in {path}: one "
                               "log is one entry (import it again under that name to update "
                               "it)")


@dataclass(frozen=True)
class Recomputed:
    """A log with every radius recomputed from counts (``frame``), the protocol they were
    recovered under, how the counts were obtained, its declared selection and its sha256."""

    frame: pd.DataFrame
    protocol: dict
    counts: str
    selection: Inputs | None
    sha256: str


def recompute_log(log: str | os.PathLike, dataset: str, *, n: int | None = None,
                  n0: int | None = None, alpha: float | None = None, sigma: float | None = None,
                  inputs: str | None = None) -> Recomputed:
    """A certification log read, checked against what is declared (:func:`check_declared`,
    :func:`check_sigma_cap`) and recomputed from counts: its own (an rsrouter TSV) or, without
    counts, recovered under the declared protocol (the smallest ``nA`` whose radius prints as
    the logged one, :func:`rsrouter.results.logs.counts_from_radii`).

    Raises:
        ResultsError: a log that is not a certification TSV, a declaration at odds with it, a
            protocol missing or at odds with its counts, or a logged radius that no count can
            produce (the row named).
    """
    log = Path(log)
    df = read_tsv(log)
    if df.empty:
        raise ResultsError(f"{log}: the log has no rows: nothing to put on a leaderboard")
    selection = None if inputs is None else parse_inputs(inputs)
    check_declared(df, log, dataset, selection)
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
        check_sigma_cap(logged, predict, log, n, alpha, sigma)
        n_a = counts_from_radii(logged, predict, n, alpha, sigma, str(log))
        df = df.assign(radius=np.where(predict == -1, 0.0,
                                       radii_from_counts(n_a, n, alpha, sigma)))
        protocol = {"n0": n0, "n": n, "alpha": alpha, "sigma": sigma}
        counts = ("recovered from published radii (the smallest nA whose radius, printed as "
                  "the log prints it, is the logged one)")
    return Recomputed(df, protocol, counts, selection,
                      hashlib.sha256(log.read_bytes()).hexdigest())


def log_entry(frame: pd.DataFrame, *, dataset: str, benchmark: str, method: str,
              protocol: dict, kind: str, spec: str, radii: Sequence[float] = RADII,
              **fields) -> dict:
    """A leaderboard entry, marked external, for per-input radii recomputed from a log (or
    composed from several: ``kind`` says what it is); ``fields`` add to or override its
    metadata (source, paper, log_sha256, note, ...)."""
    acc = certified_accuracy(frame, radii).to_numpy()
    low, high = interval95(np.rint(acc * len(frame)), len(frame))
    entry = {"schema": SCHEMA, "key": "", "benchmark": benchmark, "dataset": dataset,
             "split": "test", "inputs": {"spec": spec, "count": len(frame)},
             "protocol": protocol, "method": method, "type": "external", "kind": kind,
             "radii": list(radii), "accuracy": [round(float(a), 4) for a in acc],
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": round(average_certified_radius(frame), 3),
             "abstain": round(100 * float(np.mean(frame["predict"] == -1)), 1),
             "max_regret": None, "forwards_per_input": None, "seconds_per_input": None,
             "experts": [], "router": None,
             "chosen_on": "unknown", "chosen_on_test": False, "external": True,
             "counts_available": False, "radii_recomputed": True,
             "rsrouter_version": __version__, "date": date.today().isoformat(),
             "curve": step_curve(frame["radius"].to_numpy(), frame["correct"].to_numpy() == 1),
             **fields}
    entry["key"] = entry_key(entry)
    return entry


def import_tsv(log: str | os.PathLike, *, dataset: str, method: str, out: str | os.PathLike,
               benchmark: str | None = None, source: str = "", n: int | None = None,
               n0: int | None = None, alpha: float | None = None, sigma: float | None = None,
               radii: Sequence[float] = RADII, inputs: str | None = None,
               paper: str = "") -> Path:
    """An entry, marked external, for a certification log in Cohen et al.'s format (``idx
    label predict radius correct time``), every radius recomputed from counts
    (:func:`recompute_log`: the log's own, or recovered under the declared ``n``, ``alpha``,
    ``sigma``), what is declared checked against the log: ``dataset`` (one of
    :data:`LOG_DATASETS`), ``inputs`` (:func:`parse_inputs`; None: not declared); a log already
    in ``out`` under another name is refused. ``paper``: the citation, recorded. Returns the
    entry file.

    Raises:
        ResultsError: as :func:`recompute_log`, or the log already imported under another name.
    """
    log = Path(log)
    benchmark = benchmark or f"{dataset}-external"
    rec = recompute_log(log, dataset, n=n, n0=n0, alpha=alpha, sigma=sigma, inputs=inputs)
    _already_imported(Path(out), rec.sha256, method, benchmark)
    source, paper = scrub_text(source), scrub_text(paper)
    spec = "as published" if rec.selection is None else rec.selection.describe(
        LOG_DATASETS[dataset][0], len(rec.frame))
    path = Path(out) / entry_filename({"benchmark": benchmark, "method": method})
    per_input = write_per_input(rec.frame, Path(out), path.stem)
    entry = log_entry(rec.frame, dataset=dataset, benchmark=benchmark, method=method,
                      protocol=rec.protocol, kind=f"external: counts {rec.counts}", spec=spec,
                      radii=radii, counts_available=has_counts(rec.frame), counts=rec.counts,
                      source=source, paper=paper, log_sha256=rec.sha256, per_input=per_input,
                      note=f"imported from {log.name}" + (f" ({source})" if source else ""))
    atomic_write_json(path, entry)
    return path


def write_per_input(frame: pd.DataFrame, out: Path, stem: str) -> dict:
    """Write an imported log's recomputed per-input radii to ``out/per-input/STEM.tsv``;
    returns the entry's ``per_input`` field (the path, relative to ``out``, and its sha256)."""
    text = frame[PER_INPUT_COLUMNS].to_csv(sep="\t", index=False)
    path = Path(PER_INPUT) / f"{stem}.tsv"
    atomic_write_text(out / path, text)
    return {"path": path.as_posix(), "sha256": hashlib.sha256(text.encode()).hexdigest()}


_REPOSITORY = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*/[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def vendored(manifest: Path, repository: str, path: str, where: str) -> Path:
    """Where a sources manifest's file of ``repository`` (``OWNER/NAME``) at ``path`` is
    vendored: ``logs/OWNER-NAME/PATH`` beside the manifest, never outside that folder.

    Raises:
        ResultsError: a repository that is not ``OWNER/NAME``, or a path that leaves the
            folder (absolute, or with ``..``).
    """
    if not isinstance(repository, str) or not _REPOSITORY.fullmatch(repository) \
            or ".." in repository:
        raise ResultsError(f"{where}: repository {repository!r} is not OWNER/NAME")
    folder = (Path(manifest).parent / "logs" / repository.replace("/", "-")).resolve()
    file = (folder / str(path)).resolve()
    if not file.is_relative_to(folder) or file == folder:
        raise ResultsError(f"{where}: path {path!r} leaves the vendored folder {folder}")
    return file


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
