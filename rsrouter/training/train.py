"""Training loops: experts (Gaussian noise augmentation, Cohen et al. 2019) and routers (Dual RS).

Both save a checkpoint (safetensors, no pickle) after every epoch under ``OUT/.train/`` and resume
from it when rerun with the same settings; each epoch's shuffling and noise come from a generator
seeded by (seed, epoch), so an interrupted-then-resumed run ends with the weights of an
uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..cards.expert import ExpertCard, expert_card
from ..cards.pins import CONFIG_FILE, read_artifact
from ..cards.router import ExpertRef, RouterCard
from ..certify.smoothing import noise_generator
from ..data import TensorImageDataset, load_dataset
from ..distributed import SINGLE, Dist, current
from ..errors import ConfigError, ResumeError
from ..files import FileLock, load_tensors, optimizer_tensors, restore_optimizer, save_tensors
from ..models import NormalizedModel, architecture_source
from ..registry.core import Registry
from ..registry.weights import build_model, build_network, save_expert, save_router
from ..routing.config import RouterConfig
from ..routing.labels import RouterLabels, cache_key, cache_path, compute_labels

CHECKPOINT = ".train/checkpoint.safetensors"


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
        from torch.utils.data.distributed import DistributedSampler

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
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.device(device).index] if str(device).startswith("cuda") else None
        forward = DistributedDataParallel(model, device_ids=ids)
    whole = in_memory(dataset)

    def local(t: torch.Tensor) -> torch.Tensor:
        return torch.tensor_split(t, dist.world)[dist.rank] if dist.enabled and whole else t

    ckpt_path = out / CHECKPOINT
    start_epoch, stats = 0, {}
    if ckpt_path.is_file():
        tensors, meta = load_tensors(ckpt_path)
        if meta.get("settings") != json.loads(json.dumps(settings)):
            raise ResumeError(f"{ckpt_path} was written by a run with other settings; delete "
                              f"{out / '.train'} to start over")
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


def _finish(out: Path) -> None:
    ckpt = out / CHECKPOINT
    ckpt.unlink(missing_ok=True)
    if ckpt.parent.is_dir() and not any(ckpt.parent.iterdir()):
        ckpt.parent.rmdir()


def _finished_settings(out: Path, block: str) -> dict | None:
    """The settings of a finished run in ``out`` (None when there is none)."""
    if not (out / CONFIG_FILE).is_file() or (out / CHECKPOINT).is_file():
        return None
    return json.loads((out / CONFIG_FILE).read_text())[block].get("training", {}).get("settings")


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
    with _writer_lock(out):
        return _train_expert(config, Path(out), **kw)


def _writer_lock(out: str | os.PathLike):
    """One trainer per output folder (rank 0 holds it for a torchrun job)."""
    if not current().is_main:
        return nullcontext()
    return FileLock(Path(os.path.realpath(out)) / ".lock", str(out))


def _train_expert(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    name: str = "",
    progress: bool = True,
    stop_after_epoch: int | None = None,
    assigned: torch.Tensor | None = None,
    dataset: Dataset | None = None,
) -> Path:
    settings = config.settings()
    if config.init is not None:  # the starting weights by content, not by where they lie
        from ..files import sha256_file

        settings["init"] = sha256_file(Path(config.init) / "model.safetensors")
    if assigned is not None:
        if config.sigmas is None:
            raise ValueError("assigned sigmas need config.sigmas (the candidates they index)")
        assigned = torch.as_tensor(assigned, dtype=torch.long)
        settings["assigned_sha256"] = hashlib.sha256(assigned.numpy().tobytes()).hexdigest()
    if (out / CONFIG_FILE).is_file() and not (out / CHECKPOINT).is_file():
        if _finished_settings(out, "rs_expert") == settings:
            return out
        raise ResumeError(f"{out} already holds an expert trained with other settings; choose "
                          "another --out or delete the folder")
    train = dataset or load_dataset(config.dataset, "train", data_root, augment=True)
    if config.train_size is not None:
        train = TensorImageDataset(train.images[: config.train_size],
                                   train.labels[: config.train_size], train.info)
    info = train.info
    sigmas = config.candidate_sigmas
    if assigned is not None:
        if len(assigned) != len(train) or int(assigned.min()) < 0 or int(assigned.max()) >= len(
                sigmas):
            raise ValueError(f"assigned: one sigma index in [0, {len(sigmas)}) per training "
                             f"example ({len(train)}), got {len(assigned)}")
        # the sigma index travels with the label through the shuffled batches
        train = (TensorImageDataset(train.images, torch.stack([train.labels, assigned], 1), info)
                 if in_memory(train) else _WithSigma(train, assigned))
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
    table = torch.tensor(sigmas)
    weights = torch.tensor(config.sigma_weights or [1.0] * len(sigmas), dtype=torch.float)
    copies = config.noise_copies
    lam, eta = config.consistency_lambda, config.consistency_eta

    def step(forward, x, y, gen, local):
        # the whole batch's draws, then this rank's share (a W-rank run sees one process's)
        noise = torch.randn((copies, *x.shape), generator=gen)
        if assigned is not None:
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
            target = F.one_hot(y, info.num_classes).float()
            loss, stats = router_loss(logits, target, None, copies, lam, eta)
            stats.pop("ce")
        stats = {"loss": float(loss.detach()), **stats,
                 "noisy_acc": float((logits.argmax(1) == y.repeat(copies)).float().mean())}
        return loss, stats

    stats = fit(model, optimizer, train, config.batch_size, step,
                lambda e, i: cosine_lr(config.lr, e * steps + i, steps * config.epochs),
                epochs=config.epochs, steps_per_epoch=steps, seed=config.seed, out=out,
                settings=settings, device=device,
                desc=f"train {config.arch} sigma={config.sigma or list(sigmas)}",
                progress=progress, stop_after_epoch=stop_after_epoch)
    if stats is None:
        return out
    if assigned is not None:
        method = ("Dual RS fine-tuning: Gaussian noise at the sigma the estimator assigns to "
                  "each input")
    elif config.sigmas is not None:
        method = "Gaussian noise augmentation, sigma drawn per example from the candidates"
    else:
        method = "Gaussian noise augmentation (Cohen et al. 2019)"
    if copies > 1 and (lam > 0 or eta > 0):
        method += f"; consistency regularization (lambda {lam}, eta {eta}, {copies} copies)"
    card.training = {
        "method": method,
        "noise_sigma": config.sigma if config.sigmas is None else list(sigmas),
        "epochs": config.epochs, "batch_size": config.batch_size,
        "optimizer": f"SGD (nesterov, momentum {config.momentum})", "lr": config.lr,
        "schedule": "cosine, per step", "weight_decay": config.weight_decay, "seed": config.seed,
        "train_inputs": len(train), "noisy_train_accuracy": stats.get("noisy_acc"),
        "settings": settings,
    }
    if assigned is not None:
        card.training["assigned_share"] = {
            str(s): round(float((assigned == k).float().mean()), 4) for k, s in enumerate(sigmas)}
    if init is not None:
        card.training["init"] = init
    if current().is_main:
        save_expert(out, model.net.cpu(), card)
        _finish(out)
    current().barrier()
    return out


# ---- routers ----------------------------------------------------------------------------------


def router_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None,
                copies: int, lam: float, eta: float) -> tuple[torch.Tensor, dict]:
    """Class-weighted soft cross-entropy over ``copies`` noisy copies, plus consistency.

    ``logits``: ``[copies * B, K]`` (copy-major); ``target``: ``[B, K]`` soft labels. The
    consistency term (Jeong & Shin 2020) is ``lam * mean_i KL(p_mean || p_i) + eta * H(p_mean)``.
    """
    log_p = F.log_softmax(logits, dim=1).view(copies, -1, logits.shape[1])
    w = target if weights is None else target * weights[None, :]
    ce = -(w[None] * log_p).sum(dim=2).mean()
    stats = {"ce": float(ce.detach())}
    loss = ce
    if lam > 0 or eta > 0:
        p = log_p.exp()
        p_mean = p.mean(dim=0)
        log_mean = p_mean.clamp_min(1e-12).log()
        kl = (p_mean[None] * (log_mean[None] - log_p)).sum(dim=2).mean()
        entropy = -(p_mean * log_mean).sum(dim=1).mean()
        loss = loss + lam * kl + eta * entropy
        stats.update(kl=float(kl.detach()), entropy=float(entropy.detach()))
    return loss, stats


def _router_lr(cfg: RouterConfig, steps: int) -> Callable[[int, int], float]:
    sched = cfg.train.schedule
    if sched.type == "cosine":
        return lambda e, i: cosine_lr(cfg.train.lr, e * steps + i, steps * cfg.train.epochs)
    if sched.type == "step":
        return lambda e, i: cfg.train.lr * sched.gamma ** sum(e >= m for m in sched.milestones)
    return lambda e, i: cfg.train.lr


def init_from_backbone(model: NormalizedModel, arch: str, expert, sigma_r: float) -> dict:
    """Start the router from ``expert``'s weights: every tensor but the classifier's last layer
    (whose shape differs: K experts, not the classes); all layers are then trained. Returns the
    record the router's card keeps. Raises ConfigError unless the architectures and sigmas match.
    """
    check_backbone(arch, expert, sigma_r)
    theirs = expert.model.net.state_dict()
    mine = model.net.state_dict()
    taken = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    model.net.load_state_dict(taken, strict=False)
    return {"expert": expert.name, "weights_sha256": expert.pin.weights_sha256,
            "tensors_taken": len(taken), "tensors_new": len(mine) - len(taken)}


def check_backbone(arch: str, expert, sigma_r: float) -> None:
    """Raise ConfigError unless ``expert`` can be the router's backbone: the same architecture
    as ``router.arch`` and the same sigma as the router's."""
    if expert.card.kind != "gaussian":
        raise ConfigError(f"router.backbone: {expert.name} is a {expert.card.kind} expert; a "
                          "backbone is a noise-trained network of the router's architecture")
    if expert.card.architecture != arch or expert.sigma != sigma_r:
        raise ConfigError(f"router.backbone: {expert.name} is {expert.card.architecture} at sigma "
                          f"{expert.sigma}; the router must be the same architecture at the same "
                          f"sigma (router.arch {arch}, router.sigma {sigma_r})")


