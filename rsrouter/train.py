"""Expert training with Gaussian noise augmentation (Cohen et al. 2019's recipe).

``train_expert`` writes an expert folder (config.json + model.safetensors + README.md). It saves a
checkpoint (safetensors, no pickle) after every epoch under ``OUT/.train/`` and resumes from it when
rerun with the same settings; each epoch's shuffling and noise come from a generator seeded by
(seed, epoch), so an interrupted-then-resumed run ends with the weights of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .card import CONFIG_FILE, ExpertCard, save_expert
from .data import TensorImageDataset, load_dataset
from .errors import ResumeError
from .files import load_tensors, optimizer_tensors, restore_optimizer, save_tensors
from .models import architecture_source
from .smoothing import stream_seed

CHECKPOINT = ".train/checkpoint.safetensors"


@dataclass
class TrainConfig:
    """Settings of one expert training run (recorded in the card's training recipe)."""

    dataset: str
    arch: str
    sigma: float
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    train_size: int | None = None

    def validate(self) -> None:
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0 (pixel units), got {self.sigma}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


def epoch_batches(dataset: Dataset, batch_size: int, generator: torch.Generator):
    """Shuffled ``(x, y)`` batches; in-memory datasets are sliced directly (no DataLoader)."""
    if isinstance(dataset, TensorImageDataset):
        order = torch.randperm(len(dataset), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            yield dataset.images[idx], dataset.labels[idx]
    else:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator,
                              num_workers=min(4, os.cpu_count() or 1))


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1.0 + math.cos(math.pi * step / total))


def train_expert(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    name: str = "",
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> Path:
    """Train an expert and write its folder to ``out``; returns ``out``.

    ``stop_after_epoch`` ends the run early after that epoch (checkpoint kept), as an interruption
    would; rerunning continues from the checkpoint.

    Raises:
        ResumeError: ``out`` holds a checkpoint or an expert trained with other settings.
        DatasetNotFoundError: the dataset is missing.
    """
    config.validate()
    out = Path(out)
    settings = asdict(config)
    ckpt_path = out / CHECKPOINT
    if (out / CONFIG_FILE).is_file() and not ckpt_path.is_file():
        done = json.loads((out / CONFIG_FILE).read_text())["rs_expert"].get("training", {})
        if done.get("settings") == settings:
            return out
        raise ResumeError(f"{out} already holds an expert trained with other settings; choose "
                          "another --out or delete the folder")

    train = load_dataset(config.dataset, "train", data_root)
    if config.train_size is not None:
        train = TensorImageDataset(train.images[: config.train_size],
                                   train.labels[: config.train_size], train.info)
    info = train.info
    card = ExpertCard(architecture=config.arch, num_classes=info.num_classes,
                      input_size=info.input_size, mean=info.mean, std=info.std,
                      sigma=float(config.sigma), dataset=info.name,
                      label_names=list(info.label_names),
                      arch_source=architecture_source(config.arch), name=name)
    torch.manual_seed(config.seed)
    model = card.build_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    start_epoch = 0
    if ckpt_path.is_file():
        tensors, meta = load_tensors(ckpt_path)
        if meta.get("settings") != settings:
            raise ResumeError(f"{ckpt_path} was written by a run with other settings "
                              f"({meta.get('settings')}); delete {out / '.train'} to start over")
        model.net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        restore_optimizer(optimizer, tensors, meta["optimizer"])
        start_epoch = meta["epoch"]

    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, disable=not progress,
               desc=f"train {config.arch} sigma={config.sigma}", unit="step")
    for epoch in range(start_epoch, config.epochs):
        model.train()
        gen = torch.Generator().manual_seed(stream_seed(config.seed, epoch, "train"))
        correct = seen = 0
        loss_sum = 0.0
        for step, (x, y) in enumerate(epoch_batches(train, config.batch_size, gen)):
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(config.lr, epoch * steps_per_epoch + step, total)
            x, y = x.to(device), y.to(device)
            noise = torch.randn(x.shape, generator=gen).to(device)
            logits = model(x + config.sigma * noise)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            loss_sum += float(loss.detach()) * len(y)
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}",
                            noisy_acc=f"{correct / seen:.3f}")
        opt_tensors, opt_meta = optimizer_tensors(optimizer)
        net_tensors = {f"net.{k}": v for k, v in model.net.state_dict().items()}
        save_tensors(ckpt_path, {**net_tensors, **opt_tensors},
                     {"settings": settings, "epoch": epoch + 1, "optimizer": opt_meta,
                      "noisy_train_accuracy": correct / seen})
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch < config.epochs:
            bar.close()
            return out
    bar.close()

    _, meta = load_tensors(ckpt_path)
    card.training = {
        "method": "Gaussian noise augmentation (Cohen et al. 2019)",
        "noise_sigma": config.sigma,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "optimizer": f"SGD (nesterov, momentum {config.momentum})",
        "lr": config.lr,
        "schedule": "cosine, per step",
        "weight_decay": config.weight_decay,
        "seed": config.seed,
        "train_inputs": len(train),
        "noisy_train_accuracy": round(meta["noisy_train_accuracy"], 4),
        "settings": settings,
    }
    save_expert(out, model.net.cpu(), card)
    ckpt_path.unlink()
    ckpt_path.parent.rmdir()
    return out
