"""Router training (Dual RS): label the inputs with each expert's certified radius, train a
classifier over experts on noisy copies at the router's sigma, save it with its card."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..cards.router import ExpertRef, RouterCard
from ..certify.noise import noise_generator
from ..data import TensorImageDataset, load_dataset
from ..distributed import current
from ..errors import ConfigError, RsrouterError
from ..files import check_resume
from ..models.normalize import NormalizedModel
from ..registry.core import Registry
from ..registry.weights import build_model, save_router
from ..routing.config import RouterConfig
from ..routing.labels import RouterLabels, cache_key, cache_path, compute_labels
from ..routing.routed import check_compatible
from .fit import cosine_lr, finish, finished_settings, fit, writer_lock
from .loss import router_loss


def _router_step(cfg: RouterConfig, sigma_r: float, weights: torch.Tensor | None,
                 frozen: torch.nn.Module | None = None):
    """The training step of :func:`.fit.fit`: ``noise_copies`` noisy copies at ``sigma_r``,
    class-weighted soft cross-entropy on the labels (plus consistency). A ``frozen`` trunk is
    put back in eval mode at each step (fit puts the model in train mode every epoch), so its
    batch-norm statistics stay the expert's."""
    t = cfg.train
    copies = t.noise_copies

    def step(forward, x, y, gen, local):
        if frozen is not None:
            frozen.eval()
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

    return step


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


def freeze_trunk(model: NormalizedModel, expert) -> torch.nn.Module:
    """Freeze the router's feature layers (``net.features``, taken from ``expert``) and return
    them: the router becomes a head on the expert's features.

    Raises:
        ConfigError: an architecture without a ``features`` / ``head`` split, or features that
            differ from the expert's.
    """
    trunk = getattr(model.net, "features", None)
    theirs = getattr(expert.model.net, "features", None)
    if not isinstance(trunk, torch.nn.Module) or not hasattr(model.net, "head") or theirs is None:
        raise ConfigError("router.frozen needs an architecture with `features` and `head` "
                          "layers (cnn_small, cnn_tiny)")
    mine, ref = trunk.state_dict(), theirs.state_dict()
    if mine.keys() != ref.keys() or not all(torch.equal(mine[k], ref[k].to(mine[k].device))
                                            for k in mine):
        raise ConfigError(f"router.frozen: the router's features differ from {expert.name}'s")
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk.eval()


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
    with writer_lock(out):
        return _train_router(cfg, Path(out), **kw)


def _train_router(
    cfg: RouterConfig,
    out: Path,
    *,
    experts: list | None = None,
    dataset: Dataset | None = None,
    registry=None,
    device: str = "cpu",
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> Path:
    settings = cfg.to_dict()
    finished = finished_settings(out, "rs_router")
    if finished is not None:
        check_resume(out, settings, finished, "choose another --out or delete the folder")
        return out
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
    shared = cfg.experts.index(cfg.router.backbone) if cfg.router.frozen else None
    targets = labels.soft_labels(cfg.labels.temperature, cfg.labels.target, cfg.labels.bands,
                                 cost=cfg.labels.cost, shared=shared)
    weights = labels.class_weights().to(device) if cfg.train.class_weights else None

    info = dataset.info
    card = RouterCard(architecture=cfg.router.arch, input_size=info.input_size, mean=info.mean,
                      std=info.std, sigma=sigma_r, dataset=info.name,
                      experts=[ExpertRef.of(e, out) for e in experts])
    torch.manual_seed(cfg.seed)
    model = build_model(card.header, trust_code=True).to(device)  # router.arch of the user's config
    backbone = None if cfg.router.backbone is None else init_from_backbone(
        model, cfg.router.arch, experts[cfg.experts.index(cfg.router.backbone)], sigma_r)
    frozen = None
    if cfg.router.frozen:
        frozen = freeze_trunk(model, experts[cfg.experts.index(cfg.router.backbone)])
        card.shares_forward_with = experts[cfg.experts.index(cfg.router.backbone)].name
    t = cfg.train
    params = [p for p in model.parameters() if p.requires_grad]
    if t.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    else:
        optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum,
                                    weight_decay=t.weight_decay, nesterov=True)
    train_set = TensorImageDataset(images, targets, info)
    steps = math.ceil(len(train_set) / t.batch_size)
    step = _router_step(cfg, sigma_r, weights, frozen)
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
        finish(out)
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
