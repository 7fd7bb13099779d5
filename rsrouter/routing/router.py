"""Smoothed routers and certified routing (Dual RS, Sun, Mao, Vechev 2026).

A router is a classifier over experts, smoothed with its own noise ``sigma_r``. For an input x:

1. the router CERTIFIES its choice ``k`` within ``R_router`` at ``alpha_r`` (else ABSTAIN);
2. expert ``k`` CERTIFIES its class within ``R_expert`` at ``alpha_e`` (else ABSTAIN);
3. the routed prediction is certified within ``min(R_router, R_expert)`` with probability at least
   ``1 - alpha_r - alpha_e`` (union bound; no independence between the stages is needed).

Only the chosen expert is evaluated, so the cost is the router's plus one expert's.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..cards.pins import Pin
from ..cards.router import RouterCard
from ..certify.set_certificate import join_numbers, set_certificate, split_alphas
from ..certify.smoothing import (
    ABSTAIN,
    Certificate,
    Smooth,
    _check_count,
    certificate_from_counts,
    shared_counts,
)
from ..errors import ConfigError
from ..models import NormalizedModel

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


@dataclass(frozen=True)
class RoutedCertificate:
    """A routed prediction: ``radius = min(router radius, expert radius)`` or ABSTAIN.

    ``router`` holds the router's counts (its ``prediction`` is the chosen expert index);
    ``expert_cert`` the chosen expert's (None when the router abstained).
    """

    prediction: int
    radius: float
    expert: int
    expert_name: str
    router: Certificate
    expert_cert: Certificate | None
    alpha: float
    alpha_router: float
    alpha_expert: float

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def router_radius(self) -> float:
        return self.router.radius

    @property
    def expert_radius(self) -> float:
        return self.expert_cert.radius if self.expert_cert else 0.0


def compose(router: Certificate, expert: Certificate | None, expert_name: str, alpha: float,
            alpha_router: float, alpha_expert: float) -> RoutedCertificate:
    """DESIGN.md's routed rule: either part abstains -> ABSTAIN; else min of the radii."""
    if router.prediction == ABSTAIN or expert is None or expert.prediction == ABSTAIN:
        return RoutedCertificate(ABSTAIN, 0.0, router.prediction, expert_name, router, expert,
                                 alpha, alpha_router, alpha_expert)
    return RoutedCertificate(expert.prediction, min(router.radius, expert.radius),
                             router.prediction, expert_name, router, expert, alpha, alpha_router,
                             alpha_expert)


