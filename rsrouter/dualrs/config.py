"""The Dual RS config (YAML): one classifier for every candidate sigma, its variance estimator,
the rounds that alternate between them, and the validation benchmark that judges each round.

Example (benchmarks/configs/dualrs-fashion-mnist.yaml)::

    name: fashion-mnist-dualrs
    data: {dataset: fashion-mnist}
    sigmas: [0.25, 0.5, 1.0]
    classifier: {arch: cnn_small, epochs: 30, batch_size: 128, lr: 0.05}
    finetune: {epochs: 5, lr: 0.01, assign_samples: 32}
    estimator:
      router: {arch: cnn_small, sigma: 1.0, backbone: classifier}
      labels: {n: 100, alpha: 0.001, temperature: 0.2, subset: 12000}
      train: {epochs: 30, lr: 0.002, schedule: {type: step, milestones: [10, 20]}}
    validation:
      inputs: {every: 10, first: 500}
      protocol: {n0: 100, n: 10000, alpha: 0.001, batch_size: 2500}
      radii: [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5]
    select: acr
    seed: 0

``estimator`` takes the keys of a router config (docs/routers.md) but ``experts`` and ``data``:
its experts are the classifier at each sigma. ``router.backbone: classifier`` starts the
estimator from the classifier's weights (its sigma must be a candidate). Training always uses
the train split; every round is benchmarked on the validation split; ``select`` picks the round
on those validation results (``acr``: the Dual RS certificate's ACR; ``max_regret``: the
smallest max regret against the classifier's global sigmas, ties by ACR; ``claims``: the paper's
claims, the largest worst margin of "dominated by no global sigma" and "above the cascade at
r = 0.5, 0.75, 1", ties by ACR; see :func:`rsrouter.dualrs.rounds.claims_margin`).
``certificate`` (``pinned``, the default, or ``set``) is the Dual RS certificate ``select`` judges.
``classifier.pretrained`` (a card serving exactly ``sigmas``, relative to the config file) is
round 0's classifier instead of training one; it is copied into the run and pinned by sha256.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from ..bench.config import parse_bench_config
from ..errors import ConfigError
from ..protocol import Protocol
from ..routing.config import (
    Consistency,
    DataSpec,
    LabelSpec,
    RouterConfig,
    RouterSpec,
    TrainSpec,
    _build,
    read_config_file,
)
from ..routing.config import validate as validate_router

SELECT_RULES = ("acr", "max_regret", "claims")
CERTIFICATES = ("pinned", "set")


@dataclass
class ClassifierSpec:
    """Round 0: one classifier trained with each example's sigma drawn from the candidates."""

    arch: str = "cnn_small"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    sigma_weights: list[float] | None = None  # None: uniform over the candidates
    noise_copies: int = 1
    consistency: Consistency = field(default_factory=Consistency)
    pretrained: str | None = None  # a classifier card serving the sigmas: round 0 starts from it


@dataclass
class FinetuneSpec:
    """Rounds >= 1: fine-tune the classifier at the sigma the current estimator assigns."""

    epochs: int = 5
    batch_size: int = 128
    lr: float = 0.01
    assign_samples: int = 32  # noisy draws of the smoothed estimator per training input


@dataclass
class EstimatorSpec:
    router: RouterSpec = field(default_factory=RouterSpec)
    labels: LabelSpec = field(default_factory=LabelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)


@dataclass
class DualRSConfig:
    name: str
    data: DataSpec
    sigmas: list[float]
    classifier: ClassifierSpec = field(default_factory=ClassifierSpec)
    finetune: FinetuneSpec = field(default_factory=FinetuneSpec)
    estimator: EstimatorSpec = field(default_factory=EstimatorSpec)
    validation: dict = field(default_factory=dict)  # bench keys: inputs, protocol, radii
    select: str = "acr"
    certificate: str = "pinned"  # the Dual RS certificate that select judges: pinned or set
    seed: int = 0
    source: str = ""  # the file it came from (not a key)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        # keys added later are left out at their defaults: earlier runs keep their config sha256
        if d["classifier"]["pretrained"] is None:
            d["classifier"].pop("pretrained")
        for key, default in (("certify_n", None), ("cost", 0.0)):
            if d["estimator"]["labels"][key] == default:
                d["estimator"]["labels"].pop(key)
        if d["certificate"] == "pinned":
            d.pop("certificate")
        for block in (d["classifier"], d["estimator"]["train"]):
            c = block.pop("consistency")
            block["consistency"] = {"lambda": c["lam"], "eta": c["eta"]}
        return d


_NESTED = {"classifier": ClassifierSpec, "finetune": FinetuneSpec, "estimator": EstimatorSpec}


