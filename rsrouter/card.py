"""Expert cards: the Hub-layout folder that makes a fixed-sigma RS expert self-describing.

A folder holds ``config.json`` (timm-compatible ``architecture``, ``num_classes``,
``pretrained_cfg`` plus an ``rs_expert`` block), ``model.safetensors`` (the bare network, without
the normalization layer, which the card's mean/std rebuild) and ``README.md`` (a model card whose
front matter mirrors the config and lists certified accuracy in ``model-index``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from . import __version__
from .errors import CardError, IntegrityError, UnknownArchitectureError
from .files import atomic_write_json, atomic_write_text, load_tensors, save_tensors, sha256_file
from .models import NormalizedModel, architecture_source, create_model

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"
STANDARD_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


@dataclass
class ExpertCard:
    """The metadata of one expert. ``sigma`` is in pixel units (inputs in [0, 1])."""

    architecture: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    sigma: float
    dataset: str
    label_names: list[str] = field(default_factory=list)
    arch_source: str = "rsrouter"
    weights_sha256: str = ""
    input_range: tuple[float, float] = (0.0, 1.0)
    training: dict[str, Any] = field(default_factory=dict)
    certified: dict[str, Any] = field(default_factory=dict)
    name: str = ""

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
                "sigma": self.sigma,
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
        rs = _require(config, "rs_expert", dict, where)
        cfg = _require(config, "pretrained_cfg", dict, where)
        card = cls(
            architecture=_require(config, "architecture", str, where),
            num_classes=_require(config, "num_classes", int, where),
            input_size=tuple(_require(cfg, "input_size", list, where, "pretrained_cfg.")),
            mean=tuple(_require(cfg, "mean", list, where, "pretrained_cfg.")),
            std=tuple(_require(cfg, "std", list, where, "pretrained_cfg.")),
            sigma=_require(rs, "sigma", (int, float), where, "rs_expert."),
            dataset=_require(rs, "dataset", str, where, "rs_expert."),
            label_names=list(rs.get("label_names", [])),
            arch_source=rs.get("arch_source", "rsrouter"),
            weights_sha256=rs.get("weights_sha256", ""),
            input_range=tuple(rs.get("input_range", (0.0, 1.0))),
            training=dict(rs.get("training", {})),
            certified=dict(rs.get("certified", {})),
            name=rs.get("name", ""),
        )
        card.validate(where)
        return card

    def validate(self, where: str = CONFIG_FILE) -> None:
        """Schema check of the values (types are checked on parsing)."""
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma)
                and self.sigma > 0):
            raise CardError(f"{where}: rs_expert.sigma must be a positive number in pixel units "
                            f"(inputs in [0, 1]); got {self.sigma!r}")
        if self.num_classes < 2:
            raise CardError(f"{where}: num_classes must be >= 2, got {self.num_classes}")
        if len(self.input_size) != 3 or not all(isinstance(v, int) and v > 0
                                                for v in self.input_size):
            raise CardError(f"{where}: pretrained_cfg.input_size must be [C, H, W] of positive "
                            f"integers, got {list(self.input_size)}")
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise CardError(f"{where}: pretrained_cfg.mean/std need one value per input channel "
                            f"({self.input_size[0]}), got {list(self.mean)} / {list(self.std)}")
        if any(s <= 0 for s in self.std):
            raise CardError(f"{where}: pretrained_cfg.std must be positive, got {list(self.std)}")
        if list(self.input_range) != [0.0, 1.0]:
            raise CardError(f"{where}: rs_expert.input_range must be [0, 1] (rsrouter adds noise "
                            f"to pixels in [0, 1]); got {list(self.input_range)}. Rescale the "
                            "expert's inputs and sigma to [0, 1] pixels.")
        if self.label_names and len(self.label_names) != self.num_classes:
            raise CardError(f"{where}: rs_expert.label_names has {len(self.label_names)} names but "
                            f"num_classes is {self.num_classes}")
        try:
            architecture_source(self.architecture)
        except UnknownArchitectureError as e:
            raise CardError(f"{where}: architecture: {e}") from e

    def build_model(self) -> NormalizedModel:
        """A freshly initialized network with this card's normalization in front."""
        return NormalizedModel(create_model(self.architecture, self.num_classes, self.input_size),
                               self.mean, self.std)