def router_sigma(cfg: RouterConfig, experts) -> float:
    """``router.sigma``, defaulting to the largest expert sigma (warns when below it)."""
    largest = max(e.sigma for e in experts)
    sigma = cfg.router.sigma if cfg.router.sigma is not None else largest
    if sigma < largest:
        warnings.warn(f"router.sigma {sigma} is below the largest expert sigma {largest}; Dual RS "
                      "uses sigma_r >= max sigma_k", stacklevel=2)
    return float(sigma)


def load_config_experts(cfg: RouterConfig, registry=None, device: str = "cpu") -> list:
    """Load the config's experts, naming the failing entry; check they share one task."""
    from ..errors import RsrouterError
    from ..routing.router import check_compatible

    registry = registry or Registry()
    experts = []
    for i, ref in enumerate(cfg.experts):
        try:
            experts.append(registry.load(ref, device=device))
        except RsrouterError as e:
            raise ConfigError(f"experts[{i}] ({ref}): {e}") from e
    check_compatible(experts)
    datasets = {e.card.dataset for e in experts}
    if datasets != {cfg.data.dataset}:
        raise ConfigError(f"data.dataset is {cfg.data.dataset!r} but the experts were trained on "
                          f"{sorted(datasets)}")
    return experts


def train_router(cfg: RouterConfig, out: str | os.PathLike, **kw) -> Path:
    """Label, train and save a router for ``cfg``'s experts into the folder ``out``.

    Keyword arguments: ``experts`` and ``dataset`` (override loading them from the config, for
    custom tasks), ``registry``, ``device``, ``progress``, ``stop_after_epoch``. Labels are cached
    under ``out/.labels`` (keyed by the experts' hashes and the label settings) and training
    checkpoints under ``out/.train``; both resume. One process trains into ``out`` at a time.

    Raises:
        ConfigError: experts that cannot be loaded or do not share one task.
        ResumeError: ``out`` holds a router trained with other settings.
        LockedError: another process is training into ``out``.
    """
    with _writer_lock(out):
        return _train_router(cfg, Path(out), **kw)


