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
from .smoothing import ABSTAIN, Certificate, check_settings


class Certifier(Protocol):
    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int,
                      seed: int, indices: Sequence[int]) -> list: ...


def certificate_extras(cert: Certificate) -> dict:
    """The TSV extras of a single-expert certificate: its counts and settings."""
    return {"cA": cert.cA, "nA": cert.nA, "n": cert.n, "n0": cert.n0, "sigma": cert.sigma,
            "alpha": cert.alpha, "seed": cert.seed, "mode": cert.mode}


EXPERT_EXTRAS = ("cA", "nA", "n", "n0", "sigma", "alpha", "seed", "mode")


def model_identity(model) -> dict:
    """What pins a smoothed model in a run's settings: the sha256 of its config.json and weights
    (as read) and the sigma it is smoothed with."""
    pin = getattr(model, "pin", None)
    return {"weights_sha256": pin.weights_sha256 if pin else None,
            "config_sha256": pin.config_sha256 if pin else None, "sigma": model.sigma}


def run_settings(models: dict, data: dict, *, n0: int, n: int, alpha: float, seed: int,
                 mode: str, **extra) -> dict:
    """The settings a resumed run must match: the models (:func:`model_identity` of each), the
    data (:func:`rsrouter.data.data_identity`: name, split, the folder read, length, a hash of
    the labels), the statistical settings and the compute mode. Which inputs are certified is not
    among them: a rerun with more inputs continues the same file."""
    return {"models": {k: model_identity(m) for k, m in models.items()}, "data": data, "n0": n0,
            "n": n, "alpha": alpha, "seed": seed, "mode": mode, **extra}


RowsFn = Callable[[torch.Tensor, list[int], list[int]], list[dict]]


def run_rows(
    rows_fn: RowsFn,
    dataset: Dataset,
    indices: Sequence[int],
    out: str | os.PathLike,
    columns: Sequence[str],
    settings: dict,
    *,
    group: int,
    progress: bool = True,
    desc: str = "",
) -> Path:
    """The resumable loop over a dataset: ``rows_fn(xs, idx, labels)`` -> one row per input.

    Inputs are processed ``group`` at a time (their noisy copies share batches); every finished
    group is appended and fsynced, so an interrupted run resumes after its last complete row, and
    a rerun with more ``indices`` does only the new ones. ``time`` is the group's wall time
    divided among its inputs. ``settings`` must match to resume (see :class:`ResumableTSV`).
    """
    with ResumableTSV(out, columns, settings) as tsv:
        todo = [i for i in dict.fromkeys(indices) if i not in tsv.done]  # each input once
        total = len(set(indices))
        bar = tqdm(total=total, initial=total - len(todo), disable=not progress, desc=desc,
                   unit="img")
        for start in range(0, len(todo), group):
            chunk = todo[start:start + group]
            items = [dataset[i] for i in chunk]
            xs = torch.stack([x for x, _ in items])
            labels = [int(y) for _, y in items]
            t0 = time.perf_counter()
            rows = rows_fn(xs, chunk, labels)
            elapsed = (time.perf_counter() - t0) / len(chunk)
            tsv.append([{**row, "time": elapsed} for row in rows])
            bar.update(len(chunk))
        bar.close()
    return Path(out)


def group_size(n0: int, n: int, batch_size: int) -> int:
    """How many inputs to process together so that small sample sizes still fill a batch."""
    return max(1, min(64, batch_size // max(1, min(n0, n))))


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
    """Certify ``dataset[i]`` for ``i`` in ``indices`` into the TSV ``out`` (Cohen's columns,
    then ``extras``); returns ``out``. Resumable and growable (see :func:`run_rows`)."""
    check_settings(n0, n, alpha, batch_size)  # before any file is created

    def rows(xs, chunk, labels):
        certs = certifier.certify_batch(xs, n0, n, alpha, batch_size=batch_size, seed=seed,
                                        indices=chunk)
        return [{"idx": i, "label": y, "predict": c.prediction, "radius": c.radius,
                 "correct": int(c.prediction != ABSTAIN and c.prediction == y), **row_extras(c)}
                for i, y, c in zip(chunk, labels, certs)]

    return run_rows(rows, dataset, indices, out, [*COHEN_COLUMNS, *extras], settings,
                    group=group_size(n0, n, batch_size), progress=progress, desc=desc)