def parse_dualrs_config(raw: Any, source: str = "") -> DualRSConfig:
    """Build and validate a :class:`DualRSConfig`. Raises ConfigError naming the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping")
    for key in ("name", "data", "sigmas"):
        if key not in raw:
            raise ConfigError(f"{key}: missing key (required: name, data, sigmas)")
    cfg = _build(DualRSConfig, raw, "", _NESTED)
    cfg.source = source
    return validate(cfg)


def validate(cfg: DualRSConfig) -> DualRSConfig:
    """Value checks (the estimator's through the router config's own validation)."""
    if not isinstance(cfg.name, str) or not cfg.name or any(c in cfg.name for c in " /\\:#"):
        raise ConfigError(f"name: a non-empty name without spaces or '/\\:#', got {cfg.name!r}")
    sigmas = cfg.sigmas
    if (not isinstance(sigmas, list) or len(sigmas) < 2 or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in sigmas)
            or sorted(set(sigmas)) != sigmas):
        raise ConfigError(f"sigmas: at least 2 increasing noise levels > 0 (pixel units), got "
                          f"{sigmas!r}")
    if cfg.data.split != "train":
        raise ConfigError("data.split: Dual RS trains on the train split (rounds are judged on "
                          f"validation, test is for the end), got {cfg.data.split!r}")
    c = cfg.classifier
    w = c.sigma_weights
    if w is not None and (len(w) != len(sigmas) or any(v < 0 for v in w) or sum(w) <= 0):
        raise ConfigError(f"classifier.sigma_weights: one weight >= 0 per sigma, not all 0; got "
                          f"{w}")
    for key, ok in (("classifier.epochs", c.epochs >= 1), ("classifier.batch_size",
                    c.batch_size >= 1), ("classifier.lr", c.lr > 0),
                    ("classifier.noise_copies", c.noise_copies >= 1),
                    ("finetune.epochs", cfg.finetune.epochs >= 1),
                    ("finetune.batch_size", cfg.finetune.batch_size >= 1),
                    ("finetune.lr", cfg.finetune.lr > 0),
                    ("finetune.assign_samples", cfg.finetune.assign_samples >= 1)):
        if not ok:
            raise ConfigError(f"{key}: must be >= 1 (a rate: > 0)")
    if (c.consistency.lam > 0 or c.consistency.eta > 0) and c.noise_copies < 2:
        raise ConfigError("classifier.noise_copies: consistency regularization needs >= 2")
    if cfg.select not in SELECT_RULES:
        raise ConfigError(f"select: one of {', '.join(SELECT_RULES)}, got {cfg.select!r}")
    if cfg.certificate not in CERTIFICATES:
        raise ConfigError(f"certificate: one of {', '.join(CERTIFICATES)}, got "
                          f"{cfg.certificate!r}")
    if c.pretrained is not None:
        if not isinstance(c.pretrained, str) or not c.pretrained:
            raise ConfigError(f"classifier.pretrained: a classifier folder, got {c.pretrained!r}")
        # kept as written (the run's config sha256 must not depend on the working directory);
        # resolved against the config file when used (loop.copy_pretrained)
    est = cfg.estimator
    if est.router.backbone not in (None, "classifier"):
        raise ConfigError("estimator.router.backbone: 'classifier' (start from the classifier's "
                          f"weights) or null, got {est.router.backbone!r}")
    refs = [f"classifier#sigma={float(s)!r}" for s in sigmas]
    sigma_r = est.router.sigma if est.router.sigma is not None else max(sigmas)
    if est.router.backbone is not None and sigma_r not in sigmas:
        raise ConfigError(f"estimator.router.backbone: the estimator's sigma {sigma_r} must be a "
                          f"candidate sigma {sigmas} to start from the classifier at that sigma")
    if est.labels.cost != 0:
        raise ConfigError("estimator.labels.cost: the Dual RS estimator shares no expert's "
                          "forward pass (it is not a frozen head), so a cost term saves nothing; "
                          "drop the key")
    try:
        validate_router(RouterConfig(experts=refs, data=cfg.data, router=dataclasses.replace(
            est.router, backbone=None), labels=est.labels, train=est.train, seed=cfg.seed))
    except ConfigError as e:
        raise ConfigError(f"estimator.{e}") from None
    protocol = validation_protocol(cfg)
    if cfg.select == "claims" and not {0.5, 0.75, 1.0} <= set(protocol.radii):
        raise ConfigError("select: claims needs validation.radii to include 0.5, 0.75 and 1 "
                          "(where the cascade must be beaten)")
    return cfg


def validation_protocol(cfg: DualRSConfig) -> Protocol:
    """The protocol (radius grid included) every round is benchmarked with on the validation
    split. Raises ConfigError naming the key of ``validation`` that is wrong."""
    raw = cfg.validation if isinstance(cfg.validation, dict) else None
    if raw is None or set(raw) - {"inputs", "protocol", "radii"}:
        raise ConfigError("validation: a mapping of inputs, protocol and radii (the benchmark "
                          "of every round on the validation split)")
    try:
        bench = parse_bench_config({**raw, "name": cfg.name, "data": {
            "dataset": cfg.data.dataset, "split": "validation"}, "methods": [
                {"type": "envelope"}, {"type": "expert", "expert": "e"}]})
    except ConfigError as e:
        raise ConfigError(f"validation: {e}") from None
    return bench.protocol


def load_dualrs_config(path: str | os.PathLike) -> DualRSConfig:
    """Read a Dual RS YAML config. Raises ConfigError (missing file, bad YAML, keys, values)."""
    return read_config_file(path, parse_dualrs_config, "Dual RS config")
