"""Long runs over a dataset: certify inputs to a resumable TSV with a progress bar."""

from __future__ import annotations

import json
import os
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..certify.bounds import check_settings
from ..distributed import Dist, current, parts_of
from ..files import FileLock, atomic_write_json, atomic_write_text
from ..protocol import Protocol
from .rows import COHEN_COLUMNS, EXPERT_EXTRAS, certificate_extras, cohen_row
from .tsv import ResumableTSV, check_resumable, own_lines, settings_path


class Certifier(typing.Protocol):
    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int,
                      seed: int, indices: Sequence[int]) -> list: ...


def model_identity(model) -> dict:
    """What pins a smoothed model in a run's settings: the sha256 of its config.json and weights
    (as read) and the sigma it is smoothed with."""
    pin = getattr(model, "pin", None)
    return {"weights_sha256": pin.weights_sha256 if pin else None,
            "config_sha256": pin.config_sha256 if pin else None, "sigma": model.sigma}


def run_settings(models: dict, data: dict, protocol: Protocol, *, mode: str, **extra) -> dict:
    """The settings a resumed run must match: the models (:func:`model_identity` of each), the
    data (:func:`rsrouter.data.data_identity`: name, split, the folder read, length, a hash of
    the labels), the protocol's ``n0``, ``n``, ``alpha`` and ``seed`` and the compute mode. Which
    inputs are certified is not among them: a rerun with more inputs continues the same file."""
    return {"models": {k: model_identity(m) for k, m in models.items()}, "data": data,
            **protocol.record(), "mode": mode, **extra}


def routed_models(routed) -> dict:
    """The router and its experts of a RoutedClassifier, by role, for :func:`run_settings`."""
    return {"router": routed.router, **{f"expert{k}": e for k, e in enumerate(routed.experts)}}


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
    dist: Dist | None = None,
) -> Path:
    """The resumable loop over a dataset: ``rows_fn(xs, idx, labels)`` -> one row per input.

    Inputs are processed ``group`` at a time (their noisy copies share batches); every finished
    group is appended and fsynced, so an interrupted run resumes after its last complete row, and
    a rerun with more ``indices`` does only the new ones. ``time`` is the group's wall time
    divided among its inputs. ``settings`` must match to resume (see :class:`ResumableTSV`).

    Under torchrun each rank does its shard into its own part file and rank 0 merges the parts
    into ``out`` (see :mod:`rsrouter.distributed`); every rank returns once ``out`` is complete.
    """
    dist = dist or current()
    if dist.enabled or parts_of(out):
        return _run_sharded(rows_fn, dataset, indices, Path(out), columns, settings, group=group,
                            progress=progress, desc=desc, dist=dist)
    with ResumableTSV(out, columns, settings) as tsv:
        todo = [i for i in dict.fromkeys(indices) if i not in tsv.done]  # each input once
        _loop(rows_fn, dataset, todo, len(set(indices)), tsv, group, progress, desc)
    return Path(out)


def _loop(rows_fn, dataset, todo, total, tsv, group, progress, desc) -> None:
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


def _run_sharded(rows_fn, dataset, indices, out: Path, columns, settings, *, group, progress,
                 desc, dist: Dist) -> Path:
    """Each rank certifies its shard of what is not yet done into its part; rank 0 merges."""
    header = "\t".join(columns)
    settings = json.loads(json.dumps(settings))
    done = set()
    for path in [out, *parts_of(out)]:  # what earlier runs (any world size) already hold
        rows = _complete_rows(path, header, settings)
        done |= {int(line.split("\t", 1)[0]) for line in rows}
    todo = [i for i in dict.fromkeys(indices) if i not in done]
    dist.barrier()  # every rank has read the same state before any rank writes
    # whole groups per rank: each group is batched as one process batches it, so a model whose
    # output for a sample depends on its batch's shape (GPU kernels) still gives the same counts
    mine = [i for chunk in dist.shard([todo[s:s + group] for s in range(0, len(todo), group)])
            for i in chunk]
    with ResumableTSV(dist.part(out), columns, settings) as tsv:
        _loop(rows_fn, dataset, mine, len(mine) + len(tsv.done), tsv, group,
              progress and dist.is_main, f"{desc} [rank {dist.rank}/{dist.world}]"
              if dist.enabled else desc)
    dist.barrier()
    if dist.is_main:
        merge_parts(out, columns, settings, indices)
    dist.barrier()
    return out


def _complete_rows(path: Path, header: str, settings: dict) -> list[str]:
    """The complete data lines of a results file or part (none if absent); its settings must
    match those of this run."""
    lines = own_lines(path)[1]  # a file that is not ours is refused, never rewritten
    if len(lines) <= 1:
        return []
    check_resumable(path, lines[0], header, settings)
    return lines[1:]


def merge_parts(out: str | os.PathLike, columns: Sequence[str], settings: dict,
                indices: Sequence[int]) -> Path:
    """Merge ``out`` and its part files into ``out`` (rows of earlier runs first, then new rows
    in the order of ``indices``; each input once), then delete the parts."""
    out = Path(out)
    header = "\t".join(columns)
    old = _complete_rows(out, header, settings)
    parts = parts_of(out)
    seen = {int(line.split("\t", 1)[0]) for line in old}
    new: dict[int, str] = {}
    for part in parts:
        for line in _complete_rows(part, header, settings):
            idx = int(line.split("\t", 1)[0])
            if idx not in seen:
                new.setdefault(idx, line)
    position = {i: k for k, i in enumerate(dict.fromkeys(indices))}
    ordered = sorted(new, key=lambda i: (position.get(i, len(position)), i))
    with FileLock(f"{os.path.realpath(out)}.lock", str(out)):
        atomic_write_json(settings_path(out), settings)
        atomic_write_text(out, "\n".join([header, *old, *(new[i] for i in ordered)]) + "\n")
    for part in parts:  # under its lock: a part a live process still writes is an error;
        with FileLock(f"{os.path.realpath(part)}.lock", str(part)):  # a dead one's stale lock
            part.unlink()                                              # file goes too
            settings_path(part).unlink(missing_ok=True)
    return out


def group_size(protocol: Protocol) -> int:
    """How many inputs to process together so that small sample sizes still fill a batch."""
    return max(1, min(64, protocol.batch_size // max(1, min(protocol.n0, protocol.n))))


def certify_dataset(
    certifier: Certifier,
    dataset: Dataset,
    indices: Sequence[int],
    out: str | os.PathLike,
    protocol: Protocol,
    *,
    settings: dict,
    extras: Sequence[str] = EXPERT_EXTRAS,
    row_extras: Callable[[object], dict] = certificate_extras,
    progress: bool = True,
    desc: str = "certify",
) -> Path:
    """Certify ``dataset[i]`` for ``i`` in ``indices`` into the TSV ``out`` (Cohen's columns,
    then ``extras``) under ``protocol``; returns ``out``. Resumable and growable (see
    :func:`run_rows`)."""
    p = protocol
    check_settings(p.n0, p.n, p.alpha, p.batch_size)  # before any file is created

    def rows(xs, chunk, labels):
        certs = certifier.certify_batch(xs, p.n0, p.n, p.alpha, batch_size=p.batch_size,
                                        seed=p.seed, indices=chunk)
        return [{**cohen_row(i, y, c.prediction, c.radius), **row_extras(c)}
                for i, y, c in zip(chunk, labels, certs)]

    return run_rows(rows, dataset, indices, out, [*COHEN_COLUMNS, *extras], settings,
                    group=group_size(p), progress=progress, desc=desc)
