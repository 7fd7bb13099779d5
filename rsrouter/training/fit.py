"""The shared training loop: shuffled batches, per-(seed, epoch) generators, checkpoints.

Every trainer (experts, routers, denoisers) saves a checkpoint (safetensors, no pickle) after every
epoch under ``OUT/.train/`` and resumes from it when rerun with the same settings; each epoch's
shuffling and noise come from a generator seeded by (seed, epoch), so an interrupted-then-resumed
run ends with the weights of an uninterrupted one. One process trains into a folder at a time.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from ..cards.pins import CONFIG_FILE
from ..certify.noise import noise_generator
from ..data import TensorImageDataset
from ..distributed import SINGLE, Dist, current
from ..files import (
    FileLock,
    check_resume,
    load_tensors,
    optimizer_tensors,
    restore_optimizer,
    save_tensors,
)
from ..models.normalize import NormalizedModel

CHECKPOINT = ".train/checkpoint.safetensors"


def epoch_batches(dataset: Dataset, batch_size: int, generator: torch.Generator,
                  dist: Dist = SINGLE, epoch: int = 0):
    """Shuffled ``(x, y)`` batches; in-memory datasets are sliced directly (no DataLoader).

    In-memory batches are whole (every rank sees the batch a single process sees; the training
    step keeps its share); a DataLoader under torchrun gives each rank its own share of the
    shuffled data (DistributedSampler).
    """
    if isinstance(dataset, TensorImageDataset):
        order = torch.randperm(len(dataset), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield dataset.images[idx], dataset.labels[idx]
    elif dist.enabled:
        sampler = DistributedSampler(dataset, num_replicas=dist.world, rank=dist.rank,
                                     shuffle=True, seed=int(torch.randint(2**31, (1,),
                                                                          generator=generator)))
        sampler.set_epoch(epoch)
        yield from DataLoader(dataset, batch_size=max(1, batch_size // dist.world),
                              sampler=sampler, num_workers=min(4, os.cpu_count() or 1))
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=min(4, os.cpu_count() or 1))


def in_memory(dataset: Dataset) -> bool:
    return isinstance(dataset, TensorImageDataset)


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


Step = Callable[..., tuple[torch.Tensor, dict]]


def fit(
    model: NormalizedModel,
    optimizer: torch.optim.Optimizer,
    dataset: Dataset,
    batch_size: int,
    step: Step,
    lr_at: Callable[[int, int], float],
    *,
    epochs: int,
    steps_per_epoch: int,
    seed: int,
    out: Path,
    settings: dict,
    device: str,
    desc: str,
    progress: bool,
    stop_after_epoch: int | None = None,
) -> dict | None:
    """The shared epoch loop: per-(seed, epoch) generators, checkpoint and resume, and
    DistributedDataParallel under torchrun.

    ``step(forward, x, y, gen, local) -> (loss, stats)``: ``forward`` is the model (wrapped by
    DDP when distributed), ``local(t)`` this rank's share of a whole batch (the identity when
    the batch is already this rank's). Drawing the noise of the whole batch, then keeping a
    share, makes a run on W ranks see the samples of a one-process run, and each rank's mean
    loss is weighted by its share of the batch, so the averaged gradient is the batch mean's
    (BatchNorm statistics stay per rank, as in any DDP run). ``lr_at(epoch, step)``.
    Returns the last epoch's mean stats, or None when stopped early by ``stop_after_epoch``
    (checkpoint kept).
    """
    dist = current()
    forward = model
    if dist.enabled:
        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        forward = DistributedDataParallel(model, device_ids=ids)
    whole = in_memory(dataset)

    def local(t: torch.Tensor) -> torch.Tensor:
        return torch.tensor_split(t, dist.world)[dist.rank] if dist.enabled and whole else t

    ckpt_path = out / CHECKPOINT
    start_epoch, stats = 0, {}
    if ckpt_path.is_file():
        tensors, meta = load_tensors(ckpt_path)
        check_resume(ckpt_path, settings, meta.get("settings"),
                     f"delete {out / '.train'} to start over")
        model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        restore_optimizer(optimizer, tensors, meta["optimizer"])
        start_epoch, stats = meta["epoch"], meta["stats"]
    bar = tqdm(total=epochs * steps_per_epoch, initial=start_epoch * steps_per_epoch,
               disable=not (progress and dist.is_main), desc=desc, unit="step")
    for epoch in range(start_epoch, epochs):
        model.train()
        gen = noise_generator(seed, epoch, "train")
        noise_gen = gen if whole or not dist.enabled else noise_generator(
            seed, epoch * dist.world + dist.rank, "router-train")  # a rank's own data, own noise
        sums: dict[str, float] = {}
        seen = 0
        for i, (x, y) in enumerate(epoch_batches(dataset, batch_size, gen, dist, epoch)):
            split = dist.enabled and whole
            if split and len(x) < dist.world:
                continue  # a rank would get no sample (every rank skips the same batch)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch, i)
            loss, batch_stats = step(forward, x.to(device), y.to(device), noise_gen, local)
            if split:  # DDP averages rank means: weight each by its share, as one process does
                loss = loss * (len(local(x)) * dist.world / len(x))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(x)
            for key, value in batch_stats.items():
                sums[key] = sums.get(key, 0.0) + value * len(x)
            stats = {key: round(value / seen, 4) for key, value in sums.items()}
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, **stats)
        if dist.is_main:
            opt_tensors, opt_meta = optimizer_tensors(optimizer)
            net_tensors = {f"net.{k}": v for k, v in model.net.state_dict().items()}
            save_tensors(ckpt_path, {**net_tensors, **opt_tensors},
                         {"settings": settings, "epoch": epoch + 1, "optimizer": opt_meta,
                          "stats": stats})
        dist.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch < epochs:
            bar.close()
            return None
    bar.close()
    return stats


def finish(out: Path) -> None:
    """Remove the checkpoint of a finished run (and ``.train/`` when it is left empty)."""
    ckpt = out / CHECKPOINT
    ckpt.unlink(missing_ok=True)
    if ckpt.parent.is_dir() and not any(ckpt.parent.iterdir()):
        ckpt.parent.rmdir()


def finished_settings(out: Path, block: str) -> dict | None:
    """The settings of a finished run in ``out`` (None when there is none)."""
    if not (out / CONFIG_FILE).is_file() or (out / CHECKPOINT).is_file():
        return None
    return json.loads((out / CONFIG_FILE).read_text())[block].get("training", {}).get("settings")


def writer_lock(out: str | os.PathLike):
    """One trainer per output folder (rank 0 holds it for a torchrun job)."""
    if not current().is_main:
        return nullcontext()
    return FileLock(Path(os.path.realpath(out)) / ".lock", str(out))
