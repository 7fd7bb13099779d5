"""An Expert: a smoothed classifier built from an expert card (model + normalization + sigma)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cards.expert import ExpertCard, expert_card
from ..cards.pins import CONFIG_FILE, ArtifactFiles, Pin, read_artifact
from ..cards.refs import sigma_label
from ..certify.smoothing import Smooth
from ..models import Trust
from ..models.normalize import NormalizedModel
from ..sources.base import Resolved
from .entries import user_trusted_modules
from .kinds import KINDS, kind_of
from .weights import build_network, check_weight_sizes


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


def build_base(files: ArtifactFiles, card: ExpertCard, *, trust_code: Trust = False,
               device: str | torch.device = "cpu", origin: Resolved | None = None, **fetch):
    """What the weights of verified ``files`` build, once for every sigma they serve: the
    network (normalization in front), made the base of the card's kind (:mod:`.kinds`).

    ``fetch`` (endpoint, cache_dir, offline) and ``origin`` (the remote the card came from) say
    where a kind fetches more files (a denoiser). The card's sizes are checked against the
    weights first (:func:`~rsrouter.registry.weights.check_weight_sizes`).
    """
    check_weight_sizes(card, files, trust_code)
    network = build_network(card, files, trust_code)
    return KINDS[kind_of(card)].build(network, files, card, origin=origin, **fetch).to(device)


def model_at(base, card: ExpertCard) -> torch.nn.Module:
    """The base model smoothed at ``card.sigma``: the network itself, or denoiser + classifier
    at the denoiser's timestep for that sigma (the modules are shared, not copied)."""
    return KINDS[kind_of(card)].at_sigma(base, card)


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
    card = (card or expert_card(files)).at_sigma(sigma, str(files.folder / CONFIG_FILE))
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
        trust_code = user_trusted_modules()
    files = read_artifact(folder, *([pin] if pin else []))
    return build_expert(files, trust_code=trust_code, device=device, compile=compile,
                        precision=precision, sigma=sigma)


def verify_folder(folder: str | os.PathLike, *, trust_code: Trust | None = None) -> ExpertCard:
    """Check a folder's card, its weights' sha256 and that they load strictly (for a card that
    serves several sigmas, at each); returns the card."""
    if trust_code is None:
        trust_code = user_trusted_modules()
    files = read_artifact(folder)
    card = expert_card(files)
    base = build_base(files, card.at_sigma(card.served_sigmas[0]), trust_code=trust_code)
    for s in card.served_sigmas:
        build_expert(files, card=card, sigma=s, base=base)
    return card
