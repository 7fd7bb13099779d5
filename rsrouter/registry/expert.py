"""An Expert: a smoothed classifier built from an expert card (model + normalization + sigma)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cards.card import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ArtifactFiles,
    ExpertCard,
    Pin,
    check_claim,
    read_artifact,
    safetensors_shapes,
)
from ..certify.smoothing import Smooth
from ..errors import CardError
from ..models import Trust, known_layers
from ..models.normalize import NormalizedModel
from .weights import build_network, check_state_dict


class Expert(Smooth):
    """A :class:`~rsrouter.Smooth` that knows its card and where its bytes came from.

    ``certify``/``predict`` use the card's sigma; the model is in eval mode with its
    normalization layer in front. ``pin`` holds the sha256 of the config.json and weights that
    were actually read; ``uri`` the pinned place they came from (folder, ``hf://org/name@sha``).
    """

    def __init__(self, model: NormalizedModel, card: ExpertCard, *, uri: str = "",
                 pin: Pin | None = None, name: str = "", compile: bool = False,
                 precision: str = "fp32") -> None:
        super().__init__(model, card.num_classes, card.sigma, compile=compile, precision=precision,
                         input_shape=card.input_size)
        self.model = model
        self.card = card
        self.uri = uri
        self.pin = pin
        self._name = name

    @property
    def name(self) -> str:
        """The registered name, else the card's name, else the last part of ``uri``; for weights
        that serve several sigmas, with ``-sigmaS`` appended (unless set explicitly)."""
        if self._name:
            return self._name
        base = self.card.name or Path(self.uri.rsplit("@", 1)[0]).stem
        if not self.card.shared:
            return base
        from .core import sigma_label

        return f"{base}-sigma{sigma_label(self.sigma)}"

    @name.setter
    def name(self, value: str) -> None:
        self._name = value

    @property
    def source(self) -> str:
        """Where the expert came from (alias of ``uri``)."""
        return self.uri

    def __repr__(self) -> str:
        return (f"Expert(name={self.name!r}, dataset={self.card.dataset!r}, "
                f"architecture={self.card.architecture!r}, sigma={self.sigma}, mode={self.mode!r})")


def expert_card(files: ArtifactFiles) -> ExpertCard:
    """The card of verified ``files``: schema, and the card's own weights hash must match.

    Raises:
        CardError: the card fails the schema check.
        IntegrityError: the card's weights_sha256 is empty or differs from the weights.
    """
    card = ExpertCard.from_config(files.config, str(files.folder / "config.json"))
    check_claim(card.weights_sha256, files, "rs_expert.weights_sha256")
    return card


def build_base(files: ArtifactFiles, card: ExpertCard, *, trust_code: Trust = False,
               device: str | torch.device = "cpu", **denoiser_kw):
    """What the weights of verified ``files`` build, once for every sigma they serve: the
    network (normalization in front), or for a denoised card its denoiser parts.

    ``denoiser_kw`` (endpoint, cache_dir, offline) say where a Hub denoiser is fetched from.
    The card's sizes are checked against the weights first (:func:`check_weight_sizes`).
    """
    check_weight_sizes(card, files, trust_code)
    model = build_network(card, files, trust_code)
    if card.kind != "denoised":
        return model.to(device).eval()
    from .denoised import load_denoiser

    return load_denoiser(card.denoiser, files.folder, model, **denoiser_kw).to(device)


def check_weight_sizes(card: ExpertCard, files: ArtifactFiles, trust_code: Trust = False) -> None:
    """Refuse a card whose sizes do not fit its weights before any network is built.

    The weights' shapes come from their safetensors header. The classifier head must have
    ``num_classes`` outputs and the first convolution ``input_size[0]`` input channels (for
    rsrouter's and timm's architectures, whose layer names are known); then the card's network
    is built on the meta device (no memory, no data) and every shape compared, so no card makes
    a network larger than its weights. A factory that cannot build on the meta device is left
    to the strict load after building; its weights must then have some layer of ``num_classes``
    outputs.

    Raises:
        CardError: naming the card's field and the weights' size.
        IntegrityError: the weights are not a safetensors file.
    """
    config, weights = str(files.folder / CONFIG_FILE), str(files.folder / WEIGHTS_FILE)
    shapes = safetensors_shapes(files.weights, weights)
    heads, first_conv = known_layers(card.architecture)
    for head in heads:
        shape = shapes.get(f"{head}.weight", ())
        if len(shape) >= 2 and shape[0] != card.num_classes:
            raise CardError(f"{config}: class-count mismatch: the card says num_classes="
                            f"{card.num_classes}, the weights' classifier head {head}.weight has "
                            f"{shape[0]} outputs ({weights}); set num_classes to {shape[0]}, or "
                            "these weights are another model's")
    shape = shapes.get(f"{first_conv}.weight", ())
    if len(shape) == 4 and shape[1] != card.input_size[0]:
        raise CardError(f"{config}: pretrained_cfg.input_size has {card.input_size[0]} channels "
                        f"but the weights' first convolution {first_conv}.weight takes "
                        f"{shape[1]} ({weights}); set input_size[0] and mean/std to {shape[1]}")
    try:
        with torch.device("meta"):
            net = card.build_model(trust_code, config).net
    except (RuntimeError, NotImplementedError):  # no meta build: checked after the real one
        if not heads and not any(len(s) >= 2 and s[0] == card.num_classes
                                 for s in shapes.values()):
            raise CardError(f"{config}: num_classes is {card.num_classes} but no layer of the "
                            f"weights ({weights}) has that many outputs; set num_classes to "
                            "the outputs of their classifier head") from None
        return
    check_state_dict(net, {k: torch.empty(s, device="meta") for k, s in shapes.items()}, card,
                     weights)


def model_at(base, card: ExpertCard) -> torch.nn.Module:
    """The base model smoothed at ``card.sigma``: the network itself, or denoiser + classifier
    at the denoiser's timestep for that sigma (the modules are shared, not copied)."""
    if card.kind != "denoised":
        return base
    from .denoised import DenoisedClassifier

    return DenoisedClassifier(base, card.sigma).eval()


def build_expert(files: ArtifactFiles, *, card: ExpertCard | None = None,
                 trust_code: Trust = False, device: str | torch.device = "cpu", uri: str = "",
                 name: str = "", compile: bool = False, precision: str = "fp32",
                 sigma: float | None = None, base=None) -> Expert:
    """An Expert from verified bytes: card schema, the card's own weights hash, strict load.

    ``sigma`` chooses the expert of a card that serves several; ``base`` (from
    :func:`build_base` on the same files) reuses weights already loaded.

    Raises:
        CardError: the card fails the schema check or does not fit the weights, or ``sigma`` is
            not one the card serves (or is missing for a card that serves several).
        IntegrityError: the card's weights_sha256 is empty or differs from the weights.
        UntrustedCodeError: the card names Python code and ``trust_code`` does not allow it.
    """
    card = (card or expert_card(files)).at_sigma(sigma, str(files.folder / "config.json"))
    if base is None:
        base = build_base(files, card, trust_code=trust_code, device=device)
    return Expert(model_at(base, card), card, uri=uri or str(files.folder), pin=files.pin(),
                  name=name, compile=compile, precision=precision)


def load_expert_folder(folder: str | os.PathLike, *, pin: Pin | None = None,
                       trust_code: Trust | None = None, device: str | torch.device = "cpu",
                       compile: bool = False, precision: str = "fp32",
                       sigma: float | None = None) -> Expert:
    """Load the expert in ``folder``: read once, check hashes (``pin`` and the card's), build.
    ``sigma`` names the expert of a card that serves several sigmas.

    ``trust_code``: True allows a ``module:factory`` architecture; None (default) allows only the
    modules under ``trusted_modules:`` in the user's registry file.

    Raises:
        CardError: the card fails the schema check or does not fit the weights.
        IntegrityError: a hash mismatch or an empty hash, or a missing/corrupt weights file.
        UntrustedCodeError: the card names Python code and ``trust_code`` does not allow it.
    """
    if trust_code is None:
        from .core import user_trusted_modules

        trust_code = user_trusted_modules()
    files = read_artifact(folder, *([pin] if pin else []))
    return build_expert(files, trust_code=trust_code, device=device, compile=compile,
                        precision=precision, sigma=sigma)


def verify_folder(folder: str | os.PathLike, *, trust_code: Trust | None = None) -> ExpertCard:
    """Check a folder's card, its weights' sha256 and that they load strictly (for a card that
    serves several sigmas, at each); returns the card."""
    if trust_code is None:
        from .core import user_trusted_modules

        trust_code = user_trusted_modules()
    files = read_artifact(folder)
    card = expert_card(files)
    base = build_base(files, card.at_sigma(card.served_sigmas[0]), trust_code=trust_code)
    for s in card.served_sigmas:
        build_expert(files, card=card, sigma=s, base=base)
    return card
