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
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .. import __version__
from ..errors import CardError, IntegrityError, SigmaNotServedError
from ..files import atomic_write_json, atomic_write_text, read_hashed

if TYPE_CHECKING:
    from torch import nn

    from ..models import Trust
    from ..models.normalize import NormalizedModel

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"
STANDARD_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
MAX_CLASSES = 1_000_000  # beyond: a card typo, and a head that size would need gigabytes
MAX_CHANNELS = 1024
MAX_SIDE = 8192  # pixels per image side (input_size, rs_expert.resize.size)
_SHA256 = re.compile(r"[0-9a-f]{64}")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_MODULE_FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def is_code_reference(arch: str) -> bool:
    """Whether ``arch`` is a ``module:factory`` string (resolving it imports and runs code)."""
    return ":" in arch


def check_architecture_name(arch: object) -> str | None:
    """What is wrong with ``arch`` as an architecture name, importing nothing (None if fine)."""
    if not isinstance(arch, str) or not arch.strip():
        return f"must be a non-empty string, got {arch!r}"
    if is_code_reference(arch) and not _MODULE_FACTORY.fullmatch(arch):
        return f"{arch!r} is not a 'module.path:factory' string"
    return None


def check_sha256(value: object, what: str) -> str:
    """``value`` if it is a sha256 (64 lowercase hex); else IntegrityError naming ``what``.

    An empty or missing hash is an error, never a skipped check.
    """
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        shown = "missing" if not value else f"{value!r} is not a sha256 (64 lowercase hex)"
        raise IntegrityError(f"{what}: {shown}; rsrouter loads nothing whose bytes are not pinned")
    return value


def is_commit_sha(value: object) -> bool:
    """Whether ``value`` is a full git commit sha (40 lowercase hex)."""
    return isinstance(value, str) and COMMIT_SHA.fullmatch(value) is not None


@dataclass(frozen=True)
class Pin:
    """The hashes a load must match, and who recorded them (named in errors)."""

    weights_sha256: str
    config_sha256: str
    by: str = "the pin"


@dataclass(frozen=True)
class ArtifactFiles:
    """An expert or router folder read once: the bytes that are hashed are the bytes used."""

    folder: Path
    config: dict[str, Any]
    config_sha256: str
    weights: bytes
    weights_sha256: str

    def pin(self, by: str = "") -> Pin:
        """The hashes of these bytes, to record (registration, router training)."""
        return Pin(self.weights_sha256, self.config_sha256, by)


def read_artifact(folder: str | os.PathLike, *pins: Pin) -> ArtifactFiles:
    """Read ``config.json`` and ``model.safetensors`` of ``folder`` once and hash them.

    Both hashes must equal every pin given (a registration, a router's record). Nothing is
    parsed beyond JSON and nothing is imported: check the card's own claim, then build the model
    from the returned bytes.

    Raises:
        CardError: a file is missing or config.json is not JSON.
        IntegrityError: a hash differs from a pin (both hashes named), or a pin is empty.
    """
    folder = Path(folder)
    paths = {name: folder / name for name in (CONFIG_FILE, WEIGHTS_FILE)}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise CardError(f"{folder}: {' and '.join(missing)} not found; an expert or router folder "
                        "holds config.json, model.safetensors and README.md (see docs/experts.md)")
    config_bytes, config_sha = read_hashed(paths[CONFIG_FILE])
    weights, weights_sha = read_hashed(paths[WEIGHTS_FILE])
    files = ArtifactFiles(folder, parse_config(config_bytes, str(paths[CONFIG_FILE])), config_sha,
                          weights, weights_sha)
    for pin in pins:
        check_pin(files, pin)
    return files