def _train_router(
    cfg: RouterConfig,
    out: str | os.PathLike,
    *,
    experts: list | None = None,
    dataset: Dataset | None = None,
    registry=None,
    device: str = "cpu",
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> Path:
    settings = cfg.to_dict()
    finished = _finished_settings(out, "rs_router")
    if finished is not None:
        if finished == json.loads(json.dumps(settings)):
            return out
        raise ResumeError(f"{out} already holds a router trained with other settings; choose "
                          "another --out or delete the folder")
    experts = experts or load_config_experts(cfg, registry, device)
    sigma_r = router_sigma(cfg, experts)
    if cfg.router.backbone is not None:  # before the expensive labels
        check_backbone(cfg.router.arch, experts[cfg.experts.index(cfg.router.backbone)], sigma_r)
    dataset = dataset or router_dataset(cfg)
    labels = labels_for(cfg, experts, out, progress=progress, dataset=dataset)
    kept = labels.kept
    if int(kept.sum()) == 0:
        raise ConfigError("no training input is certified by any expert; check the experts and "
                          "labels.n / labels.alpha")
    images = torch.stack([dataset[int(i)][0] for i in labels.indices[kept]])
    targets = labels.soft_labels(cfg.labels.temperature, cfg.labels.target, cfg.labels.bands)
    weights = labels.class_weights().to(device) if cfg.train.class_weights else None

    info = dataset.info
    card = RouterCard(architecture=cfg.router.arch, input_size=info.input_size, mean=info.mean,
                      std=info.std, sigma=sigma_r, dataset=info.name,
                      experts=[ExpertRef.of(e, out) for e in experts])
    torch.manual_seed(cfg.seed)
    model = build_model(card.header, trust_code=True).to(device)  # router.arch of the user's config
    backbone = None if cfg.router.backbone is None else init_from_backbone(
        model, cfg.router.arch, experts[cfg.experts.index(cfg.router.backbone)], sigma_r)
    t = cfg.train
    if t.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum,
                                    weight_decay=t.weight_decay, nesterov=True)
    train_set = TensorImageDataset(images, targets, info)
    steps = math.ceil(len(train_set) / t.batch_size)
    copies = t.noise_copies

    def step(forward, x, y, gen, local):
        noise = torch.randn((copies, *x.shape), generator=gen)  # the whole batch's noise
        noise = torch.stack([local(n) for n in noise]).flatten(0, 1).to(x.device)
        x, y = local(x), local(y)
        xs = x.repeat(copies, 1, 1, 1)
        logits = forward(xs + sigma_r * noise)
        loss, stats = router_loss(logits, y, weights, copies, t.consistency.lam, t.consistency.eta)
        best = y.argmax(1)
        stats["agree"] = float((logits.view(copies, len(x), -1).mean(0).argmax(1) == best)
                               .float().mean())
        return loss, stats

    stats = fit(model, optimizer, train_set, t.batch_size, step,
                _router_lr(cfg, steps), epochs=t.epochs, steps_per_epoch=steps, seed=cfg.seed,
                out=out, settings=settings, device=device,
                desc=f"train router {cfg.router.arch} sigma={sigma_r}", progress=progress,
                stop_after_epoch=stop_after_epoch)
    if stats is None:
        return out
    if current().is_main:
        card.labels = {**cfg.to_dict()["labels"], **labels.summary()}
        card.training = {"settings": settings, "final": stats, "train_inputs": len(train_set),
                         "routing": routing_shares(model, images, sigma_r,
                                                   [e.name for e in experts], seed=cfg.seed)}
        if backbone is not None:
            card.training["backbone"] = backbone
        save_router(out, model.net.cpu(), card)
        _finish(out)
    current().barrier()
    return out


