"""Expert kinds, plugged in at build: what a verified card's network becomes, once for every sigma
its weights serve (the *base*), and the model smoothed at one sigma.

* ``plain``: a network trained under Gaussian noise at one sigma (the base is the network);
* ``shared``: one network trained across several sigmas, each an expert (the same base);
* ``denoised``: a diffusion denoiser named by the card in front of the card's clean classifier
  (the base holds both; each sigma picks the denoiser's timestep).

To add a kind: a class with ``build`` and ``at_sigma`` as below, an entry in :data:`KINDS`, and
the name :func:`kind_of` gives its cards (``rs_expert.kind``, :data:`~rsrouter.cards.expert.
EXPERT_KINDS`).
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from torch import nn

from ..cards.expert import ExpertCard
from ..cards.pins import ArtifactFiles
from ..sources.base import Resolved
from .denoised import DenoisedClassifier, load_denoiser


class ExpertKind(Protocol):
    """How the cards of one kind build."""

    def build(self, network: nn.Module, files: ArtifactFiles, card: ExpertCard, *,
              endpoint: str | None, cache_dir: str | os.PathLike | None, offline: bool | None,
              origin: Resolved | None) -> Any:
        """The base of verified ``files`` from their ``network``, for every sigma they serve
        (``endpoint``, ``cache_dir``, ``offline``, ``origin``: where more files are fetched)."""

    def at_sigma(self, base: Any, card: ExpertCard) -> nn.Module:
        """The model ``base`` smoothed at ``card.sigma`` (sharing the base's modules)."""


class NetworkKind:
    """Plain and shared experts: the base is the network itself, at every sigma."""

    def build(self, network: nn.Module, files: ArtifactFiles, card: ExpertCard,
              **fetch: Any) -> nn.Module:
        return network.eval()

    def at_sigma(self, base: nn.Module, card: ExpertCard) -> nn.Module:
        return base


class DenoisedKind:
    """Denoised experts: the card's denoiser (fetched, verified against the card's pins, built)
    and the network as its classifier; at each sigma a :class:`DenoisedClassifier`."""

    def build(self, network: nn.Module, files: ArtifactFiles, card: ExpertCard, *,
              origin: Resolved | None = None, **fetch: Any) -> Any:
        return load_denoiser(card.denoiser, files.folder, network, card=origin, **fetch)

    def at_sigma(self, base: Any, card: ExpertCard) -> nn.Module:
        return DenoisedClassifier(base, card.sigma).eval()


KINDS: dict[str, ExpertKind] = {"plain": NetworkKind(), "shared": NetworkKind(),
                                "denoised": DenoisedKind()}


def kind_of(card: ExpertCard) -> str:
    """The kind that builds ``card``: its ``rs_expert.kind`` beyond gaussian, else ``shared``
    for weights serving several sigmas, else ``plain``."""
    if card.kind != "gaussian":
        return card.kind
    return "shared" if card.shared else "plain"