def _require(d: dict, key: str, types, where: str, prefix: str = "") -> Any:
    if key not in d or d[key] is None:
        raise CardError(f"{where}: missing field {prefix}{key}")
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise CardError(f"{where}: field {prefix}{key} must be {names}, got {value!r}")
    return value


def read_card(folder: str | os.PathLike) -> ExpertCard:
    """Read and validate ``folder/config.json``.

    Raises:
        CardError: the file is missing, not JSON, or fails the schema check.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CardError(f"{path} not found: an expert folder needs config.json, model.safetensors "
                        "and README.md (see docs/experts.md)")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CardError(f"{path} is not valid JSON: {e}") from e
    return ExpertCard.from_config(config, str(path))


def load_weights(model: NormalizedModel, card: ExpertCard, weights: str | os.PathLike,
                 expected_sha256: str | None = None) -> None:
    """Check ``weights`` against the card's (and an expected) sha256, then load it strictly.

    Raises:
        IntegrityError: a hash mismatch (both hashes named) or an unreadable file.
        CardError: the weights do not fit the card (class count, input size, architecture).
    """
    actual = sha256_file(weights)
    for label, expected in (("the card's weights_sha256", card.weights_sha256),
                            ("the sha256 pinned at registration", expected_sha256)):
        if expected and expected != actual:
            raise IntegrityError(f"{weights}: sha256 {actual} does not match {label} {expected}; "
                                 "the file was not loaded (re-download it or re-register the "
                                 "expert)")
    tensors, _ = load_tensors(weights)
    check_state_dict(model.net, tensors, card, str(weights))
    model.net.load_state_dict(tensors, strict=True)


def check_state_dict(net: nn.Module, tensors: dict[str, torch.Tensor], card: ExpertCard,
                     where: str) -> None:
    """Raise :class:`CardError` when ``tensors`` do not fit ``net`` built from ``card``."""
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CardError(f"{where}: weights do not match architecture {card.architecture!r}: "
                        f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            hint = ""
            if value.dim() >= 1 and tensors[key].dim() >= 1 and value.shape[0] == card.num_classes:
                hint = (f" (class-count mismatch: the card says num_classes={card.num_classes}, "
                        f"the weights have {tensors[key].shape[0]} outputs)")
            else:
                hint = (f" (does the card's input_size {list(card.input_size)} match the "
                        f"weights?)")
            raise CardError(f"{where}: weight {key} has shape {list(tensors[key].shape)} but "
                            f"the card's architecture expects {list(value.shape)}{hint}")


def save_weights(folder: str | os.PathLike, net: nn.Module) -> str:
    """Write ``net``'s state dict to ``folder/model.safetensors``; returns its sha256."""
    save_tensors(Path(folder) / WEIGHTS_FILE, net.state_dict())
    return sha256_file(Path(folder) / WEIGHTS_FILE)


def save_expert(folder: str | os.PathLike, net: nn.Module, card: ExpertCard) -> Path:
    """Write ``net``'s weights, config.json and README.md to ``folder``; returns the folder.

    ``card.weights_sha256`` is set from the written file.
    """
    card.weights_sha256 = save_weights(folder, net)
    write_card(folder, card)
    return Path(folder)


def write_card(folder: str | os.PathLike, card: ExpertCard) -> None:
    """(Re)write config.json and README.md from ``card``."""
    folder = Path(folder)
    atomic_write_json(folder / CONFIG_FILE, card.to_config())
    atomic_write_text(folder / README_FILE, model_card(card))


def model_card(card: ExpertCard) -> str:
    """README.md text: YAML front matter mirroring the config, then a short description."""
    name = card.name or f"{card.dataset}-{card.architecture}-sigma{card.sigma}"
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
        "rs_expert": {"sigma": card.sigma, "dataset": card.dataset,
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
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "", f"# {name}", "",
             f"A randomized-smoothing expert for **{card.dataset}**: `{card.architecture}` trained "
             f"with Gaussian noise augmentation at sigma = {card.sigma} (pixel units, inputs in "
             "[0, 1]; the normalization layer is part of the model).", "",
             "```python", "import rsrouter", f'expert = rsrouter.load_expert("{name}")  '
             "# or the folder / hf:// path",
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


def verify_folder(folder: str | os.PathLike, expected_sha256: str | None = None) -> ExpertCard:
    """Check a folder's card, its weights' sha256 and that they load; returns the card."""
    card = read_card(folder)
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file():
        raise IntegrityError(f"{weights} not found")
    load_weights(card.build_model(), card, weights, expected_sha256)
    return card
