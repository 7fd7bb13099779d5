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

:func:`set_routed_certificate` is the one composition from counts (the live path of
:meth:`rsrouter.routing.routed.RoutedClassifier.certify_set_batch` and the bench's
:func:`rsrouter.bench.methods.set_frame` both call it). Its TSV row: :data:`SET_EXTRAS`,
:func:`set_extras`, checked on reading by :func:`check_set_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import CountsError
from .bounds import (
    ABSTAIN,
    Counts,
    certified_radius,
    check_counts,
    lower_confidence_bound,
    split_alpha,
    upper_confidence_bound,
)
from .checks import RADIUS_TOLERANCE, floats, ints, one_row, require_columns, row_error

SET_EXTRAS = ("expert", "binding", "router_cA", "router_counts", "router_sigma", "alpha_router",
              "expert_cA", "expert_nA", "expert_n", "expert_sigma", "expert_alpha", "n0",
              "alpha", "seed", "mode")


def join_numbers(values) -> str:
    """A TSV cell holding a list of counts or levels (floats to 10 significant digits)."""
    return ",".join(f"{v:.10g}" if isinstance(v, float) else str(int(v)) for v in values)


def router_levels(alpha_router: float, experts: int) -> tuple[float, float]:
    """``(lower, upper)``: the router's level for the lower bound on its choice (half of
    ``alpha_router``) and for each upper bound on the ``experts - 1`` others (the other half
    split evenly)."""
    lower, rest = split_alpha(alpha_router, 0.5)
    return lower, rest / (experts - 1)


def expert_levels(alpha_expert: float, chosen: int, experts: int) -> list[float]:
    """Each expert's certificate level: half of ``alpha_expert`` to the ``chosen`` one, the
    other half split evenly over the others."""
    first, rest = split_alpha(alpha_expert, 0.5)
    return [first if k == chosen else rest / (experts - 1) for k in range(experts)]


@dataclass(frozen=True)
class SetCertificate:
    prediction: int  # the chosen expert's certified class, or ABSTAIN
    radius: float
    chosen: int  # the router's top choice A (from its selection draws)
    binding: int  # the expert whose constraint sets the radius (A: its own radius)
    entry: tuple[float, ...]  # e_k: the distance at which the router may switch to k (A: 0)


def entry_radii(router_cA: int, router_counts: Sequence[int], router_sigma: float,
                alpha_router: float) -> list[float]:
    """``e_k``: the distance from ``x`` within which the smoothed router cannot switch from its
    choice ``A`` to expert ``k`` (0 for ``A``; negative: ``k`` may win at ``x`` itself), from the
    lower bound on ``A`` and an upper bound on ``k`` at :func:`router_levels`."""
    k_all, a = len(router_counts), int(router_cA)
    n_r = int(sum(router_counts))
    low_level, up_level = router_levels(alpha_router, k_all)
    p_low = lower_confidence_bound(int(router_counts[a]), n_r, low_level)
    # p_low = 0 gives -inf (k may win anywhere); p_up < 1 unless k took every vote
    return [0.0 if k == a else router_sigma / 2 * (float(ndtri(p_low)) - float(ndtri(
        upper_confidence_bound(int(router_counts[k]), n_r, up_level)))) for k in range(k_all)]


def set_certificate(router_cA: int, router_counts: Sequence[int], router_sigma: float,
                    expert_cA: Sequence[int], expert_nA: Sequence[int], expert_n: Sequence[int],
                    expert_sigma: Sequence[float], alpha_router: float,
                    expert_alpha: Sequence[float],
                    counted: Sequence[bool] | None = None) -> SetCertificate:
    """The set certificate from counts (all estimation counts; ``*_cA`` from selection).

    ``alpha_router`` is the router's whole level (split here: half to the lower bound on
    ``router_cA``, half over the upper bounds); ``expert_alpha[k]`` is expert ``k``'s level
    (see :func:`expert_levels`). ``counted`` (the lazy set certificate, :func:`lazy_plan`): the
    experts whose estimation counts exist; any other is treated as certifying nothing, so only
    its entry radius ``e_k`` protects the input from it.
    """
    k_all, a = len(expert_cA), int(router_cA)
    if k_all < 2 or min(int(v) for v in router_counts) < 0:
        raise ValueError("the set certificate needs >= 2 experts and router counts >= 0")
    counted = [True] * k_all if counted is None else [bool(v) for v in counted]
    if not counted[a]:
        raise ValueError("the set certificate needs the chosen expert's counts")
    radii = [certified_radius(int(expert_nA[k]), int(expert_n[k]), float(expert_alpha[k]),
                              float(expert_sigma[k])) if counted[k] else None
             for k in range(k_all)]
    entry = entry_radii(a, router_counts, router_sigma, alpha_router)
    if radii[a] is None:
        return SetCertificate(ABSTAIN, 0.0, a, a, tuple(entry))
    c = int(expert_cA[a])
    radius, binding = radii[a], a
    for k in range(k_all):
        if k == a:
            continue
        e_k = entry[k]
        agrees = radii[k] is not None and int(expert_cA[k]) == c
        limit = max(e_k, radii[k] if agrees else -math.inf)
        if not limit >= radius:  # NaN (impossible counts) binds: abstain rather than ignore
            radius, binding = limit, k
    if not radius > 0:
        return SetCertificate(ABSTAIN, 0.0, a, binding, tuple(entry))
    return SetCertificate(c, float(radius), a, binding, tuple(entry))



@dataclass(frozen=True)
class SetRoutedCertificate:
    """A set certificate of a routed input, with every count it rests on."""

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


def set_routed_certificate(router: Counts, router_counts: Sequence[int],
                           experts: Sequence[Counts], names: Sequence[str], alpha_router: float,
                           alpha_expert: float) -> SetRoutedCertificate:
    """The set certificate of one input from counts: the router (its choice ``router.cA``, its
    estimation counts of every expert) at ``alpha_router``, the experts' certificates within
    ``alpha_expert`` (:func:`expert_levels`), each level times its counts' share.

    Raises:
        CountsError: a router choice that is not one of ``names``.
        ValueError: fewer than 2 experts, or negative router counts.
    """
    a = int(router.cA)
    if not 0 <= a < len(experts):
        raise CountsError(f"input idx {router.index}: the router chose expert {a}, but it has "
                          f"{len(experts)}")
    alpha_r = alpha_router * router.share
    levels = [lv * e.share for lv, e in zip(expert_levels(alpha_expert, a, len(experts)),
                                            experts)]
    c_a, n_a, n = (tuple(int(getattr(e, col)) for e in experts) for col in ("cA", "nA", "n"))
    sigmas = tuple(float(e.sigma) for e in experts)
    cert = set_certificate(a, router_counts, router.sigma, c_a, n_a, n, sigmas, alpha_r, levels)
    return SetRoutedCertificate(
        cert.prediction, cert.radius, a, names[a], names[cert.binding],
        tuple(int(v) for v in router_counts), router.sigma, c_a, n_a, n, int(router.n0), sigmas,
        alpha_r, tuple(levels), int(router.seed), str(router.mode))


def set_extras(cert: SetRoutedCertificate) -> dict:
    """The TSV columns of a set certificate (:data:`SET_EXTRAS`; checked on reading)."""
    return {"expert": cert.expert_name, "binding": cert.binding, "router_cA": cert.expert,
            "router_counts": join_numbers(cert.router_counts), "router_sigma": cert.router_sigma,
            "alpha_router": cert.alpha_router, "expert_cA": join_numbers(cert.expert_cA),
            "expert_nA": join_numbers(cert.expert_nA), "expert_n": join_numbers(cert.expert_n),
            "expert_sigma": join_numbers(cert.expert_sigma),
            "expert_alpha": join_numbers(cert.expert_alpha), "n0": cert.n0, "alpha": cert.alpha,
            "seed": cert.seed, "mode": cert.mode}


def check_set_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                   radius: np.ndarray) -> None:
    """Set-certificate rows: the radius and the prediction follow from the router's counts and
    every expert's, at levels that sum to alpha.

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    require_columns(df, where, SET_EXTRAS, "a set-certificate TSV")
    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, levels = ints(r.router_counts), floats(r.expert_alpha)
            c_a, n_a, n = ints(r.expert_cA), ints(r.expert_nA), ints(r.expert_n)
            sigmas = floats(r.expert_sigma)
            if not len(counts) == len(levels) == len(c_a) == len(n_a) == len(n) == len(sigmas):
                raise CountsError("the router and the experts list different numbers of experts")
            if len(counts) < 2 or min(counts) < 0:
                raise CountsError("router_counts must hold a count >= 0 for each of >= 2 experts")
            if abs(float(r.alpha_router) + sum(levels) - float(r.alpha)) > 1e-9:
                raise CountsError("alpha_router + the experts' levels must equal alpha")
            check_counts(int(r.router_cA), counts[int(r.router_cA)], sum(counts), int(r.n0),
                         float(r.router_sigma), float(r.alpha_router))
            for k in range(len(c_a)):
                check_counts(c_a[k], n_a[k], n[k], int(r.n0), sigmas[k], levels[k])
        except (CountsError, ValueError, IndexError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        cert = set_certificate(int(r.router_cA), counts, float(r.router_sigma), c_a, n_a, n,
                               sigmas, float(r.alpha_router), levels)
        if cert.prediction != predict[i] or abs(cert.radius - radius[i]) > RADIUS_TOLERANCE:
            raise row_error(where, df, one_row(df, i), "its prediction and radius do not follow "
                            f"from its counts (the counts give {cert.prediction} within "
                            f"{cert.radius:.6f})")