def safetensors_shapes(data: bytes, where: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes named in the header of safetensors ``data`` (no tensor is read).

    Raises:
        IntegrityError: the header is truncated or not a safetensors header.
    """
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header is longer than the file")
        header = json.loads(data[8:8 + size])
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        if not all(type(d) is int and d >= 0 for shape in shapes.values() for d in shape):
            raise ValueError("a tensor shape is not a list of sizes")
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise IntegrityError(f"{where} is not a readable safetensors file (truncated or corrupt: "
                             f"{e}); delete it and download or rebuild it") from e
    return shapes


def check_pin(files: ArtifactFiles, pin: Pin) -> None:
    """Both hashes of ``files`` must equal ``pin``'s (which must not be empty).

    Raises:
        IntegrityError: naming the file, both hashes and who recorded the pin.
    """
    for name, actual, expected in ((WEIGHTS_FILE, files.weights_sha256, pin.weights_sha256),
                                   (CONFIG_FILE, files.config_sha256, pin.config_sha256)):
        check_sha256(expected, f"{pin.by}: sha256 of {name}")
        if actual != expected:
            what = ("the weights changed" if name == WEIGHTS_FILE else
                    "the card (sigma, normalization, architecture) was edited")
            raise IntegrityError(f"{files.folder / name}: sha256 {actual} does not match "
                                 f"{expected} recorded by {pin.by}: {what} since; nothing was "
                                 "loaded (restore the files, or re-register / retrain on purpose)")


def parse_config(data: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a config.json (the one reader of expert and router cards).

    Raises:
        CardError: not JSON, or not an object.
    """
    try:
        config = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CardError(f"{where}: the top level must be a JSON object")
    return config


def read_config(folder: str | os.PathLike, kind: str = "an expert") -> tuple[dict, str]:
    """``(config dict, path)`` of ``folder/config.json``, for display (no hash check).

    Raises:
        CardError: missing, not JSON or not an object.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CardError(f"{path} not found: {kind} folder holds config.json, model.safetensors "
                        "and README.md (see docs/experts.md)")
    return parse_config(path.read_bytes(), str(path)), str(path)


def check_claim(claimed: object, files: ArtifactFiles, field_name: str) -> None:
    """The card's own ``weights_sha256`` must be present and equal the weights' sha256."""
    where = files.folder / CONFIG_FILE
    check_sha256(claimed, f"{where}: {field_name}")
    if claimed != files.weights_sha256:
        raise IntegrityError(f"{files.folder / WEIGHTS_FILE}: sha256 {files.weights_sha256} does "
                             f"not match the card's {field_name} {claimed}; the weights were not "
                             "loaded (re-download them, or the card lies about its weights)")


EXPERT_KINDS = ("gaussian", "denoised")
RESIZE_MODES = ("nearest", "bilinear", "bicubic")  # rs_expert.resize.mode (torch interpolate)


@dataclass(frozen=True)
class ResizeSpec:
    """``rs_expert.resize``: the network's input side ``size`` (H, W), resampled from the
    dataset's with ``mode`` (``antialias``: PyTorch's antialiased kernels, which differ from the
    plain ones when upsampling too). Noise, sigma and radius stay in the dataset's pixels."""

    size: tuple[int, ...]
    mode: str = "bicubic"
    antialias: bool = False

    def to_config(self) -> dict[str, Any]:
        return {"size": list(self.size), "mode": self.mode, "antialias": self.antialias}


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
    def model_input_size(self) -> tuple[int, int, int]:
        """What the network sees: ``input_size``, or its channels at ``resize``."""
        return ((self.input_size[0], *self.resize.size) if self.resize
                else tuple(self.input_size))

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
        rs = _require(config, "rs_expert", dict, where)
        cfg = _require(config, "pretrained_cfg", dict, where)
        card = cls(
            architecture=_require(config, "architecture", str, where),
            num_classes=_require(config, "num_classes", int, where),
            input_size=tuple(_numbers(cfg, "input_size", where, "pretrained_cfg.", int)),
            mean=tuple(_numbers(cfg, "mean", where, "pretrained_cfg.")),
            std=tuple(_numbers(cfg, "std", where, "pretrained_cfg.")),
            sigma=(_require(rs, "sigma", (int, float), where, "rs_expert.")
                   if rs.get("sigmas") is None or rs.get("sigma") is not None else None),
            dataset=_require(rs, "dataset", str, where, "rs_expert."),
            label_names=list(_optional(rs, "label_names", list, [], where)),
            arch_source=_optional(rs, "arch_source", str, "rsrouter", where),
            weights_sha256=_optional(rs, "weights_sha256", str, "", where),
            input_range=tuple(_numbers(rs, "input_range", where, "rs_expert.", default=[0.0, 1.0])),
            training=dict(_optional(rs, "training", dict, {}, where)),
            certified=dict(_optional(rs, "certified", dict, {}, where)),
            name=_optional(rs, "name", str, "", where),
            sigmas=tuple(float(v) for v in _numbers(rs, "sigmas", where, "rs_expert.",
                                                    default=[])),
            kind=_optional(rs, "kind", str, "gaussian", where),
            denoiser=dict(_optional(rs, "denoiser", dict, {}, where)),
            resize=_resize(rs, where),
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
            from ..registry.denoised import check_denoiser_block

            check_denoiser_block(self.denoiser, where)
        if not 2 <= self.num_classes <= MAX_CLASSES:
            raise CardError(f"{where}: num_classes must be between 2 and {MAX_CLASSES:,}, got "
                            f"{self.num_classes:,} (set it to the outputs of the weights' "
                            "classifier head)")
        check_input_header(self.input_size, self.mean, self.std, where)
        if list(self.input_range) != [0.0, 1.0]:
            raise CardError(f"{where}: rs_expert.input_range must be [0, 1] (rsrouter adds noise "
                            f"to pixels in [0, 1]); got {list(self.input_range)}. Rescale the "
                            "expert's inputs and sigma to [0, 1] pixels.")
        if self.label_names and len(self.label_names) != self.num_classes:
            raise CardError(f"{where}: rs_expert.label_names has {len(self.label_names)} names but "
                            f"num_classes is {self.num_classes}")
        problem = check_architecture_name(self.architecture)
        if problem:
            raise CardError(f"{where}: architecture {problem}")
        if self.resize is not None:
            _check_resize(self.resize, where)

    def build_model(self, trust_code: Trust = False, where: str = CONFIG_FILE) -> NormalizedModel:
        """A freshly initialized network with this card's normalization (and resize) in front.

        Raises:
            UntrustedCodeError: a ``module:factory`` architecture without the opt-in.
            CardError: an architecture that no source knows (``where`` names the card).
        """
        return build_model(self.architecture, self.num_classes, self.input_size, self.mean,
                           self.std, trust_code, where, resize=self.resize)


def build_model(architecture: str, num_classes: int, input_size, mean, std, trust_code: Trust,
                where: str, *, resize: ResizeSpec | None = None) -> NormalizedModel:
    """``Normalize(mean, std)`` + the architecture (built for ``resize`` when given, with a
    :class:`~rsrouter.models.Resize` in front); unknown names become a CardError."""
    from ..errors import UnknownArchitectureError
    from ..models import create_model
    from ..models.normalize import NormalizedModel, Resize

    size = (input_size[0], *resize.size) if resize else input_size
    try:
        net = create_model(architecture, num_classes, size, trust_code=trust_code)
    except UnknownArchitectureError as e:
        raise CardError(f"{where}: architecture: {e}") from e
    return NormalizedModel(net, mean, std,
                           Resize(resize.size, resize.mode, resize.antialias) if resize else None)


def check_input_header(input_size, mean, std, where: str) -> None:
    """The ``pretrained_cfg`` every card shares (an expert's, a router's): ``input_size`` a
    [C, H, W] within rsrouter's limits, one positive std and one mean per channel.

    Raises:
        CardError: naming the field and what is allowed.
    """
    if len(input_size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                       for v in input_size):
        raise CardError(f"{where}: pretrained_cfg.input_size must be [C, H, W] of positive "
                        f"integers, got {list(input_size)}")
    if input_size[0] > MAX_CHANNELS or max(input_size[1:]) > MAX_SIDE:
        raise CardError(f"{where}: pretrained_cfg.input_size {list(input_size)} is beyond "
                        f"rsrouter's limits ({MAX_CHANNELS} channels, {MAX_SIDE} pixels a "
                        "side); give the size of the network's inputs, [C, H, W]")
    if len(mean) != input_size[0] or len(std) != input_size[0]:
        raise CardError(f"{where}: pretrained_cfg.mean/std need one value per input channel "
                        f"({input_size[0]}), got {list(mean)} / {list(std)}")
    if any(v <= 0 for v in std):
        raise CardError(f"{where}: pretrained_cfg.std must be positive, got {list(std)}")


def _check_resize(spec: ResizeSpec, where: str) -> None:
    if len(spec.size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                      and 0 < v <= MAX_SIDE for v in spec.size):
        raise CardError(f"{where}: rs_expert.resize.size must be [H, W] of positive integers up "
                        f"to {MAX_SIDE}, got {list(spec.size)}")
    if spec.mode not in RESIZE_MODES:
        raise CardError(f"{where}: rs_expert.resize.mode must be one of "
                        f"{', '.join(RESIZE_MODES)}, got {spec.mode!r}")
    if not isinstance(spec.antialias, bool) or (spec.antialias and spec.mode == "nearest"):
        raise CardError(f"{where}: rs_expert.resize.antialias must be true or false (and false "
                        f"for mode nearest), got {spec.antialias!r}")


def _resize(rs: dict, where: str) -> ResizeSpec | None:
    """The card's ``rs_expert.resize`` block ({size: [H, W], mode, antialias}), if any."""
    block = rs.get("resize")
    if block is None:
        return None
    if not isinstance(block, dict) or not isinstance(block.get("size"), list):
        raise CardError(f"{where}: rs_expert.resize must be {{size: [H, W], mode: bicubic, "
                        f"antialias: false}}, got {block!r}")
    unknown = set(block) - {"size", "mode", "antialias"}
    if unknown:
        raise CardError(f"{where}: rs_expert.resize: unknown keys {sorted(unknown)}")
    if not block["size"]:
        raise CardError(f"{where}: rs_expert.resize.size must be [H, W] (leave resize out for "
                        "none), got []")
    return ResizeSpec(tuple(block["size"]), block.get("mode", "bicubic"),
                      block.get("antialias", False))


def _require(d: dict, key: str, types, where: str, prefix: str = "") -> Any:
    if key not in d or d[key] is None:
        raise CardError(f"{where}: missing field {prefix}{key}")
    value = d[key]
    if not isinstance(value, types) or isinstance(value, bool):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise CardError(f"{where}: field {prefix}{key} must be {names}, got {value!r}")
    return value


def _optional(d: dict, key: str, types, default, where: str, prefix: str = "rs_expert."):
    if d.get(key) is None:
        return default
    return _require(d, key, types, where, prefix)


def _numbers(d: dict, key: str, where: str, prefix: str, kind=(int, float),
             default: list | None = None) -> list:
    """A list of numbers (``kind``) under ``key``; CardError naming the field otherwise."""
    value = default if d.get(key) is None and default is not None else _require(
        d, key, list, where, prefix)
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                              for v in value):
        names = kind.__name__ if isinstance(kind, type) else "number"
        raise CardError(f"{where}: field {prefix}{key} must be a list of {names}s, got {value!r}")
    return value


def read_card(folder: str | os.PathLike) -> ExpertCard:
    """Read and validate ``folder/config.json`` (no hash check, nothing imported): for display.

    Raises:
        CardError: the file is missing, not JSON, or fails the schema check.
    """
    config, where = read_config(folder)
    return ExpertCard.from_config(config, where)


def save_expert(folder: str | os.PathLike, net: nn.Module, card: ExpertCard) -> Path:
    """Write ``net``'s weights, config.json and README.md to ``folder``; returns the folder.

    ``card.weights_sha256`` is set from the written file.
    """
    from ..registry.weights import save_weights

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
