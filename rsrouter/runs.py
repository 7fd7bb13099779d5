"""Long runs over a dataset: certify inputs to a resumable TSV with a progress bar."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .results import COHEN_COLUMNS, ResumableTSV
from .smoothing import ABSTAIN, Certificate


class Certifier(Protocol):
    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int,
                      seed: int, indices: Sequence[int]) -> list: ...


def certificate_extras(cert: Certificate) -> dict:
    """The TSV extras of a single-expert certificate: its counts and settings."""
    return {"cA": cert.cA, "nA": cert.nA, "n": cert.n, "n0": cert.n0, "sigma": cert.sigma,
            "alpha": cert.alpha, "seed": cert.seed, "mode": cert.mode}


EXPERT_EXTRAS = ("cA", "nA", "n", "n0", "sigma", "alpha", "seed", "mode")


def certify_dataset(
    certifier: Certifier,
    dataset: Dataset,
    indices: Sequence[int],
    out: str | os.PathLike,
    *,
    n0: int,
    n: int,
    alpha: float,
    batch_size: int,
    seed: int,
    settings: dict,
    extras: Sequence[str] = EXPERT_EXTRAS,
    row_extras: Callable[[object], dict] = certificate_extras,
    progress: bool = True,
    desc: str = "certify",
) -> Path:
    """Certify ``dataset[i]`` for ``i`` in ``indices`` into the TSV ``out``; returns ``out``.

    Inputs are certified a few at a time (their noisy copies share batches); every finished group
    is appended and fsynced, so an interrupted run resumes after its last complete row.
    """
    tsv = ResumableTSV(out, [*COHEN_COLUMNS, *extras], settings)
    todo = [i for i in indices if i not in tsv.done]
    group = max(1, min(64, batch_size // max(1, min(n0, n))))
    bar = tqdm(total=len(indices), initial=len(indices) - len(todo), disable=not progress,
               desc=desc, unit="img")
    for start in range(0, len(todo), group):
        chunk = todo[start:start + group]
        items = [dataset[i] for i in chunk]
        xs = torch.stack([x for x, _ in items])
        t0 = time.perf_counter()
        certs = certifier.certify_batch(xs, n0, n, alpha, batch_size=batch_size, seed=seed,
                                        indices=chunk)
        elapsed = (time.perf_counter() - t0) / len(chunk)
        rows = []
        for i, (_, label), cert in zip(chunk, items, certs):
            correct = int(cert.prediction != ABSTAIN and cert.prediction == int(label))
            rows.append({"idx": i, "label": int(label), "predict": cert.prediction,
                         "radius": cert.radius, "correct": correct, "time": elapsed,
                         **row_extras(cert)})
        tsv.append(rows)
        bar.update(len(chunk))
    bar.close()
    return Path(out)
