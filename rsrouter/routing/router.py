"""Smoothed routers and certified routing (Dual RS, Sun, Mao, Vechev 2026).

A router is a classifier over experts, smoothed with its own noise ``sigma_r``. For an input x:

1. the router CERTIFIES its choice ``k`` within ``R_router`` at ``alpha_r`` (else ABSTAIN);
2. expert ``k`` CERTIFIES its class within ``R_expert`` at ``alpha_e`` (else ABSTAIN);
3. the routed prediction is certified within ``min(R_router, R_expert)`` with probability at least
   ``1 - alpha_r - alpha_e`` (union bound; no independence between the stages is needed).

Only the chosen expert is evaluated, so the cost is the router's plus one expert's. This module
holds the smoothed router; the routed classifier is :mod:`.routed`, loading :mod:`.load`, the
certificates' maths :mod:`rsrouter.certify.routed` and :mod:`rsrouter.certify.set_certificate`.
"""

from __future__ import annotations

from ..cards.pins import Pin
from ..cards.router import RouterCard
from ..certify.smoothing import Smooth
from ..models.normalize import NormalizedModel

# A router certifies on the experts' noise streams: one standard-normal draw per sample serves the
# router (scaled by sigma_r) and the chosen expert (scaled by its sigma); docs/theory.md shows
# that the routed certificate needs no independence between the two.
ROUTER_STAGES = ("select", "estimate")
ROUTER_PREDICT = "router-predict"


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
