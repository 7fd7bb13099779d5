"""Router cards: a router folder's ``config.json``, the header every card has plus an
``rs_router`` block recording each expert it chooses among (:class:`ExpertRef`), pinned by the
sha256 of the files the router was trained on. Data only: :mod:`rsrouter.routing.load` builds
routers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import yaml

from .. import __version__
from ..certify.fallback import DEFAULT_SHARE
from ..errors import CardError, IntegrityError
from ..files import atomic_write_json, atomic_write_text
from ..urls import public_url
from .header import Header, check_header, optional, read_inputs, require
from .pins import (
    CONFIG_FILE,
    README_FILE,
    ArtifactFiles,
    Pin,
    check_claim,
    check_sha256,
    read_config,
)
from .refs import is_remote_source


class PinnedExpert(Protocol):
    """What a router records of a loaded expert (:class:`rsrouter.registry.expert.Expert`)."""

    name: str
    uri: str
    pin: Pin | None
    sigma: float


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
    def of(cls, expert: PinnedExpert, router_dir: str | os.PathLike) -> ExpertRef:
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
    # the expert whose feature layers the router's network holds unchanged (same sigma): its
    # vote and that expert's come from one forward pass (rsrouter.routing.load ties them)
    shares_forward_with: str | None = None
    # the certificate chosen for it on validation: {"kind": pinned | set | lazy-set |
    # lazy-set+cascade, "margin", "alpha_split", "fallback_share", "chosen_on"}; empty: pinned
    # (what rsrouter 0.2 certified)
    certificate: dict[str, Any] = field(default_factory=dict)

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
                "shares_forward_with": self.shares_forward_with,
                "certificate": self.certificate, "rsrouter_version": __version__,
            },
        }

    @property
    def header(self) -> Header:
        """The router's network: ``architecture`` with one output per expert."""
        return Header(self.architecture, self.num_experts, tuple(self.input_size),
                      tuple(self.mean), tuple(self.std))

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> RouterCard:
        """Parse and validate a router's ``config.json`` dict.

        Raises:
            CardError: naming the field that is missing or wrong.
        """
        rs = require(config, "rs_router", dict, where)
        require(config, "pretrained_cfg", dict, where)
        experts = []
        for i, raw in enumerate(require(rs, "experts", list, where, "rs_router.")):
            keys = {f.name for f in fields(ExpertRef)}
            if not isinstance(raw, dict) or set(raw) != keys:
                raise CardError(f"{where}: rs_router.experts[{i}] must have exactly the keys "
                                f"{sorted(keys)} (written by an older rsrouter? retrain the "
                                "router)")
            ref = ExpertRef(**raw)
            ref.check(f"{where}: rs_router.experts[{i}]")
            experts.append(ref)
        architecture, input_size, mean, std = read_inputs(config, where)
        card = cls(architecture=architecture, input_size=input_size, mean=mean, std=std,
                   sigma=require(rs, "sigma", (int, float), where, "rs_router."),
                   dataset=require(rs, "dataset", str, where, "rs_router."), experts=experts,
                   weights_sha256=optional(rs, "weights_sha256", str, "", where, "rs_router."),
                   labels=optional(rs, "labels", dict, {}, where, "rs_router."),
                   training=optional(rs, "training", dict, {}, where, "rs_router."),
                   results=optional(rs, "results", dict, {}, where, "rs_router."),
                   shares_forward_with=optional(rs, "shares_forward_with", str, None, where,
                                                "rs_router."),
                   certificate=optional(rs, "certificate", dict, {}, where, "rs_router."))
        if config.get("num_classes") != len(experts) or len(experts) < 2:
            raise CardError(f"{where}: num_classes ({config.get('num_classes')}) must equal the "
                            f"number of experts ({len(experts)}), at least 2")
        card.validate(where)
        return card

    def validate(self, where: str = CONFIG_FILE) -> None:
        """Schema check of the values: the header, as every card's, and the router's sigma."""
        check_header(self.header, where)
        if not (math.isfinite(self.sigma) and self.sigma > 0):
            raise CardError(f"{where}: rs_router.sigma must be > 0, got {self.sigma}")
        if self.shares_forward_with is not None:
            ref = next((e for e in self.experts if e.name == self.shares_forward_with), None)
            if ref is None or ref.sigma != self.sigma:
                raise CardError(f"{where}: rs_router.shares_forward_with must name one of its "
                                f"experts at the router's sigma {self.sigma}, got "
                                f"{self.shares_forward_with!r}")
        check_certificate(self.certificate, where)

    @property
    def certificate_kind(self) -> str:
        """The certificate the card names (pinned when it names none)."""
        return self.certificate.get("kind", "pinned")


