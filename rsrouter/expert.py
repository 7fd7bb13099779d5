"""An Expert: a smoothed classifier built from an expert card (model + normalization + sigma)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .card import WEIGHTS_FILE, ExpertCard, load_weights, read_card
from .models import NormalizedModel
from .smoothing import Smooth


class Expert(Smooth):
    """A :class:`~rsrouter.Smooth` that knows its card: ``expert.card``, ``expert.model``.

    ``certify``/``predict`` use the card's sigma; the model is in eval mode with its
    normalization layer in front.
    """

    def __init__(self, model: NormalizedModel, card: ExpertCard, *, source: str = "",
                 compile: bool = False, precision: str = "fp32") -> None:
        super().__init__(model, card.num_classes, card.sigma, compile=compile, precision=precision,
                         input_shape=card.input_size)
        self.model = model
        self.card = card
        self.source = source

    @property
    def name(self) -> str:
        return self.card.name or Path(self.source).name

    def __repr__(self) -> str:
        return (f"Expert(name={self.name!r}, dataset={self.card.dataset!r}, "
                f"architecture={self.card.architecture!r}, sigma={self.sigma}, mode={self.mode!r})")


def load_expert_folder(folder: str | os.PathLike, *, device: str | torch.device = "cpu",
                       expected_sha256: str | None = None, compile: bool = False,
                       precision: str = "fp32") -> Expert:
    """Load the expert in ``folder`` (checks the card, the sha256 and the weights' shapes).

    Raises:
        CardError: the card fails the schema check or does not fit the weights.
        IntegrityError: a hash mismatch, or a missing/corrupt weights file.
    """
    card = read_card(folder)
    model = card.build_model()
    load_weights(model, card, Path(folder) / WEIGHTS_FILE, expected_sha256)
    model.to(device).eval()
    return Expert(model, card, source=str(folder), compile=compile, precision=precision)