@torch.no_grad()
def routing_shares(model: NormalizedModel, images: torch.Tensor, sigma: float,
                   names: list[str], *, seed: int, batch_size: int = 1024) -> dict[str, float]:
    """Where the router sends ``images`` under one draw of its noise: share per expert (a check
    that it did not collapse onto one expert; not a certificate)."""
    model.eval()
    device = next(model.parameters()).device
    gen = noise_generator(seed, 0, "router-train")
    counts = torch.zeros(len(names), dtype=torch.long)
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        noisy = x + sigma * torch.randn(x.shape, generator=gen)
        counts += torch.bincount(model(noisy.to(device)).argmax(1).cpu(), minlength=len(names))
    total = max(1, int(counts.sum()))
    return {name: round(int(c) / total, 4) for name, c in zip(names, counts)}


def router_dataset(cfg: RouterConfig) -> Dataset:
    """The images a router is labelled and trained on: un-augmented (no random crops or
    flips), so that each label belongs to the very image the router sees (plus its noise)."""
    return load_dataset(cfg.data.dataset, cfg.data.split, cfg.data.root, augment=False)


def labels_for(cfg: RouterConfig, experts, out: str | os.PathLike, *, progress: bool = False,
               dataset: Dataset | None = None) -> RouterLabels:
    """The router labels of ``cfg`` and ``experts``, cached (and resumed) under ``out``."""
    dataset = dataset or router_dataset(cfg)
    key = cache_key(experts, cfg.labels, cfg.data.dataset, cfg.data.split, cfg.seed)
    return compute_labels(experts, dataset, cfg.labels, seed=cfg.seed, cache=cache_path(out, key),
                          key=key, progress=progress)
