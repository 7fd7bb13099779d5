"""The set certificate: a routed certificate that need not pin the router to one expert.

Dual RS certifies ``min(R_router, R_expert)``: beyond ``R_router`` the router may switch experts.
But the router cannot switch to just any expert: at distance ``rho`` from ``x``, expert ``k`` can
win the smoothed router's vote only once ``rho >= e_k = sigma_r / 2 * (Phi^-1(pA_low) -
Phi^-1(pk_up))`` (Cohen et al.'s two-class margin between the router's top choice ``A`` and
``k``). If every expert the router can reach within ``rho`` certifies the same class beyond
``rho``, the routed classifier keeps that class. The radius is

    R = min(R_A, min over k != A of max(e_k, R_k if expert k certifies A's class else 0))

where ``R_k`` is expert ``k``'s certified radius. With ``pk_up = 1 - pA_low`` (what the pinned
certificate assumes), every ``e_k`` is ``R_router`` and ``R >= min(R_router, R_A)``; with a
router that cannot decide at all, ``R`` is the radius on which all experts agree.

Alpha (docs/theory.md): the router's bounds - the lower bound on ``A`` and an upper bound on each
other expert - share ``alpha_router`` (half to the lower bound, half split over the ``K - 1``
upper bounds); the experts' certificates share ``alpha_expert`` (half to the chosen expert ``A``,
half split over the others). Given the selection draws, every bound used is one of these, so the
whole certificate fails with probability at most ``alpha_router + alpha_expert``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import beta, norm

from .smoothing import ABSTAIN, certified_radius, lower_confidence_bound

SET_EXTRAS = ("expert", "binding", "router_cA", "router_counts", "router_sigma", "alpha_router",
              "expert_cA", "expert_nA", "expert_n", "expert_sigma", "expert_alpha", "n0",
              "alpha", "seed", "mode")


def join_numbers(values) -> str:
    """A TSV cell holding a list of counts or levels (floats to 10 significant digits)."""
    return ",".join(f"{v:.10g}" if isinstance(v, float) else str(int(v)) for v in values)


def upper_confidence_bound(n_k: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson upper bound on a binomial proportion."""
    if n_k >= n:
        return 1.0
    return float(beta.ppf(1 - alpha, n_k + 1, n - n_k))


def split_alphas(alpha_router: float, alpha_expert: float, chosen: int,
                 experts: int) -> tuple[float, float, list[float]]:
    """``(lower, upper, per_expert)``: the router's lower-bound level, each of its upper-bound
    levels, and each expert's certificate level (the chosen expert's first half)."""
    others = experts - 1
    per_expert = [alpha_expert / 2 if k == chosen else alpha_expert / (2 * others)
                  for k in range(experts)]
    return alpha_router / 2, alpha_router / (2 * others), per_expert


@dataclass(frozen=True)
class SetCertificate:
    prediction: int  # the chosen expert's certified class, or ABSTAIN
    radius: float
    chosen: int  # the router's top choice A (from its selection draws)
    binding: int  # the expert whose constraint sets the radius (A: its own radius)
    entry: tuple[float, ...]  # e_k: the distance at which the router may switch to k (A: 0)


def set_certificate(router_cA: int, router_counts: Sequence[int], router_sigma: float,
                    expert_cA: Sequence[int], expert_nA: Sequence[int], expert_n: Sequence[int],
                    expert_sigma: Sequence[float], alpha_router: float,
                    expert_alpha: Sequence[float]) -> SetCertificate:
    """The set certificate from counts (all estimation counts; ``*_cA`` from selection).

    ``alpha_router`` is the router's whole level (split here: half to the lower bound on
    ``router_cA``, half over the upper bounds); ``expert_alpha[k]`` is expert ``k``'s level
    (see :func:`split_alphas`).
    """
    k_all, a = len(expert_cA), int(router_cA)
    if k_all < 2 or min(int(v) for v in router_counts) < 0:
        raise ValueError("the set certificate needs >= 2 experts and router counts >= 0")
    n_r = int(sum(router_counts))
    low_level, up_level = alpha_router / 2, alpha_router / (2 * (k_all - 1))
    p_low = lower_confidence_bound(int(router_counts[a]), n_r, low_level)
    radii = [certified_radius(int(expert_nA[k]), int(expert_n[k]), float(expert_alpha[k]),
                              float(expert_sigma[k])) for k in range(k_all)]
    entry = [0.0] * k_all
    if radii[a] is None:
        return SetCertificate(ABSTAIN, 0.0, a, a, tuple(entry))
    c = int(expert_cA[a])
    radius, binding = radii[a], a
    for k in range(k_all):
        if k == a:
            continue
        p_up = upper_confidence_bound(int(router_counts[k]), n_r, up_level)
        # p_low = 0 gives -inf (k may win anywhere); p_up < 1 unless k took every vote
        e_k = router_sigma / 2 * (float(norm.ppf(p_low)) - float(norm.ppf(p_up)))
        entry[k] = e_k
        agrees = radii[k] is not None and int(expert_cA[k]) == c
        limit = max(e_k, radii[k] if agrees else -math.inf)
        if not limit >= radius:  # NaN (impossible counts) binds: abstain rather than ignore
            radius, binding = limit, k
    if not radius > 0:
        return SetCertificate(ABSTAIN, 0.0, a, binding, tuple(entry))
    return SetCertificate(c, float(radius), a, binding, tuple(entry))