class RoutedClassifier:
    """Router + experts. ``alpha_split`` is the share of alpha given to the router.

    Raises:
        ConfigError: experts that do not fit the router or each other.
    """

    def __init__(self, router: Smooth, experts: Sequence[Smooth], alpha_split: float = 0.5) -> None:
        if not 0 < alpha_split < 1:
            raise ConfigError(f"alpha_split must be in (0, 1), got {alpha_split}")
        if router.num_classes != len(experts):
            raise ConfigError(f"the router chooses among {router.num_classes} experts but "
                              f"{len(experts)} were given")
        check_compatible(experts)
        self.router, self.experts, self.alpha_split = router, list(experts), alpha_split
        largest = max(e.sigma for e in experts)
        if router.sigma < largest:
            warnings.warn(f"router sigma {router.sigma} is below the largest expert sigma "
                          f"{largest} (Dual RS uses sigma_r >= max sigma_k)", stacklevel=2)

    def split(self, alpha: float) -> tuple[float, float]:
        """``(alpha_router, alpha_expert)``, summing to ``alpha``."""
        alpha_r = alpha * self.alpha_split
        return alpha_r, alpha - alpha_r

    @property
    def mode(self) -> str:
        return self.router.mode

    def _inputs(self, xs, n0, n, batch_size, seed, indices):
        """Checked inputs, their dataset indices and the sampling keywords of a certify call."""
        _check_count("n0", n0)
        _check_count("n", n)
        indices = list(range(len(xs))) if indices is None else [int(i) for i in indices]
        xs, indices = self.router._check_inputs(xs, indices)
        return xs, indices, dict(batch_size=batch_size, seed=seed, indices=indices)

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int = 1000,
                seed: int = 0, index: int = 0) -> RoutedCertificate:
        """Routed CERTIFY of one input ``[C, H, W]``."""
        return self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size=batch_size, seed=seed,
                                  indices=[index])[0]

    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                      batch_size: int = 1000, seed: int = 0,
                      indices: Sequence[int] | None = None) -> list[RoutedCertificate]:
        """Routed CERTIFY of each input; only each input's chosen expert is evaluated, and the
        router and that expert use the same noise draws (each scaled by its own sigma).

        1. the router's ``n0`` selection samples choose the expert ``k``;
        2. expert ``k`` selects its class on the same ``n0`` draws (drawn again: 1% of the work
           at n0 = 100, n = 10,000);
        3. ``n`` fresh draws are made once and counted by the router and by expert ``k``.
        The counts equal those of separate runs of the router and of each expert (same
        streams), so routed certificates can also be composed from stored counts.
        """
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        alpha_r, alpha_e = self.split(alpha)
        select, estimate = ROUTER_STAGES
        choice = self.router.sample_counts(xs, n0, stage=select, **kw).argmax(dim=1)
        masks = [choice == k for k in range(len(self.experts))]
        used = [(e, m) for e, m in zip(self.experts, masks) if bool(m.any())]
        expert_select = shared_counts(used, xs, n0, stage=select, **kw) if used else []
        counts = shared_counts([(self.router, None), *used], xs, n, stage=estimate, **kw)
        router_counts, expert_counts = counts[0], counts[1:]
        out = []
        for i, (k, index) in enumerate(zip(choice.tolist(), indices)):
            route = certificate_from_counts(k, int(router_counts[i, k]), n, n0, self.router.sigma,
                                            alpha_r, seed, index, self.router.mode)
            expert = None
            if route.prediction != ABSTAIN:
                slot = next(s for s, (e, m) in enumerate(used) if bool(m[i]))
                c_a = int(expert_select[slot][i].argmax())
                chosen = self.experts[k]
                expert = certificate_from_counts(c_a, int(expert_counts[slot][i, c_a]), n, n0,
                                                 chosen.sigma, alpha_e, seed, index, chosen.mode)
            out.append(compose(route, expert, self._name(route.prediction), alpha, alpha_r,
                               alpha_e))
        return out

    def certify_set_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                          batch_size: int = 1000, seed: int = 0,
                          indices: Sequence[int] | None = None) -> list[SetRoutedCertificate]:
        """The set certificate (:mod:`rsrouter.certify.set_certificate`) of each input: the router's
        choice need not stay put where the experts it may switch to agree. Every expert is
        counted on every input (on the router's noise draws); the router gets
        ``alpha * alpha_split`` (half to the lower bound on its choice, half over upper bounds
        on the others), the experts the rest (half to the chosen one)."""
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        alpha_r, alpha_e = self.split(alpha)
        select, estimate = ROUTER_STAGES
        everyone = [(e, None) for e in self.experts]
        choice = self.router.sample_counts(xs, n0, stage=select, **kw).argmax(dim=1)
        expert_select = shared_counts(everyone, xs, n0, stage=select, **kw)
        counts = shared_counts([(self.router, None), *everyone], xs, n, stage=estimate, **kw)
        k_all = len(self.experts)
        out = []
        for i in range(len(indices)):
            a = int(choice[i])
            levels = split_alphas(alpha_r, alpha_e, a, k_all)[2]
            c_a = [int(expert_select[k][i].argmax()) for k in range(k_all)]
            n_a = [int(counts[1 + k][i, c]) for k, c in enumerate(c_a)]
            cert = set_certificate(a, counts[0][i].tolist(), self.router.sigma, c_a, n_a,
                                   [n] * k_all, [e.sigma for e in self.experts], alpha_r, levels)
            out.append(SetRoutedCertificate(
                cert.prediction, cert.radius, a, self._name(a), self._name(cert.binding),
                tuple(counts[0][i].tolist()), self.router.sigma, tuple(c_a), tuple(n_a),
                (n,) * k_all, n0, tuple(e.sigma for e in self.experts), alpha_r, tuple(levels),
                seed, self.router.mode))
        return out

    def predict(self, x: torch.Tensor, n: int, alpha: float, *, batch_size: int = 1000,
                seed: int = 0, index: int = 0) -> int:
        """Router PREDICT at alpha_r, then the chosen expert's PREDICT at alpha_e."""
        alpha_r, alpha_e = self.split(alpha)
        k = self.router.predict_batch(x.unsqueeze(0), n, alpha_r, batch_size=batch_size,
                                      seed=seed, indices=[index], stage=ROUTER_PREDICT)[0]
        if k == ABSTAIN:
            return ABSTAIN
        return self.experts[k].predict(x, n, alpha_e, batch_size=batch_size, seed=seed,
                                       index=index)

    def _name(self, k: int) -> str:
        if k == ABSTAIN:
            return ""
        expert = self.experts[k]
        return getattr(expert, "name", f"expert{k}")


