"""Smoothed routers and certified routing (Dual RS, Sun, Mao, Vechev 2026).

A router is a classifier over experts, smoothed with its own noise ``sigma_r``; the routed
certificate composed from the router's and the chosen expert's counts is
:mod:`rsrouter.certify.routed` (the set certificate: :mod:`rsrouter.certify.set_certificate`).
Only the chosen expert is evaluated, so the cost is the router's plus one expert's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from .. import __version__
from ..cards.card import (
    CONFIG_FILE,
    README_FILE,
    Pin,
    _numbers,
    _optional,
    _require,
    build_model,
    check_architecture_name,
    check_claim,
    check_input_header,
    check_sha256,
    read_artifact,
    read_config,
)
from ..certify.smoothing import Smooth
from ..errors import (
    CardError,
    IntegrityError,
    SigmaNotServedError,
    UnknownExpertError,
)
from ..files import atomic_write_json, atomic_write_text
from ..models import Trust
from ..models.normalize import NormalizedModel
from ..registry.core import is_remote_source
from ..registry.expert import Expert, check_weight_sizes
from ..registry.weights import build_network, save_weights
from ..urls import public_url

if TYPE_CHECKING:  # load_routed's result (routed.py imports this module)
    from .routed import RoutedClassifier

# A router certifies on the experts' noise streams: one standard-normal draw per sample serves the
# router (scaled by sigma_r) and the chosen expert (scaled by its sigma); docs/theory.md shows
# that the routed certificate needs no independence between the two.
ROUTER_STAGES = ("select", "estimate")
ROUTER_PREDICT = "router-predict"


@dataclass
class ExpertRef:
    """How a router names one of its experts: where it lives, pinned by the sha256 of the
    config.json and weights the router was trained on.

    ``source`` is ``hf://org/name`` (with ``revision``, a commit sha) or a folder relative to the
    router's folder; ``name`` the registered name, tried when that folder is not there.
    """

    name: str
    source: str
    revision: str | None
    weights_sha256: str
    config_sha256: str
    sigma: float

    @classmethod
    def of(cls, expert: Expert, router_dir: str | os.PathLike) -> ExpertRef:
        """The record of ``expert`` (hashes of the bytes it was loaded from, never a claim)."""
        if expert.pin is None:
            raise IntegrityError(f"expert {expert.name!r} was not loaded from pinned files; load "
                                 "it with rsrouter.load_expert or Registry.load")
        if is_remote_source(expert.uri):  # recorded without credentials: a card is shared
            source, revision = public_url(expert.uri).rsplit("@", 1)
        else:
            source = os.path.relpath(Path(expert.uri).resolve(), Path(router_dir).resolve())
            revision = None
        return cls(expert.name, source, revision, expert.pin.weights_sha256,
                   expert.pin.config_sha256, expert.sigma)

    def pin(self, router: str) -> Pin:
        return Pin(self.weights_sha256, self.config_sha256,
                   f"router {router} (its record of expert {self.name!r})")

    def check(self, where: str) -> None:
        """Schema of one record: both hashes present, a Hub source pinned to a commit sha."""
        for key in ("name", "source"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise CardError(f"{where}.{key} must be a non-empty string")
        if self.revision is not None and not isinstance(self.revision, str):
            raise CardError(f"{where}.revision must be a commit sha or null")
        for key in ("weights_sha256", "config_sha256"):
            try:
                check_sha256(getattr(self, key), f"{where}.{key}")
            except IntegrityError as e:
                raise CardError(f"{e} (written by an older rsrouter? retrain the router)") from None
        if is_remote_source(self.source) != bool(self.revision):
            raise CardError(f"{where}: a remote source (hf:// or git+) needs a commit sha as "
                            f"revision, and only a remote has one (source {self.source!r}, "
                            f"revision {self.revision!r})")
        if not (isinstance(self.sigma, (int, float)) and not isinstance(self.sigma, bool)
                and self.sigma > 0):
            raise CardError(f"{where}.sigma must be > 0, got {self.sigma!r}")


@dataclass
class RouterCard:
    """config.json of a router folder: timm-style header plus an ``rs_router`` block."""

    architecture: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sigma: float
    dataset: str
    experts: list[ExpertRef]
    weights_sha256: str = ""
    labels: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    num_classes = num_experts  # the router's classes are its experts

    def to_config(self) -> dict[str, Any]:
        return {
            "architecture": self.architecture,
            "num_classes": self.num_experts,
            "pretrained_cfg": {"input_size": list(self.input_size), "mean": list(self.mean),
                               "std": list(self.std), "num_classes": self.num_experts},
            "rs_router": {
                "sigma": self.sigma, "dataset": self.dataset,
                "experts": [vars(e) for e in self.experts],
                "weights_sha256": self.weights_sha256, "labels": self.labels,
                "training": self.training, "results": self.results,
                "rsrouter_version": __version__,
            },
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> RouterCard:
        rs = _require(config, "rs_router", dict, where)
        cfg = _require(config, "pretrained_cfg", dict, where)
        experts = []
        for i, raw in enumerate(_require(rs, "experts", list, where, "rs_router.")):
            keys = {f.name for f in fields(ExpertRef)}
            if not isinstance(raw, dict) or set(raw) != keys:
                raise CardError(f"{where}: rs_router.experts[{i}] must have exactly the keys "
                                f"{sorted(keys)} (written by an older rsrouter? retrain the "
                                "router)")
            ref = ExpertRef(**raw)
            ref.check(f"{where}: rs_router.experts[{i}]")
            experts.append(ref)
        card = cls(architecture=_require(config, "architecture", str, where),
                   input_size=tuple(_numbers(cfg, "input_size", where, "pretrained_cfg.", int)),
                   mean=tuple(_numbers(cfg, "mean", where, "pretrained_cfg.")),
                   std=tuple(_numbers(cfg, "std", where, "pretrained_cfg.")),
                   sigma=_require(rs, "sigma", (int, float), where, "rs_router."),
                   dataset=_require(rs, "dataset", str, where, "rs_router."), experts=experts,
                   weights_sha256=_optional(rs, "weights_sha256", str, "", where, "rs_router."),
                   labels=_optional(rs, "labels", dict, {}, where, "rs_router."),
                   training=_optional(rs, "training", dict, {}, where, "rs_router."),
                   results=_optional(rs, "results", dict, {}, where, "rs_router."))
        check_input_header(card.input_size, card.mean, card.std, where)
        if not card.sigma > 0:
            raise CardError(f"{where}: rs_router.sigma must be > 0, got {card.sigma}")
        problem = check_architecture_name(card.architecture)
        if problem:
            raise CardError(f"{where}: architecture {problem}")
        if config.get("num_classes") != len(experts) or len(experts) < 2:
            raise CardError(f"{where}: num_classes ({config.get('num_classes')}) must equal the "
                            f"number of experts ({len(experts)}), at least 2")
        return card

    def build_model(self, trust_code: Trust = False, where: str = CONFIG_FILE) -> NormalizedModel:
        return build_model(self.architecture, self.num_experts, self.input_size, self.mean,
                           self.std, trust_code, where)


class SmoothedRouter(Smooth):
    """A smoothed classifier over experts, with its card (``router.card``)."""

    def __init__(self, model: NormalizedModel, card: RouterCard, *, source: str = "",
                 compile: bool = False, precision: str = "fp32") -> None:
        super().__init__(model, card.num_experts, card.sigma, compile=compile,
                         precision=precision, input_shape=card.input_size)
        self.model, self.card, self.source = model, card, source
        self.pin: Pin | None = None  # the hashes of the files it was loaded from

    def certify_batch(self, xs, n0, n, alpha, *, batch_size=1000, seed=0, indices=None,
                      stages=ROUTER_STAGES):
        """As :meth:`Smooth.certify_batch`, on the router's own noise streams by default."""
        return super().certify_batch(xs, n0, n, alpha, batch_size=batch_size, seed=seed,
                                     indices=indices, stages=stages)

    def predict_batch(self, xs, n, alpha, *, batch_size=1000, seed=0, indices=None,
                      stage=ROUTER_PREDICT):
        """As :meth:`Smooth.predict_batch`, on the router's own noise stream by default."""
        return super().predict_batch(xs, n, alpha, batch_size=batch_size, seed=seed,
                                     indices=indices, stage=stage)