CERTIFICATES = ("pinned", "set", "lazy-set", "lazy-set+cascade")
LAZY_KINDS = ("lazy-set", "lazy-set+cascade")  # the certificates with a plan (and a margin)


def check_certificate(spec: dict[str, Any], where: str) -> None:
    """A card's ``certificate`` block: a known kind, a finite margin, alpha_split in (0, 1).

    Raises:
        CardError: naming the key.
    """
    unknown = set(spec) - {"kind", "margin", "alpha_split", "fallback_share", "chosen_on"}
    if unknown:
        raise CardError(f"{where}: rs_router.certificate has unknown keys {sorted(unknown)}")
    if spec and spec.get("kind") not in CERTIFICATES:
        raise CardError(f"{where}: rs_router.certificate.kind must be one of "
                        f"{', '.join(CERTIFICATES)}, got {spec.get('kind')!r}")
    margin = spec.get("margin", 0.0)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) \
            or not math.isfinite(margin):
        raise CardError(f"{where}: rs_router.certificate.margin must be a number, got {margin!r}")
    if "fallback_share" in spec and spec.get("kind") != "lazy-set+cascade":
        raise CardError(f"{where}: rs_router.certificate.fallback_share applies to the "
                        "lazy-set+cascade certificate only")
    share = spec.get("fallback_share", DEFAULT_SHARE)
    if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 < share < 1:
        raise CardError(f"{where}: rs_router.certificate.fallback_share must be in (0, 1), got "
                        f"{share!r}")
    split = spec.get("alpha_split", 0.5)
    if not isinstance(split, (int, float)) or isinstance(split, bool) or not 0 < split < 1:
        raise CardError(f"{where}: rs_router.certificate.alpha_split must be in (0, 1), got "
                        f"{split!r}")


def _certificate_sentence(kind: str) -> str:
    """What the routed prediction is certified within, for a card's certificate."""
    if kind == "pinned":
        return "The routed prediction is certified within min(R_router, R_expert)."
    text = ("The routed prediction is certified by the "
            + ("set" if kind == "set" else "lazy set")
            + " certificate: the router may switch among experts that certify the same class "
              "(docs/theory.md).")
    if kind == "lazy-set+cascade":
        text += (" Where it abstains, the multiscale cascade over the same experts certifies, "
                 "capped where the router could pick an expert deciding another class.")
    return text


def router_card(files: ArtifactFiles) -> RouterCard:
    """The card of verified router ``files``: schema, and its own weights hash must match.

    Raises:
        CardError: the card fails the schema check.
        IntegrityError: the card's weights_sha256 is empty or differs from the weights.
    """
    card = RouterCard.from_config(files.config, str(files.folder / CONFIG_FILE))
    check_claim(card.weights_sha256, files, "rs_router.weights_sha256")
    return card


def write_router_card(folder: str | os.PathLike, card: RouterCard) -> None:
    """(Re)write a router's config.json and README.md from ``card``."""
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
             f"per input among {card.num_experts} randomized-smoothing experts (Dual RS). "
             + _certificate_sentence(card.certificate_kind), "",
             "| # | expert | sigma | source | weights sha256 |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {i} | {e.name} | {e.sigma} | {e.source}{'@' + e.revision if e.revision else ''}"
              f" | `{e.weights_sha256[:16]}...` |" for i, e in enumerate(card.experts)]
    lines += ["", "```python", "import rsrouter",
              'routed = rsrouter.load_routed("path/to/this/folder")',
              "cert = routed.certify(x, n0=100, n=10_000, alpha=0.001)", "```", ""]
    if card.shares_forward_with:
        lines += [f"Its feature layers are {card.shares_forward_with}'s, unchanged: the router's "
                  "vote and that expert's come from one forward pass.", ""]
    if card.certificate:
        lines += ["## Certificate", "", f"`{card.certificate_kind}` (what `rsrouter certify "
                  "--router` and `bench run` use by default):", "", "```yaml",
                  yaml.safe_dump(card.certificate, sort_keys=False).rstrip(), "```", ""]
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
