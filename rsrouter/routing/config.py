"""The router plugin config (YAML): schema, defaults and validation.

Every error names the key (``train.consistency.lambda``) and what is allowed. Example::

    experts: [fashion-mnist-sigma0.25, fashion-mnist-sigma0.50, fashion-mnist-sigma1.00]
    router: {arch: cnn_tiny}            # sigma defaults to the largest expert sigma
    labels: {n: 100, alpha: 0.001, temperature: 1.0, subset: 20000}
    train:
      epochs: 30
      optimizer: adamw
      lr: 0.01
      schedule: {type: step, milestones: [10, 20], gamma: 0.5}
      noise_copies: 2
      consistency: {lambda: 1.0, eta: 0.5}
      class_weights: true
    data: {dataset: fashion-mnist, split: train}
    seed: 0
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, UnknownArchitectureError
from ..models import resolve_architecture
from ..protocol import RADII
from ..urls import public_url

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("step", "cosine", "constant")


@dataclass
class RouterSpec:
    arch: str = "cnn_tiny"
    sigma: float | None = None  # None: the largest expert sigma
    backbone: str | None = None  # one of experts: start from its weights (same arch and sigma)
    frozen: bool = False  # backbone's feature layers kept as they are: a head on its features


@dataclass
class LabelSpec:
    n: int = 100
    alpha: float = 0.001
    temperature: float = 1.0
    target: str = "softmax"  # softmax: softmax(R / T); bands: credit per grid radius (labels.py)
    bands: list[float] = field(default_factory=lambda: list(RADII))
    subset: int | None = None  # None: every training input
    batch_size: int = 2500
    certify_n: int | None = None  # radii projected to a certification with this n (labels.py)
    cost: float = 0.0  # weight exp(-cost) on experts whose forward pass the router does not share


@dataclass
class Consistency:
    lam: float = 0.0  # YAML key: lambda
    eta: float = 0.0


@dataclass
class Schedule:
    type: str = "step"
    milestones: list[int] = field(default_factory=lambda: [30, 60])
    gamma: float = 0.5


@dataclass
class TrainSpec:
    epochs: int = 90
    batch_size: int = 256
    optimizer: str = "adamw"
    lr: float = 0.01
    weight_decay: float = 0.01
    momentum: float = 0.9
    schedule: Schedule = field(default_factory=Schedule)
    noise_copies: int = 2
    consistency: Consistency = field(default_factory=Consistency)
    class_weights: bool = True


@dataclass
class DataSpec:
    dataset: str = ""
    split: str = "train"
    root: str | None = None


@dataclass
class RouterConfig:
    """A validated router config. ``experts`` are registry names, folders or hf:// URIs."""

    experts: list[str]
    data: DataSpec
    router: RouterSpec = field(default_factory=RouterSpec)
    labels: LabelSpec = field(default_factory=LabelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    seed: int = 0
    source: str = ""  # the file it came from (not a key)

    def to_dict(self) -> dict[str, Any]:
        """The config as a router card records it: expert sources without credentials."""
        d = dataclasses.asdict(self)
        d.pop("source")
        d["experts"] = [public_url(e) for e in d["experts"]]
        if d["router"]["backbone"] is not None:
            d["router"]["backbone"] = public_url(d["router"]["backbone"])
        for key, default in (("certify_n", None), ("cost", 0.0)):
            if d["labels"][key] == default:  # routers trained before the key keep their settings
                d["labels"].pop(key)
        d["train"]["consistency"] = {"lambda": self.train.consistency.lam,
                                     "eta": self.train.consistency.eta}
        return d


def _build(cls, raw: Any, path: str, nested: dict | None = None):
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types recursively
    (``nested``: field name -> dataclass, besides the router config's own)."""
    nested = {**_NESTED, **(nested or {})}
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping, got {type(raw).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    aliases = {"lambda": "lam"}
    kwargs = {}
    for key, value in raw.items():
        attr = aliases.get(key, key)
        if attr not in names:
            allowed = sorted({k for k in names if k != "lam"} | ({"lambda"} if "lam" in names
                                                                  else set()))
            raise ConfigError(f"{path}.{key}: unknown key; allowed: {', '.join(allowed)}"
                              .lstrip("."))
        kwargs[attr] = _coerce(names[attr], value, f"{path}.{key}".lstrip("."), nested)
    try:
        return cls(**kwargs)
    except TypeError as e:
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING and f.name != "source"]
        raise ConfigError(f"{path or 'config'}: missing key(s) {', '.join(missing)}") from e


LABEL_TARGETS = ("softmax", "bands")
_NESTED = {"router": RouterSpec, "labels": LabelSpec, "train": TrainSpec, "data": DataSpec,
           "schedule": Schedule, "consistency": Consistency}


def _coerce(f: dataclasses.Field, value: Any, path: str, nested: dict | None = None) -> Any:
    nested = nested or _NESTED
    if f.name in nested:
        return _build(nested[f.name], value, path, nested)
    kind = str(f.type)
    if value is None:
        if "None" in kind:
            return None
        raise ConfigError(f"{path}: must not be empty")
    if kind.startswith("int") and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f"{path}: must be an integer, got {value!r}")
    if kind.startswith("float") and not (isinstance(value, (int, float))
                                         and not isinstance(value, bool)):
        raise ConfigError(f"{path}: must be a number, got {value!r}")
    if kind.startswith("bool") and not isinstance(value, bool):
        raise ConfigError(f"{path}: must be true or false, got {value!r}")
    if kind.startswith("str") and not isinstance(value, str):
        raise ConfigError(f"{path}: must be a string, got {value!r}")
    if kind.startswith("list") and not isinstance(value, list):
        raise ConfigError(f"{path}: must be a list, got {value!r}")
    return value


def validate(cfg: RouterConfig) -> RouterConfig:
    """Value checks that do not need the experts (those are checked when they are loaded)."""
    if not isinstance(cfg.experts, list) or len(cfg.experts) < 2:
        raise ConfigError("experts: list at least 2 experts (registry names, folders or hf:// "
                          f"URIs), got {cfg.experts!r}")
    if not all(isinstance(e, str) and e for e in cfg.experts):
        raise ConfigError(f"experts: every entry must be a non-empty string, got {cfg.experts!r}")
    if len(set(cfg.experts)) != len(cfg.experts):
        raise ConfigError(f"experts: duplicates in {cfg.experts}")
    if not cfg.data.dataset:
        raise ConfigError("data.dataset: missing key (digits, fashion-mnist, cifar10, imagenet)")
    if cfg.data.split != "train":
        raise ConfigError(f"data.split: a router learns on train (the validation split is kept "
                          f"for choosing among routers, test for the end), got {cfg.data.split!r}")
    try:
        resolve_architecture(cfg.router.arch, trust_code=True)  # the user's own config
    except UnknownArchitectureError as e:
        raise ConfigError(f"router.arch: {e}") from e
    if cfg.router.backbone is not None and cfg.router.backbone not in cfg.experts:
        raise ConfigError(f"router.backbone: {cfg.router.backbone!r} must be one of experts "
                          f"({', '.join(cfg.experts)})")
    if cfg.router.frozen and cfg.router.backbone is None:
        raise ConfigError("router.frozen: a frozen router is a head on an expert's features; "
                          "name that expert as router.backbone")
    if cfg.labels.cost > 0 and not cfg.router.frozen:
        raise ConfigError("labels.cost: only a router that shares an expert's forward pass "
                          "(router.frozen with router.backbone) saves passes by choosing it; "
                          "set router.frozen: true or drop labels.cost")
    if cfg.router.sigma is not None and not cfg.router.sigma > 0:
        raise ConfigError(f"router.sigma: must be > 0 (pixel units), got {cfg.router.sigma}")
    checks = [
        ("labels.n", cfg.labels.n >= 1, "an integer >= 1"),
        ("labels.alpha", 0 < cfg.labels.alpha < 1, "in (0, 1)"),
        ("labels.temperature", cfg.labels.temperature > 0, "> 0"),
        ("labels.target", cfg.labels.target in LABEL_TARGETS, f"one of {LABEL_TARGETS}"),
        ("labels.bands", bool(cfg.labels.bands) and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and b >= 0
            for b in cfg.labels.bands) and 0 in cfg.labels.bands,
         "a non-empty list of radii >= 0 that includes 0 (every kept input earns credit there)"),
        ("labels.subset", cfg.labels.subset is None or cfg.labels.subset >= 1, ">= 1 or null"),
        ("labels.certify_n", cfg.labels.certify_n is None or cfg.labels.certify_n >= 1,
         ">= 1 (the n of the certification the router serves) or null"),
        ("labels.batch_size", cfg.labels.batch_size >= 1, ">= 1"),
        ("labels.cost", 0 <= cfg.labels.cost < 100, "in [0, 100) (0: no cost term)"),
        ("train.epochs", cfg.train.epochs >= 1, ">= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, ">= 1"),
        ("train.lr", cfg.train.lr > 0, "> 0"),
        ("train.weight_decay", cfg.train.weight_decay >= 0, ">= 0"),
        ("train.noise_copies", cfg.train.noise_copies >= 1, ">= 1"),
        ("train.consistency.lambda", cfg.train.consistency.lam >= 0, ">= 0"),
        ("train.consistency.eta", cfg.train.consistency.eta >= 0, ">= 0"),
        ("train.schedule.gamma", 0 < cfg.train.schedule.gamma <= 1, "in (0, 1]"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}: must be {allowed}")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: {cfg.train.optimizer!r} is not one of {OPTIMIZERS}")
    if cfg.train.schedule.type not in SCHEDULES:
        raise ConfigError(f"train.schedule.type: {cfg.train.schedule.type!r} is not one of "
                          f"{SCHEDULES}")
    if cfg.train.consistency.lam > 0 and cfg.train.noise_copies < 2:
        raise ConfigError("train.noise_copies: consistency regularization needs >= 2 noise "
                          "copies")
    return cfg


def parse_config(raw: Any, source: str = "") -> RouterConfig:
    """Build and validate a :class:`RouterConfig` from a mapping. Raises ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping")
    for key in ("experts", "data"):
        if key not in raw:
            raise ConfigError(f"{key}: missing key (required: experts, data)")
    cfg = _build(RouterConfig, raw, "")
    cfg.source = source
    return validate(cfg)


def read_config_file(path: str | os.PathLike, parse, what: str = "config file"):
    """``parse(raw, source)`` of the YAML file ``path``; every ConfigError names the file.

    Raises:
        ConfigError: the file is missing, not YAML, or ``parse`` refuses it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return parse(raw, str(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_config(path: str | os.PathLike) -> RouterConfig:
    """Read a YAML config. Raises ConfigError (file missing, bad YAML, bad keys or values)."""
    return read_config_file(path, parse_config)