@dataclass(frozen=True)
class SetRoutedCertificate:
    """A set certificate of a routed input (:meth:`RoutedClassifier.certify_set_batch`)."""

    prediction: int
    radius: float
    expert: int  # the router's top choice
    expert_name: str
    binding: str  # the expert whose constraint sets the radius
    router_counts: tuple[int, ...]
    router_sigma: float
    expert_cA: tuple[int, ...]
    expert_nA: tuple[int, ...]
    expert_n: tuple[int, ...]  # equal, except in sequential mode (each expert's stopping look)
    n0: int
    expert_sigma: tuple[float, ...]
    alpha_router: float
    expert_alpha: tuple[float, ...]
    seed: int
    mode: str

    @property
    def alpha(self) -> float:
        return self.alpha_router + sum(self.expert_alpha)


def set_extras(cert: SetRoutedCertificate) -> dict:
    """The TSV columns of a set certificate (``SET_EXTRAS``; checked on reading)."""
    return {"expert": cert.expert_name, "binding": cert.binding, "router_cA": cert.expert,
            "router_counts": join_numbers(cert.router_counts), "router_sigma": cert.router_sigma,
            "alpha_router": cert.alpha_router, "expert_cA": join_numbers(cert.expert_cA),
            "expert_nA": join_numbers(cert.expert_nA), "expert_n": join_numbers(cert.expert_n),
            "expert_sigma": join_numbers(cert.expert_sigma),
            "expert_alpha": join_numbers(cert.expert_alpha), "n0": cert.n0, "alpha": cert.alpha,
            "seed": cert.seed, "mode": cert.mode}


def check_compatible(experts: Sequence[Smooth]) -> None:
    """Experts must share class count, input shape and (when carded) dataset."""
    if len(experts) < 2:
        raise ConfigError(f"routing needs at least 2 experts, got {len(experts)}")
    first = experts[0]
    for e in experts[1:]:
        for what, a, b in (("class count", first.num_classes, e.num_classes),
                           ("input size", first.input_shape, e.input_shape),
                           ("dataset", getattr(getattr(first, "card", None), "dataset", None),
                            getattr(getattr(e, "card", None), "dataset", None))):
            if a != b:
                raise ConfigError(f"experts: {_label(first)} and {_label(e)} differ in {what} "
                                  f"({a} vs {b}); a router chooses among experts of one task")


def _label(expert: Smooth) -> str:
    return getattr(expert, "name", None) or f"sigma={expert.sigma}"


def routed_extras(cert: RoutedCertificate) -> dict:
    """The TSV extras of a routed certificate (both sets of counts, both alphas)."""
    e = cert.expert_cert
    return {"expert": cert.expert_name or "-", "sigma": e.sigma if e else 0.0,
            "router_radius": cert.router_radius, "expert_radius": cert.expert_radius,
            "router_cA": cert.router.cA, "router_nA": cert.router.nA,
            "router_sigma": cert.router.sigma,
            "router_n": cert.router.n,
            "cA": e.cA if e else -1, "nA": e.nA if e else 0, "n": e.n if e else cert.router.n,
            "n0": cert.router.n0, "alpha": cert.alpha, "alpha_router": cert.alpha_router,
            "alpha_expert": cert.alpha_expert, "seed": cert.router.seed,
            "mode": cert.router.mode}


ROUTED_EXTRAS = ("expert", "sigma", "router_radius", "expert_radius", "router_cA", "router_nA",
                 "router_n", "router_sigma", "cA", "nA", "n", "n0", "alpha", "alpha_router",
                 "alpha_expert", "seed", "mode")