def save_router(folder: str | os.PathLike, net: torch.nn.Module, card: RouterCard) -> Path:
    """Write model.safetensors, config.json and README.md; sets ``card.weights_sha256``."""
    card.weights_sha256 = save_weights(folder, net)
    write_router_card(folder, card)
    return Path(folder)


def write_router_card(folder: str | os.PathLike, card: RouterCard) -> None:
    folder = Path(folder)
    atomic_write_json(folder / CONFIG_FILE, card.to_config())
    front = {"library_name": "rsrouter", "license": "apache-2.0",
             "tags": ["randomized-smoothing", "certified-robustness", "dual-rs", "router",
                      card.dataset],
             "datasets": [card.dataset], "architecture": card.architecture,
             "rs_router": {"sigma": card.sigma, "weights_sha256": card.weights_sha256,
                           "experts": [f"{e.name} (sigma {e.sigma})" for e in card.experts]}}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# rsrouter router for {card.dataset}", "",
             f"A smoothed router (`{card.architecture}`, noise sigma_r = {card.sigma}) choosing "
             f"per input among {card.num_experts} randomized-smoothing experts (Dual RS). The "
             "routed prediction is certified within min(R_router, R_expert).", "",
             "| # | expert | sigma | source | weights sha256 |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {i} | {e.name} | {e.sigma} | {e.source}{'@' + e.revision if e.revision else ''}"
              f" | `{e.weights_sha256[:16]}...` |" for i, e in enumerate(card.experts)]
    lines += ["", "```python", "import rsrouter",
              'routed = rsrouter.load_routed("path/to/this/folder")',
              "cert = routed.certify(x, n0=100, n=10_000, alpha=0.001)", "```", ""]
    for title, block in (("Labels", card.labels), ("Training", card.training)):
        if block:
            lines += [f"## {title}", "", "```yaml", yaml.safe_dump(block, sort_keys=False).rstrip(),
                      "```", ""]
    if card.results:
        lines += ["## Results", "", "```yaml", yaml.safe_dump(card.results, sort_keys=False)
                  .rstrip(), "```", ""]
    atomic_write_text(folder / README_FILE, "\n".join(lines))


