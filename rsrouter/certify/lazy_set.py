"""The lazy set certificate: the set certificate counting other experts only where they can
matter, decided from the selection draws alone.

The set certificate (:mod:`.set_certificate`) counts every expert on every input: ``K`` passes.
But an expert ``k`` that disagrees with the chosen expert ``A`` on the class, or whose entry
radius ``e_k`` lies beyond ``A``'s own radius, cannot raise the radius. :func:`lazy_plan` picks,
from plug-in estimates on the ``n0`` selection votes of the router and of every expert, the
experts worth counting; the others are not run on the ``n`` estimation draws and stand in the
certificate as certifying nothing (their constraint is ``e_k`` alone, which is valid for any
``k``). The plan is a function of the selection draws only, so given them every bound's level is
fixed (:func:`lazy_expert_levels`): the union bound of the set certificate holds as it is, with
``alpha_expert`` split over the counted experts only (docs/theory.md, "The lazy set
certificate"). Rows record the selection votes and the margin, so a reader recomputes the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import CountsError
from .bounds import Counts, check_counts, split_alpha
from .checks import RADIUS_TOLERANCE, floats, ints, one_row, require_columns, row_error
from .set_certificate import (
    SET_EXTRAS,
    SetRoutedCertificate,
    join_numbers,
    set_certificate,
    set_extras,
)

LAZY_SET_EXTRAS = (*SET_EXTRAS, "counted", "router_select", "expert_select_nA", "margin")


def lazy_expert_levels(alpha_expert: float, chosen: int, counted: Sequence[bool]) -> list[float]:
    """The lazy set certificate's expert levels: half of ``alpha_expert`` to the ``chosen``
    expert and the other half split evenly over the other ``counted`` ones (all of it to the
    chosen one when no other is counted); 0 for an expert that is not counted."""
    others = [k for k, c in enumerate(counted) if c and k != chosen]
    if not others:
        return [alpha_expert if k == chosen else 0.0 for k in range(len(counted))]
    first, rest = split_alpha(alpha_expert, 0.5)
    return [first if k == chosen else rest / len(others) if k in others else 0.0
            for k in range(len(counted))]


def _share(votes: int, n0: int) -> float:
    """A plug-in probability from ``votes`` of ``n0`` selection draws, kept off 0 and 1."""
    return (votes + 0.5) / (n0 + 1)


def lazy_plan(router_select: Sequence[int], expert_cA: Sequence[int],
              expert_select_nA: Sequence[int], n0: int, router_sigma: float,
              expert_sigma: Sequence[float], margin: float = 0.0) -> tuple[bool, ...]:
    """Which experts the lazy set certificate counts, from the SELECTION draws alone (so the plan
    is fixed before any estimation draw): the router's top choice ``A`` always; another expert
    ``k`` only where counting it can raise the radius by plug-in estimates from the selection
    votes, widened by ``margin`` (in radius units; larger counts more):

    - ``k`` agrees with ``A`` on the class (``expert_cA``): otherwise its constraint is ``e_k``
      whatever its counts say;
    - ``e_k`` (plug-in) ``< R_A`` (plug-in) ``+ margin``: the router's radius towards ``k`` may
      bind before ``A``'s own;
    - ``R_k`` (plug-in) ``> e_k - margin``: ``k``'s certificate may reach beyond ``e_k``.

    ``router_select``: the router's selection votes per expert; ``expert_select_nA``: each
    expert's selection votes for its own top class ``expert_cA``.
    """
    k_all = len(expert_cA)
    if not len(router_select) == len(expert_select_nA) == len(expert_sigma) == k_all:
        raise ValueError("the router and the experts list different numbers of experts")
    a = int(np.argmax(router_select))
    q_a = float(ndtri(_share(int(router_select[a]), n0)))
    r_hat = [float(s) * float(ndtri(_share(int(v), n0)))
             for s, v in zip(expert_sigma, expert_select_nA)]
    plan = []
    for k in range(k_all):
        e_k = router_sigma / 2 * (q_a - float(ndtri(_share(int(router_select[k]), n0))))
        plan.append(bool(k == a or (int(expert_cA[k]) == int(expert_cA[a])
                                    and e_k < r_hat[a] + margin and r_hat[k] > e_k - margin)))
    return tuple(plan)


@dataclass(frozen=True)
class LazySetRoutedCertificate(SetRoutedCertificate):
    """A lazy set certificate: a set certificate with its plan and the selection votes it was
    made from (an expert not counted has ``expert_nA = expert_n = 0`` and level 0)."""

    counted: tuple[bool, ...] = ()
    router_select: tuple[int, ...] = ()
    expert_select_nA: tuple[int, ...] = ()
    margin: float = 0.0


def lazy_set_routed_certificate(router: Counts, router_counts: Sequence[int],
                                router_select: Sequence[int], expert_cA: Sequence[int],
                                expert_select_nA: Sequence[int],
                                experts: Sequence[Counts | None], sigmas: Sequence[float],
                                names: Sequence[str], alpha_router: float, alpha_expert: float,
                                margin: float = 0.0) -> LazySetRoutedCertificate:
    """The lazy set certificate of one input: the plan from the selection votes
    (:func:`lazy_plan`), then the set certificate from the estimation counts of the router and
    of the planned experts (``experts[k]``: expert ``k``'s counts, None where it was not run).

    Raises:
        CountsError: the router's choice is not the top of its selection votes, or a planned
            expert has no counts.
    """
    n0 = int(router.n0)
    counted = lazy_plan(router_select, expert_cA, expert_select_nA, n0, router.sigma, sigmas,
                        margin)
    a = int(router.cA)
    if a != int(np.argmax(router_select)) or sum(int(v) for v in router_select) != n0:
        raise CountsError(f"input idx {router.index}: the router's choice {a} and its selection "
                          f"votes {list(router_select)} (n0 = {n0}) disagree")
    missing = [names[k] for k, c in enumerate(counted) if c and experts[k] is None]
    if missing:
        raise CountsError(f"input idx {router.index}: the plan counts {missing}, which have no "
                          "counts")
    levels = lazy_expert_levels(alpha_expert, a, counted)
    n_a = tuple(int(e.nA) if c else 0 for e, c in zip(experts, counted))
    n = tuple(int(e.n) if c else 0 for e, c in zip(experts, counted))
    c_a = tuple(int(v) for v in expert_cA)
    cert = set_certificate(a, router_counts, router.sigma, c_a, n_a, n, sigmas, alpha_router,
                           levels, counted)
    return LazySetRoutedCertificate(
        cert.prediction, cert.radius, a, names[a], names[cert.binding],
        tuple(int(v) for v in router_counts), router.sigma, c_a, n_a, n, n0,
        tuple(float(v) for v in sigmas), alpha_router, tuple(levels), int(router.seed),
        str(router.mode), counted, tuple(int(v) for v in router_select),
        tuple(int(v) for v in expert_select_nA), float(margin))


def lazy_set_extras(cert: LazySetRoutedCertificate) -> dict:
    """The TSV columns of a lazy set certificate (:data:`LAZY_SET_EXTRAS`)."""
    return {**set_extras(cert), "counted": join_numbers(int(c) for c in cert.counted),
            "router_select": join_numbers(cert.router_select),
            "expert_select_nA": join_numbers(cert.expert_select_nA), "margin": cert.margin}


def check_lazy_set_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                        radius: np.ndarray) -> None:
    """Lazy set-certificate rows: the plan follows from the recorded selection votes, levels
    sum to alpha, and the radius and prediction follow from the counts.

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    require_columns(df, where, LAZY_SET_EXTRAS, "a lazy set-certificate TSV")
    for column in ("margin", "alpha", "alpha_router"):
        if df[column].nunique() > 1:  # one plan rule and one level for every input
            raise CountsError(f"{where}: rows with different {column}s; a lazy set certificate "
                              f"fixes its {column} before any draw")
    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, levels = ints(r.router_counts), floats(r.expert_alpha)
            c_a, n_a, n = ints(r.expert_cA), ints(r.expert_nA), ints(r.expert_n)
            sigmas, counted = floats(r.expert_sigma), [bool(v) for v in ints(r.counted)]
            select, select_na = ints(r.router_select), ints(r.expert_select_nA)
            n0, a = int(r.n0), int(r.router_cA)
            if not (len(counts) == len(levels) == len(c_a) == len(n_a) == len(n) == len(sigmas)
                    == len(counted) == len(select) == len(select_na)) or len(counts) < 2:
                raise CountsError("the router and the experts list different numbers of experts")
            if min(counts) < 0 or min(select) < 0 or sum(select) != n0 \
                    or a != int(np.argmax(select)) or not all(0 <= v <= n0 for v in select_na):
                raise CountsError("the selection votes do not give the router's choice")
            plan = lazy_plan(select, c_a, select_na, n0, float(r.router_sigma), sigmas,
                             float(r.margin))
            if tuple(counted) != plan:
                raise CountsError(f"counted {counted} is not the plan {list(plan)} the "
                                  "selection votes give")
            expected = lazy_expert_levels(1.0, a, counted)
            total = sum(levels)
            if abs(float(r.alpha_router) + total - float(r.alpha)) > 1e-9 or any(
                    abs(lv - e * total) > 1e-9 * total for lv, e in zip(levels, expected)):
                raise CountsError("the levels are not alpha_router + the lazy split of the rest")
            check_counts(a, counts[a], sum(counts), n0, float(r.router_sigma),
                         float(r.alpha_router))
            for k in range(len(c_a)):
                if counted[k]:
                    check_counts(c_a[k], n_a[k], n[k], n0, sigmas[k], levels[k])
                elif n_a[k] or n[k]:
                    raise CountsError(f"expert {k} is not counted but has counts")
        except (CountsError, ValueError, IndexError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        cert = set_certificate(a, counts, float(r.router_sigma), c_a, n_a, n, sigmas,
                               float(r.alpha_router), levels, counted)
        if cert.prediction != predict[i] or abs(cert.radius - radius[i]) > RADIUS_TOLERANCE:
            raise row_error(where, df, one_row(df, i), "its prediction and radius do not follow "
                            f"from its counts (the counts give {cert.prediction} within "
                            f"{cert.radius:.6f})")
