"""Expert training: Gaussian noise augmentation (Cohen et al. 2019), one sigma or a set of them,
optionally fine-tuned from a classifier at the sigmas an estimator assigns (Dual RS)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..cards.expert import ExpertCard, expert_card
from ..cards.pins import CONFIG_FILE, read_artifact
from ..data import TensorImageDataset, load_dataset
from ..distributed import current
from ..errors import ConfigError
from ..files import check_resume, sha256_file
from ..models import architecture_source
from ..models.normalize import NormalizedModel
from ..registry.weights import build_model, build_network, save_expert
from .fit import CHECKPOINT, cosine_lr, finish, finished_settings, fit, in_memory, writer_lock
from .loss import router_loss


@dataclass
class TrainConfig:
    """Settings of one expert training run (recorded in the card's training recipe).

    One ``sigma`` trains a fixed-sigma expert (Cohen et al.). ``sigmas`` trains ONE classifier
    for every sigma of the set (its card serves each): each example's sigma is drawn from
    ``sigmas`` with probabilities ``sigma_weights`` (default uniform), or, when fine-tuning with
    an estimator (Dual RS), is the sigma it assigns to that input. ``noise_copies`` > 1 with
    ``consistency_lambda`` / ``consistency_eta`` adds consistency regularization (Jeong & Shin
    2020): ``lambda * KL(mean || each) + eta * H(mean)`` over the copies of each example.
    ``init`` starts from the weights of a classifier folder (fine-tuning).
    """

    dataset: str
    arch: str
    sigma: float | None = None
    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    train_size: int | None = None
    sigmas: tuple[float, ...] | None = None
    sigma_weights: tuple[float, ...] | None = None
    noise_copies: int = 1
    consistency_lambda: float = 0.0
    consistency_eta: float = 0.0
    init: str | None = None

    def validate(self) -> None:
        if (self.sigma is None) == (self.sigmas is None):
            raise ValueError("give one sigma (a fixed-sigma expert) or sigmas (one classifier "
                             "for every sigma of the set), not both and not neither")
        for s in [self.sigma] if self.sigmas is None else self.sigmas:
            if not (isinstance(s, (int, float)) and s > 0):
                raise ValueError(f"sigma must be > 0 (pixel units), got {s}")
        if self.sigmas is not None and list(self.sigmas) != sorted(set(self.sigmas)):
            raise ValueError(f"sigmas must increase strictly, got {list(self.sigmas)}")
        w = self.sigma_weights
        if w is not None and (self.sigmas is None or len(w) != len(self.sigmas)
                              or any(v < 0 for v in w) or sum(w) <= 0):
            raise ValueError("sigma_weights: one non-negative weight per sigma of sigmas, "
                             f"not all 0; got {w}")
        if self.epochs < 1 or self.batch_size < 1 or self.noise_copies < 1:
            raise ValueError("epochs, batch_size and noise_copies must be >= 1")
        if self.consistency_lambda < 0 or self.consistency_eta < 0:
            raise ValueError("consistency_lambda and consistency_eta must be >= 0")
        if (self.consistency_lambda > 0 or self.consistency_eta > 0) and self.noise_copies < 2:
            raise ValueError("consistency regularization needs noise_copies >= 2")

    @property
    def candidate_sigmas(self) -> tuple[float, ...]:
        return tuple(self.sigmas) if self.sigmas is not None else (float(self.sigma),)

    def settings(self) -> dict:
        """What a resume must match (the options at their defaults are left out, so that the
        settings of experts trained before they existed stay as recorded)."""
        defaults = {"sigmas": None, "sigma_weights": None, "noise_copies": 1,
                    "consistency_lambda": 0.0, "consistency_eta": 0.0, "init": None}
        d = asdict(self)
        d = {k: v for k, v in d.items() if k not in defaults or v != defaults[k]}
        return json.loads(json.dumps(d))


class _WithSigma(Dataset):
    """A dataset whose labels become ``[label, sigma index]`` (fine-tuning on assigned sigmas)."""

    def __init__(self, inner: Dataset, assigned: torch.Tensor) -> None:
        self.inner, self.assigned, self.info = inner, assigned, inner.info

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        x, y = self.inner[i]
        return x, torch.tensor([int(y), int(self.assigned[i])])


def _read_init(config: TrainConfig):
    """The classifier folder ``config.init``, read and verified once (its card's weights hash):
    (its files, its card)."""
    files = read_artifact(config.init)
    card = expert_card(files)
    if card.architecture != config.arch:
        raise ConfigError(f"init: {config.init} is {card.architecture}, not {config.arch}")
    return files, card


def _init_weights(model: NormalizedModel, config: TrainConfig, files, card) -> dict:
    """Start ``model`` from the init classifier (:func:`_read_init`); returns the record the
    new card keeps."""
    model.net.load_state_dict(build_network(card, files, trust_code=True).net.state_dict())
    return {"from": str(config.init), "weights_sha256": files.weights_sha256}


def train_expert(config: TrainConfig, out: str | os.PathLike, **kw) -> Path:
    """Train an expert and write its folder to ``out``; returns ``out``.

    Keyword arguments: ``data_root``, ``device``, ``name``, ``progress``, ``stop_after_epoch``
    (ends the run early after that epoch, checkpoint kept, as an interruption would; rerunning
    continues from the checkpoint), ``assigned`` (per training example, the index into
    ``config.sigmas`` of its sigma: the Dual RS fine-tuning step; recorded in the settings by
    its sha256), ``dataset`` (the training set instead of the config's split; with
    ``assigned``, aligned with it). One process trains into ``out`` at a time.

    Raises:
        ResumeError: ``out`` holds a checkpoint or an expert trained with other settings.
        DatasetNotFoundError: the dataset is missing.
        LockedError: another process is training into ``out``.
    """
    config.validate()  # before anything is created
    with writer_lock(out):
        return _train_expert(config, Path(out), **kw)


def _train_expert(
    config: TrainConfig,
    out: Path,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    name: str = "",
    progress: bool = True,
    stop_after_epoch: int | None = None,
    assigned: torch.Tensor | None = None,
    dataset: Dataset | None = None,
) -> Path:
    assigned = None if assigned is None else torch.as_tensor(assigned, dtype=torch.long)
    settings = _run_settings(config, assigned)
    if (out / CONFIG_FILE).is_file() and not (out / CHECKPOINT).is_file():
        check_resume(out, settings, finished_settings(out, "rs_expert"),
                     "choose another --out or delete the folder")
        return out
    train = _training_set(config, dataset or load_dataset(config.dataset, "train", data_root,
                                                          augment=True), assigned)
    info = train.info
    card = ExpertCard(architecture=config.arch, num_classes=info.num_classes,
                      input_size=info.input_size, mean=info.mean, std=info.std,
                      sigma=None if config.sigmas is not None else float(config.sigma),
                      sigmas=tuple(float(s) for s in config.sigmas or ()), dataset=info.name,
                      label_names=list(info.label_names),
                      arch_source=architecture_source(config.arch), name=name or out.name)
    init_files = init_card = None
    if config.init is not None:  # the network keeps the input it was trained on
        init_files, init_card = _read_init(config)
        card = replace(card, mean=init_card.mean, std=init_card.std, resize=init_card.resize)
    torch.manual_seed(config.seed)
    model = build_model(card.header, trust_code=True).to(device)  # the user's own --arch
    init = None
    if init_files is not None:
        init = _init_weights(model, config, init_files, init_card)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    steps = math.ceil(len(train) / config.batch_size)
    stats = fit(model, optimizer, train, config.batch_size,
                _noise_step(config, info.num_classes, assigned is not None),
                lambda e, i: cosine_lr(config.lr, e * steps + i, steps * config.epochs),
                epochs=config.epochs, steps_per_epoch=steps, seed=config.seed, out=out,
                settings=settings, device=device,
                desc=f"train {config.arch} sigma={config.sigma or list(config.candidate_sigmas)}",
                progress=progress, stop_after_epoch=stop_after_epoch)
    if stats is None:
        return out
    card.training = _training_record(config, settings, len(train), stats, assigned)
    if init is not None:
        card.training["init"] = init
    if current().is_main:
        save_expert(out, model.net.cpu(), card)
        finish(out)
    current().barrier()
    return out


def _run_settings(config: TrainConfig, assigned: torch.Tensor | None) -> dict:
    """What a resume must match: the config's settings, the init weights by content (not by
    where they lie) and the assigned sigmas by their sha256."""
    settings = config.settings()
    if config.init is not None:
        settings["init"] = sha256_file(Path(config.init) / "model.safetensors")
    if assigned is not None:
        if config.sigmas is None:
            raise ValueError("assigned sigmas need config.sigmas (the candidates they index)")
        settings["assigned_sha256"] = hashlib.sha256(assigned.numpy().tobytes()).hexdigest()
    return settings


def _training_set(config: TrainConfig, train: Dataset, assigned: torch.Tensor | None) -> Dataset:
    """``train`` cut to ``config.train_size``, each label paired with its assigned sigma index
    when there are assigned sigmas. Raises ValueError for an assignment that does not fit."""
    if config.train_size is not None:
        train = TensorImageDataset(train.images[: config.train_size],
                                   train.labels[: config.train_size], train.info)
    if assigned is None:
        return train
    k = len(config.candidate_sigmas)
    if len(assigned) != len(train) or int(assigned.min()) < 0 or int(assigned.max()) >= k:
        raise ValueError(f"assigned: one sigma index in [0, {k}) per training example "
                         f"({len(train)}), got {len(assigned)}")
    # the sigma index travels with the label through the shuffled batches
    if in_memory(train):
        return TensorImageDataset(train.images, torch.stack([train.labels, assigned], 1),
                                  train.info)
    return _WithSigma(train, assigned)


def _noise_step(config: TrainConfig, num_classes: int, assigned: bool):
    """The training step of :func:`.fit.fit`: each example at its sigma (assigned, drawn from
    the candidates, or the one sigma), ``noise_copies`` noisy copies, cross-entropy (plus
    consistency with several copies)."""
    sigmas = config.candidate_sigmas
    table = torch.tensor(sigmas)
    weights = torch.tensor(config.sigma_weights or [1.0] * len(sigmas), dtype=torch.float)
    copies = config.noise_copies
    lam, eta = config.consistency_lambda, config.consistency_eta

    def step(forward, x, y, gen, local):
        # the whole batch's draws, then this rank's share (a W-rank run sees one process's)
        noise = torch.randn((copies, *x.shape), generator=gen)
        if assigned:
            y, which = y[:, 0], y[:, 1].cpu()
        elif len(sigmas) > 1:
            which = torch.multinomial(weights, len(x), replacement=True, generator=gen)
        else:
            which = torch.zeros(len(x), dtype=torch.long)
        scale = table[which].view(1, -1, 1, 1, 1) * noise
        scale = torch.stack([local(c) for c in scale]).flatten(0, 1).to(x.device)
        x, y = local(x), local(y)
        logits = forward(x.repeat(copies, 1, 1, 1) + scale)
        if copies == 1:
            loss, stats = F.cross_entropy(logits, y), {}
        else:
            target = F.one_hot(y, num_classes).float()
            loss, stats = router_loss(logits, target, None, copies, lam, eta)
            stats.pop("ce")
        stats = {"loss": float(loss.detach()), **stats,
                 "noisy_acc": float((logits.argmax(1) == y.repeat(copies)).float().mean())}
        return loss, stats

    return step


def _training_record(config: TrainConfig, settings: dict, inputs: int, stats: dict,
                     assigned: torch.Tensor | None) -> dict:
    """The ``training`` block of the new card."""
    sigmas = config.candidate_sigmas
    copies, lam, eta = config.noise_copies, config.consistency_lambda, config.consistency_eta
    if assigned is not None:
        method = ("Dual RS fine-tuning: Gaussian noise at the sigma the estimator assigns to "
                  "each input")
    elif config.sigmas is not None:
        method = "Gaussian noise augmentation, sigma drawn per example from the candidates"
    else:
        method = "Gaussian noise augmentation (Cohen et al. 2019)"
    if copies > 1 and (lam > 0 or eta > 0):
        method += f"; consistency regularization (lambda {lam}, eta {eta}, {copies} copies)"
    record = {
        "method": method,
        "noise_sigma": config.sigma if config.sigmas is None else list(sigmas),
        "epochs": config.epochs, "batch_size": config.batch_size,
        "optimizer": f"SGD (nesterov, momentum {config.momentum})", "lr": config.lr,
        "schedule": "cosine, per step", "weight_decay": config.weight_decay, "seed": config.seed,
        "train_inputs": inputs, "noisy_train_accuracy": stats.get("noisy_acc"),
        "settings": settings,
    }
    if assigned is not None:
        record["assigned_share"] = {
            str(s): round(float((assigned == k).float().mean()), 4) for k, s in enumerate(sigmas)}
    return record