def read_router_card(folder: str | os.PathLike) -> RouterCard:
    """Read and validate a router's config.json (for display: no hash check, nothing imported)."""
    config, where = read_config(folder, "a router")
    return RouterCard.from_config(config, where)


def load_router(folder: str | os.PathLike, *, trust_code: Trust | None = None,
                device: str | torch.device = "cpu", compile: bool = False,
                precision: str = "fp32") -> SmoothedRouter:
    """Load a router folder: read once, check its card and the card's weights hash, build.

    ``trust_code``: True allows a ``module:factory`` architecture; None (default) allows only the
    modules under ``trusted_modules:`` in the user's registry file.

    Raises:
        CardError, IntegrityError, UntrustedCodeError (a ``module:factory`` architecture
        without ``trust_code``).
    """
    if trust_code is None:
        from ..registry.core import user_trusted_modules

        trust_code = user_trusted_modules()
    files = read_artifact(folder)
    card = RouterCard.from_config(files.config, str(Path(folder) / CONFIG_FILE))
    check_claim(card.weights_sha256, files, "rs_router.weights_sha256")
    check_weight_sizes(card, files, trust_code)  # before any network is built
    model = build_network(card, files, trust_code)
    router = SmoothedRouter(model.to(device).eval(), card, source=str(folder), compile=compile,
                            precision=precision)
    router.pin = files.pin()
    return router


def _load_ref(ref: ExpertRef, router_dir: Path, registry, trust_code: bool, **kw) -> Expert:
    """The expert ``ref`` names: its pinned source, else its registered name; the router's pin
    is checked either way."""
    pin = ref.pin(str(router_dir))
    if is_remote_source(ref.source):
        target = f"{ref.source}@{ref.revision}"
        entry = registry.entries().get(ref.name)
        if entry is not None and entry.is_remote and entry.revision == ref.revision \
                and public_url(entry.source) == ref.source:
            target = ref.name  # its registration may hold the credentials the record leaves out
    else:
        folder = Path(ref.source)
        folder = (folder if folder.is_absolute() else router_dir / folder).resolve()
        target = str(folder) if folder.is_dir() else ref.name
    try:
        expert = registry.load(target, pin=pin, trust_code=trust_code, sigma=ref.sigma, **kw)
    except SigmaNotServedError as e:
        served = ", ".join(f"{v:g}" for v in e.served)
        raise IntegrityError(f"router {router_dir} was trained with expert {ref.name!r} at sigma "
                             f"{ref.sigma}, but {target} has sigma {served}") from None
    except UnknownExpertError:
        raise UnknownExpertError(f"router {router_dir}: expert {ref.name!r} is not registered and "
                                 f"its folder {ref.source} (relative to the router) is not there; "
                                 f"register it with `rsrouter experts register SOURCE --name "
                                 f"{ref.name}`") from None
    expert.name = ref.name  # the name the router's records and results use
    if expert.sigma != float(ref.sigma):
        raise IntegrityError(f"router {router_dir} was trained with expert {ref.name!r} at sigma "
                             f"{ref.sigma}, but {expert.uri} has sigma {expert.sigma}")
    return expert


def load_routed(folder: str | os.PathLike, *, device: str | torch.device = "cpu",
                registry=None, alpha_split: float = 0.5, compile: bool = False,
                precision: str = "fp32", trust_code: bool = False) -> RoutedClassifier:
    """The router in ``folder`` with its experts, each checked against the router's record of
    the sha256 of its config.json and weights, and of its sigma.

    Raises:
        IntegrityError: an expert's bytes or sigma differ from what the router was trained on,
            or a hash is empty.
        UnknownExpertError: an expert cannot be found.
        UntrustedCodeError: a card names Python code without the opt-in (``trust_code``, or
            ``trusted_modules`` in the user's registry file).
    """
    from ..registry.core import Registry
    from .routed import RoutedClassifier

    registry = registry or Registry()
    kw = dict(device=device, compile=compile, precision=precision)
    router = load_router(folder, trust_code=registry.trust_for(trust_code), **kw)
    experts = [_load_ref(ref, Path(folder), registry, trust_code, **kw)
               for ref in router.card.experts]
    return RoutedClassifier(router, experts, alpha_split=alpha_split)
