"""Expert cards: the Hub-layout folder that makes a fixed-sigma RS expert self-describing.

A folder holds ``config.json`` (timm-compatible ``architecture``, ``num_classes``,
``pretrained_cfg`` plus an ``rs_expert`` block), ``model.safetensors`` (the bare network, without
the normalization layer, which the card's mean/std rebuild) and ``README.md`` (a model card whose
front matter mirrors the config and lists certified accuracy in ``model-index``). Cards are
data: :mod:`rsrouter.registry` builds their networks.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .. import __version__
from ..errors import CardError, SigmaNotServedError
from ..files import atomic_write_json, atomic_write_text
from .denoiser import check_denoiser_block
from .header import (
    Header,
    ResizeSpec,
    check_header,
    numbers,
    optional,
    read_inputs,
    read_resize,
    require,
)
from .pins import CONFIG_FILE, README_FILE, ArtifactFiles, check_claim, read_config

EXPERT_KINDS = ("gaussian", "denoised")


@dataclass
class ExpertCard:
    """The metadata of one expert. ``sigma`` is in pixel units (inputs in [0, 1]).

    A card may serve several sigmas with one set of weights (``sigmas``: a classifier trained
    across noise levels, or a denoiser + classifier): each (weights, sigma) pair is an expert,
    chosen with :meth:`at_sigma` (``REF#sigma=0.5`` in references). ``sigma`` is then None
    until one is chosen. ``kind``: "gaussian" (a network trained under Gaussian noise) or
    "denoised" (a diffusion denoiser named by ``denoiser`` in front of a clean classifier, whose
    weights are this card's).
    """

    architecture: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sigma: float | None
    dataset: str
    label_names: list[str] = field(default_factory=list)
    arch_source: str = "rsrouter"
    weights_sha256: str = ""
    input_range: tuple[float, float] = (0.0, 1.0)
    training: dict[str, Any] = field(default_factory=dict)
    certified: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    sigmas: tuple[float, ...] = ()
    kind: str = "gaussian"
    denoiser: dict[str, Any] = field(default_factory=dict)
    resize: ResizeSpec | None = None

    @property
    def header(self) -> Header:
        """The network this card names (checked by :func:`~rsrouter.cards.header.check_header`)."""
        return Header(self.architecture, self.num_classes, tuple(self.input_size),
                      tuple(self.mean), tuple(self.std), self.resize)

    @property
    def model_input_size(self) -> tuple[int, int, int]:
        """What the network sees: ``input_size``, or its channels at ``resize``."""
        return self.header.model_input_size

    @property
    def served_sigmas(self) -> tuple[float, ...]:
        """Every sigma this card's weights serve."""
        return tuple(self.sigmas) or (() if self.sigma is None else (float(self.sigma),))

    @property
    def shared(self) -> bool:
        """Whether one set of weights serves several sigmas."""
        return len(self.served_sigmas) > 1 or self.kind == "denoised"

    def at_sigma(self, sigma: float | None, where: str = CONFIG_FILE) -> ExpertCard:
        """This card as the expert at ``sigma`` (None: its only sigma).

        Raises:
            CardError: ``sigma`` is not one the card serves, or None for a card serving several.
        """
        served = self.served_sigmas
        if sigma is None:
            if self.sigma is not None:
                return self
            if len(served) == 1:
                return replace(self, sigma=served[0])
            raise SigmaNotServedError(f"{where}: this card serves sigmas {list(served)} with "
                                      "one set of weights; name one: REF#sigma=0.5 (or "
                                      "sigma=0.5 in the API)", served)
        match = [s for s in served if math.isclose(float(sigma), s, rel_tol=0, abs_tol=1e-12)]
        if not match:
            raise SigmaNotServedError(f"{where}: sigma {sigma} is not served by this card (it "
                                      f"serves {list(served)}); name one of those", served)
        return self if self.sigma == match[0] else replace(self, sigma=match[0])

    def to_config(self) -> dict[str, Any]:
        """The ``config.json`` dict (timm layout plus the ``rs_expert`` block)."""
        return {
            "architecture": self.architecture,
            "num_classes": self.num_classes,
            "num_features": None,
            "pretrained_cfg": {
                "input_size": list(self.input_size),
                "mean": list(self.mean),
                "std": list(self.std),
                "num_classes": self.num_classes,
                "crop_pct": 1.0,
                "interpolation": "bilinear",
            },
            "rs_expert": {
                "name": self.name,
                **({"kind": self.kind} if self.kind != "gaussian" else {}),
                "sigma": self.sigma if not self.sigmas else None,
                **({"sigmas": list(self.sigmas)} if self.sigmas else {}),
                **({"denoiser": self.denoiser} if self.denoiser else {}),
                **({"resize": self.resize.to_config()} if self.resize else {}),
                "dataset": self.dataset,
                "input_range": list(self.input_range),
                "arch_source": self.arch_source,
                "label_names": list(self.label_names),
                "weights_sha256": self.weights_sha256,
                "training": self.training,
                "certified": self.certified,
                "rsrouter_version": __version__,
            },
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str = CONFIG_FILE) -> ExpertCard:
        """Parse and validate a ``config.json`` dict.

        Raises:
            CardError: naming the field that is missing or wrong.
        """
        rs = require(config, "rs_expert", dict, where)
        architecture, input_size, mean, std = read_inputs(config, where)
        card = cls(
            architecture=architecture,
            num_classes=require(config, "num_classes", int, where),
            input_size=input_size,
            mean=mean,
            std=std,
            sigma=(require(rs, "sigma", (int, float), where, "rs_expert.")
                   if rs.get("sigmas") is None or rs.get("sigma") is not None else None),
            dataset=require(rs, "dataset", str, where, "rs_expert."),
            label_names=list(optional(rs, "label_names", list, [], where)),
            arch_source=optional(rs, "arch_source", str, "rsrouter", where),
            weights_sha256=optional(rs, "weights_sha256", str, "", where),
            input_range=tuple(numbers(rs, "input_range", where, "rs_expert.", default=[0.0, 1.0])),
            training=dict(optional(rs, "training", dict, {}, where)),
            certified=dict(optional(rs, "certified", dict, {}, where)),
            name=optional(rs, "name", str, "", where),
            sigmas=tuple(float(v) for v in numbers(rs, "sigmas", where, "rs_expert.",
                                                   default=[])),
            kind=optional(rs, "kind", str, "gaussian", where),
            denoiser=dict(optional(rs, "denoiser", dict, {}, where)),
            resize=read_resize(rs, where),
        )
        if not all(isinstance(n, str) for n in card.label_names):
            raise CardError(f"{where}: field rs_expert.label_names must be a list of strings")
        card.validate(where)
        return card

    def validate(self, where: str = CONFIG_FILE) -> None:
        """Schema check of the values (types are checked on parsing)."""
        for s in ((self.sigma,) if self.sigma is not None else ()) + tuple(self.sigmas):
            if not (isinstance(s, (int, float)) and math.isfinite(s) and s > 0):
                raise CardError(f"{where}: rs_expert.sigma(s) must be positive numbers in pixel "
                                f"units (inputs in [0, 1]); got {s!r}")
        if self.sigma is None and not self.sigmas:
            raise CardError(f"{where}: missing field rs_expert.sigma (or rs_expert.sigmas for "
                            "weights that serve several noise levels)")
        if self.sigmas and list(self.sigmas) != sorted(set(self.sigmas)):
            raise CardError(f"{where}: rs_expert.sigmas must increase strictly, got "
                            f"{list(self.sigmas)}")
        if self.sigmas and self.sigma is not None and self.sigma not in self.sigmas:
            raise CardError(f"{where}: rs_expert.sigma {self.sigma} is not among rs_expert.sigmas "
                            f"{list(self.sigmas)}")
        if self.kind not in EXPERT_KINDS:
            raise CardError(f"{where}: rs_expert.kind must be one of {', '.join(EXPERT_KINDS)}, "
                            f"got {self.kind!r}")
        if (self.kind == "denoised") != bool(self.denoiser):
            raise CardError(f"{where}: a denoised expert (rs_expert.kind: denoised) names its "
                            "denoiser in rs_expert.denoiser, and only such a card has one")
        if self.denoiser:
            check_denoiser_block(self.denoiser, where)
        check_header(self.header, where)
        if list(self.input_range) != [0.0, 1.0]:
            raise CardError(f"{where}: rs_expert.input_range must be [0, 1] (rsrouter adds noise "
                            f"to pixels in [0, 1]); got {list(self.input_range)}. Rescale the "
                            "expert's inputs and sigma to [0, 1] pixels.")
        if self.label_names and len(self.label_names) != self.num_classes:
            raise CardError(f"{where}: rs_expert.label_names has {len(self.label_names)} names but "
                            f"num_classes is {self.num_classes}")


def expert_card(files: ArtifactFiles) -> ExpertCard:
    """The card of verified ``files``: schema, and the card's own weights hash must match.

    Raises:
        CardError: the card fails the schema check.
        IntegrityError: the card's weights_sha256 is empty or differs from the weights.
    """
    card = ExpertCard.from_config(files.config, str(files.folder / CONFIG_FILE))
    check_claim(card.weights_sha256, files, "rs_expert.weights_sha256")
    return card


def read_card(folder: str | os.PathLike) -> ExpertCard:
    """Read and validate ``folder/config.json`` (no hash check, nothing imported): for display.

    Raises:
        CardError: the file is missing, not JSON, or fails the schema check.
    """
    config, where = read_config(folder)
    return ExpertCard.from_config(config, where)



def write_card(folder: str | os.PathLike, card: ExpertCard) -> None:
    """(Re)write config.json and README.md from ``card``."""
    folder = Path(folder)
    atomic_write_json(folder / CONFIG_FILE, card.to_config())
    atomic_write_text(folder / README_FILE, model_card(card))


def model_card(card: ExpertCard) -> str:
    """README.md text: YAML front matter mirroring the config, then a short description."""
    sigmas = ", ".join(str(v) for v in card.served_sigmas)
    name = card.name or f"{card.dataset}-{card.architecture}-sigma{sigmas.replace(', ', '-')}"
    front: dict[str, Any] = {
        "library_name": "rsrouter",
        "license": "apache-2.0",
        "pipeline_tag": "image-classification",
        "tags": ["randomized-smoothing", "certified-robustness", card.dataset],
        "datasets": [card.dataset],
        "architecture": card.architecture,
        "num_classes": card.num_classes,
        "input_size": list(card.input_size),
        "mean": list(card.mean),
        "std": list(card.std),
        "rs_expert": {**({"kind": card.kind} if card.kind != "gaussian" else {}),
                      **({"sigmas": list(card.sigmas)} if card.sigmas else {"sigma": card.sigma}),
                      "dataset": card.dataset,
                      "input_range": list(card.input_range), "arch_source": card.arch_source,
                      "weights_sha256": card.weights_sha256},
    }
    cert = card.certified
    if cert.get("accuracy"):
        front["model-index"] = [{
            "name": name,
            "results": [{
                "task": {"type": "image-classification", "name": "certified robustness (l2)"},
                "dataset": {"name": card.dataset, "type": card.dataset, "split": "test"},
                "metrics": [
                    {"type": "certified_accuracy", "name": f"certified accuracy @ r={r}",
                     "value": acc, "args": {"radius": float(r), "n": cert.get("n"),
                                            "n0": cert.get("n0"), "alpha": cert.get("alpha"),
                                            "num_inputs": cert.get("num_inputs")}}
                    for r, acc in cert["accuracy"].items()
                ],
            }],
        }]
    if card.kind == "denoised":
        what = (f"A denoised-smoothing expert family for **{card.dataset}** (Carlini et al. 2023): "
                f"a diffusion denoiser (`{card.denoiser.get('source', '?')}`, pinned by sha256) in "
                f"front of a clean `{card.architecture}` classifier, one expert at each sigma in "
                f"{{{sigmas}}} (pixel units, inputs in [0, 1]).")
    elif card.sigmas:
        what = (f"A randomized-smoothing classifier for **{card.dataset}** serving every sigma in "
                f"{{{sigmas}}} with one set of weights: `{card.architecture}` trained with "
                "Gaussian noise augmentation at sigmas drawn per example (pixel units, inputs in "
                "[0, 1]; the normalization layer is part of the model). Name one expert as "
                f"`{name}#sigma={card.sigmas[0]}`.")
    else:
        what = (f"A randomized-smoothing expert for **{card.dataset}**: `{card.architecture}` "
                f"trained with Gaussian noise augmentation at sigma = {card.sigma} (pixel units, "
                "inputs in [0, 1]; the normalization layer is part of the model).")
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
             what, "",
             "Register it once (a folder, `hf://org/name@<sha>` or `git+URL@<sha>`), then load it "
             "by name; every load checks the sha256 of this card and of the weights:", "",
             "```bash", f"rsrouter experts register path/to/this/folder --name {name}", "```", "",
             "```python", "import rsrouter", f'expert = rsrouter.load_expert("{name}")',
             "cert = expert.certify(x, n0=100, n=100_000, alpha=0.001)", "```", ""]
    if card.training:
        lines += ["## Training recipe", "", "| key | value |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in card.training.items()] + [""]
    if cert.get("accuracy"):
        lines += [f"## Certified accuracy (l2, {cert.get('num_inputs')} test inputs, "
                  f"n = {cert.get('n')}, n0 = {cert.get('n0')}, alpha = {cert.get('alpha')})", "",
                  "| radius | " + " | ".join(str(r) for r in cert["accuracy"]) + " |",
                  "| --- |" + " --- |" * len(cert["accuracy"]),
                  "| accuracy | " + " | ".join(f"{100 * a:.1f}%" for a in cert["accuracy"].values())
                  + " |", ""]
    return "\n".join(lines)
