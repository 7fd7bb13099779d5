"""ACES compositions from published logs (Horvath et al., eth-sri/ACES): per input, a smoothed
selection model (entropy of the certification model's softmax under noise, thresholded) picks
the certification model (a smoothed classifier) or a non-robust core model; the composed
radius is ``min(R_selection, R_certification)`` where the selection certifies the certification
model. ACES certifies each smoothed model at ``alpha / 2`` (a union bound over the two).

Two accountings: :func:`authors_row` recomputes the authors' table from the logged radii, as
their ``analyze_utils.py`` does (each log at its own alpha, ``0.0005``; a total of ``0.001``;
at r = 0 it counts an input whose selection abstained but whose certification model is right);
:func:`composed_frame` composes per input from counts recovered from the logged radii, at the
same levels, and counts at r = 0 only what the composed classifier predicts (an abstaining
selection abstains). Torch-free.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..certify.bounds import radii_from_counts
from ..errors import IntegrityError, ResultsError
from ..results.logs import counts_from_radii
from .logs import log_entry, vendored


def aces_files(manifest: str | Path) -> dict:
    """The manifest's ``aces`` block with every file it names checked against its pinned
    sha256 list: ``{"folder", "core": {dataset: path}, "thresholds"}``.

    Raises:
        ResultsError: no ``aces`` block.
        IntegrityError: the sha256 list or a listed file is not the pinned bytes.
    """
    manifest = Path(manifest)
    block = (yaml.safe_load(manifest.read_text()) or {}).get("aces")
    if not isinstance(block, dict):
        raise ResultsError(f"{manifest}: no `aces` block")
    try:
        repository, sums_name = block["repository"], block["sha256sums"]
        core, thresholds = dict(block["core"]), [float(t) for t in block["thresholds"]]
    except (KeyError, TypeError, ValueError):
        raise ResultsError(f"{manifest}: the `aces` block needs repository, sha256sums, sha256, "
                           "core (dataset: path) and thresholds") from None
    sums = vendored(manifest, repository, sums_name, f"{manifest}: aces")
    if not sums.is_file() or hashlib.sha256(sums.read_bytes()).hexdigest() != block.get("sha256"):
        raise IntegrityError(f"{sums}: missing, or not the pinned sha256 list")
    for name, digest in sha256_list(sums, manifest, repository).items():
        if hashlib.sha256(vendored(manifest, repository, name, str(sums)).read_bytes()) \
                .hexdigest() != digest:
            raise IntegrityError(f"{sums.parent / name}: not the bytes {sums.name} pins")
    return {"folder": sums.parent,
            "core": {d: vendored(manifest, repository, c, str(manifest)) for d, c in core.items()},
            "thresholds": thresholds}


def sha256_list(sums: Path, manifest: Path, repository: str) -> dict[str, str]:
    """A ``sha256sum``-style list (``DIGEST  PATH`` per line) as ``{path: digest}``, every path
    inside the repository's vendored folder.

    Raises:
        ResultsError: a line that is not a sha256 and a path, or a path that leaves the folder.
    """
    out = {}
    for i, line in enumerate(sums.read_text().splitlines(), 1):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            raise ResultsError(f"{sums}:{i}: not a sha256 and a path")
        vendored(manifest, repository, parts[1].lstrip("*"), f"{sums}:{i}")
        out[parts[1].lstrip("*")] = parts[0]
    return out


def read_log(path: Path) -> pd.DataFrame:
    """An ACES log (certification, selection or core prediction), radii kept as printed."""
    return pd.read_csv(path, sep="\t", dtype={"radius": str})


def authors_row(selection: pd.DataFrame, certification: pd.DataFrame, core: pd.DataFrame,
                radii: Sequence[float]) -> tuple[float, float, list[float]]:
    """``(natural accuracy %, ACR, certified accuracy % per radius)`` as the authors' tables
    compute them from the logged radii."""
    sel, cert_ok = selection["predict"].to_numpy(), certification["correct"].to_numpy() == 1
    core_ok = core["correct"].to_numpy() == 1
    picked = sel != 0  # truthy, as their code reads it: -1 (abstain) too
    radius = np.minimum(selection["radius"].astype(float).to_numpy(),
                        certification["radius"].astype(float).to_numpy())
    count = len(selection)
    unperturbed = selection["unperturbed predict"].to_numpy()
    natural = ((unperturbed == 1) & (certification["unperturbed correct"].to_numpy() == 1)) | (
        (unperturbed == 0) & core_ok) | ((unperturbed == -1) & (certification[
            "unperturbed correct"].to_numpy() == 1) & core_ok)
    acr = float(np.sum(np.where(picked & cert_ok, radius, 0.0))) / count
    acc = []
    for r in radii:
        if r > 0:
            hit = picked & cert_ok & (radius >= r)
        else:
            hit = (picked & cert_ok) | ((sel == 0) & core_ok) | (core_ok & cert_ok)
        acc.append(100 * float(hit.sum()) / count)
    return 100 * float(natural.sum()) / count, acr, acc


def composed_frame(selection: pd.DataFrame, certification: pd.DataFrame, core: pd.DataFrame,
                   sigma: float, n: int, alpha: float, where: str) -> pd.DataFrame:
    """Per input, the ACES classifier certified from counts recovered from both logs (each at
    ``alpha``, as ACES certifies each model): where the selection certifies the certification
    model, its class within ``min(R_selection, R_certification)`` (abstain where the
    certification model does); where it certifies the core model, the core's class at radius
    0; where it abstains, ABSTAIN."""
    sel = selection["predict"].to_numpy()
    r_sel = radii_from_counts(counts_from_radii(selection["radius"].tolist(), sel, n, alpha,
                                                sigma, f"{where} (selection)"), n, alpha, sigma)
    cert_predict = certification["predict"].to_numpy()
    r_cert = radii_from_counts(counts_from_radii(certification["radius"].tolist(),
                                                 cert_predict, n, alpha, sigma, where),
                               n, alpha, sigma)
    label = certification["label"].to_numpy()
    use_cert = (sel == 1) & (cert_predict != -1)
    predict = np.where(use_cert, cert_predict, np.where(sel == 0, core["predict"].to_numpy(),
                                                        -1))
    radius = np.where(use_cert, np.minimum(r_sel, r_cert), 0.0)
    return pd.DataFrame({"idx": certification["idx"].to_numpy(), "label": label,
                         "predict": predict, "radius": radius,
                         "correct": ((predict == label) & (predict != -1)).astype(int)})


def selection_log(certification: Path, threshold: float) -> Path:
    """The selection log beside a certification log, at an entropy threshold."""
    return certification.with_name(certification.name.replace(
        "_certification", f"_selection_{threshold:.2f}"))


def aces_entries(sources, manifest: str | Path, radii: Sequence[float],
                 board: Sequence[float] = (0.5,)) -> tuple[list[dict], str]:
    """Board entries for the ACES compositions at the ``board`` thresholds (counts recovered,
    alpha 0.0005 for each model: 0.001 in all) and a markdown report of every published
    threshold: the authors' accounting beside the recomputed composition."""
    files = aces_files(manifest)
    cores = {d: read_log(path) for d, path in files["core"].items()}
    entries, lines = [], [
        "# ACES compositions", "", "Selection + certification + core model per input, "
        "from eth-sri/ACES's logs. `authors`: their tables' accounting from the logged radii "
        "(each model at alpha 0.0005, 0.001 in all; at r = 0 an input whose selection abstained "
        "counts when the certification model is right). `recomputed`: counts recovered from "
        "the logged radii at the same levels; an abstaining selection abstains.", "",
        "| model | threshold | authors: ACR | r=0 | r=0.5 | r=1 | recomputed: ACR | r=0 | "
        "r=0.5 | r=1 |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sources:
        if s.repository != "eth-sri/ACES" or s.dataset not in cores:
            continue
        cert, core = read_log(s.file), cores[s.dataset]
        for t in files["thresholds"]:
            sel = read_log(selection_log(s.file, t))
            _, acr, acc = authors_row(sel, cert, core, [0.0, 0.5, 1.0])
            frame = composed_frame(sel, cert, core, s.sigma, s.n, s.alpha, s.name)
            ours = [100 * float(((frame["correct"] == 1) & (frame["radius"] >= r)).mean())
                    for r in (0.0, 0.5, 1.0)]
            ours_acr = float((frame["radius"] * frame["correct"]).mean())
            lines.append(f"| {s.name} | {t:.2f} | {acr:.3f} | " + " | ".join(
                f"{a:.1f}" for a in acc) + f" | {ours_acr:.3f} | " + " | ".join(
                f"{a:.1f}" for a in ours) + " |")
            if any(abs(t - b) < 1e-9 for b in board):
                entries.append(log_entry(
                    frame, dataset=s.dataset, benchmark=s.family,
                    method=f"ACES {s.name.split('-', 2)[2]} + core, threshold {t:.2f}",
                    protocol={"n0": s.n0, "n": s.n, "alpha": 2 * s.alpha, "sigma": s.sigma},
                    kind="external: composed from logs (ACES: selection, certification and "
                         "core model), counts recovered from published radii",
                    spec=s.inputs, radii=radii, source=f"{s.repository}@{s.commit}",
                    paper=s.paper, alpha_accounting=f"selection {s.alpha:g} + certification "
                    f"{s.alpha:g} = {2 * s.alpha:g} (union bound)", threshold=t))
    return entries, "\n".join(lines) + "\n"
