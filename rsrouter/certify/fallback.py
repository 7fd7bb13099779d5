"""Router, then cascade: the set certificate, and the multiscale cascade where it abstains.

WORK IN PROGRESS (branch ``fallback-cert``): the composition and its coverage test; not yet a
bench method, a TSV schema or a live path.

The classifier certified. The router ``R(x)`` (argmax of the smoothed router) picks expert
``k``; the routed classifier ``G_R(x)`` is the class ``c`` with ``p_{R(x), c}(x) > 1/2``, and is
undecided where no class of that expert has more than half; the cascade ``G_C`` is Jeong &
Shin's. ``H(x) = G_R(x)`` where it is decided, else ``G_C(x)``.

- **Routed path** (the set certificate certifies ``c`` within ``r``): within ``r`` every expert
  the router can pick has ``p_{k, c} > 1/2``, so ``G_R = c`` is decided and ``H = c``.
- **Fallback path** (the set certificate abstains; the cascade certifies ``c`` within ``r_C``):
  within ``r``, where ``G_R`` is undecided ``H = G_C = c``; where it is decided its class must be
  ``c``: every expert ``k`` the router can pick there must keep every other class at most 1/2.
  Expert ``k`` cannot be picked within ``e_k`` (:func:`.set_certificate.entry_radii`); with its
  counts, class ``c'`` stays below 1/2 within ``-sigma_k Phi^-1(p_up(k, c'))``. So
  ``r = min(r_C, min_k max(e_k, off_k))``, ``off_k`` the smallest of those over ``c' != c``
  (0 for an expert without counts here).

Alpha: a union over every bound either path can use, each fixed by the selection draws: the set
certificate's at ``alpha_routed``; the cascade's at ``alpha_cascade``; and an upper bound on
``p_{k, c'}`` for every expert ``k`` and class ``c'`` at ``alpha_off / (K C)`` (the fallback
class is one of the stages' selection classes, so every ``c' != c`` is among them whichever
stage decides). Which path is taken depends on the estimation draws; the union does not care,
and an expert counted only where the fallback runs is a bound of the union evaluated lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .bounds import ABSTAIN, upper_confidence_bound
from .cascade import cascade_one
from .lazy_set import lazy_expert_levels
from .set_certificate import entry_radii, set_certificate


@dataclass(frozen=True)
class FallbackLevels:
    routed: float  # the set certificate's whole level (router and experts)
    cascade: float  # the cascade's whole level
    off: float  # each off-class upper bound's level

    def total(self, experts: int, classes: int) -> float:
        return self.routed + self.cascade + self.off * experts * classes


def fallback_levels(alpha: float, experts: int, classes: int, share: float = 0.1
                    ) -> FallbackLevels:
    """``share`` of ``alpha`` to the fallback (half to the cascade, half over the ``K C``
    off-class bounds), the rest to the set certificate."""
    fallback = alpha * share
    return FallbackLevels(alpha - fallback, fallback / 2, fallback / 2 / (experts * classes))


def off_class_radius(counts: np.ndarray, c: int, sigma: float, level: float) -> float:
    """How far every class but ``c`` of an expert with estimation ``counts`` provably stays at or
    below 1/2: ``min over c' != c of -sigma Phi^-1(p_up(c'))`` (0 once a bound reaches 1/2)."""
    n = int(counts.sum())
    worst = max(upper_confidence_bound(int(counts[k]), n, level)
                for k in range(len(counts)) if k != c)
    return max(0.0, float(-sigma * ndtri(worst)))


@dataclass(frozen=True)
class FallbackCertificate:
    prediction: int
    radius: float
    path: str  # "routed", "fallback" or "abstain"
    binding: int  # routed: the set certificate's binding expert; fallback: -1 the cascade, else k
    evaluated: tuple[bool, ...]  # the experts whose estimation draws this input needed


def fallback_certificate(router_cA: int, router_counts: Sequence[int], router_sigma: float,
                         expert_cA: Sequence[int], expert_counts: Sequence[np.ndarray],
                         expert_sigma: Sequence[float], alpha: float, *,
                         counted: Sequence[bool] | None = None, share: float = 0.1,
                         threshold: float = 0.5) -> FallbackCertificate:
    """One input: the set certificate over the ``counted`` experts (all by default; the lazy set
    certificate's plan, fixed by the selection draws, otherwise), and where it abstains the
    cascade over every expert (largest sigma first), capped by every expert the router can pick:
    ``max(e_k, off_k)``, ``off_k`` from the estimation counts of an expert evaluated on this input
    (counted, or a stage the cascade visited), 0 for any other. ``expert_counts[k]``: expert
    ``k``'s estimation class counts (read only where evaluated); ``expert_cA``: each expert's
    selection class. ``evaluated`` says which experts' estimation draws were used (the cost).
    """
    k_all = len(expert_cA)
    classes = len(expert_counts[0])
    levels = fallback_levels(alpha, k_all, classes, share)
    a_r, a_e = levels.routed / 2, levels.routed / 2
    counted = [True] * k_all if counted is None else [bool(v) for v in counted]
    expert_alpha = lazy_expert_levels(a_e, int(router_cA), counted)
    n_a = [int(c[ca]) if use else 0 for c, ca, use in zip(expert_counts, expert_cA, counted)]
    n = [int(np.sum(c)) if use else 0 for c, use in zip(expert_counts, counted)]
    routed = set_certificate(router_cA, router_counts, router_sigma, expert_cA, n_a, n,
                             expert_sigma, a_r, expert_alpha, counted=counted)
    if routed.prediction != ABSTAIN:
        return FallbackCertificate(routed.prediction, routed.radius, "routed", routed.binding,
                                   tuple(counted))
    order = sorted(range(k_all), key=lambda k: -float(expert_sigma[k]))
    stages = [(int(expert_cA[k]), np.asarray(expert_counts[k]), float(expert_sigma[k]))
              for k in order]
    c, r_c, stop, _ = cascade_one(stages, levels.cascade, threshold)
    evaluated = list(counted)
    for k in order[:stop + 1]:
        evaluated[k] = True
    if c == ABSTAIN:
        return FallbackCertificate(ABSTAIN, 0.0, "abstain", -1, tuple(evaluated))
    entry = entry_radii(router_cA, router_counts, router_sigma, a_r)
    radius, binding = r_c, -1
    for k in range(k_all):
        off = off_class_radius(np.asarray(expert_counts[k]), c, float(expert_sigma[k]),
                               levels.off) if evaluated[k] else 0.0
        limit = max(entry[k], off)
        if not limit >= radius:
            radius, binding = limit, k
    if not radius > 0:
        return FallbackCertificate(ABSTAIN, 0.0, "abstain", binding, tuple(evaluated))
    return FallbackCertificate(int(c), float(radius), "fallback", binding, tuple(evaluated))
