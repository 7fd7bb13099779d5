"""Router, then cascade: the lazy set certificate, and the multiscale cascade where it abstains.

The classifier certified. The router ``R(x)`` (argmax of the smoothed router) picks expert
``k``; the routed classifier ``G_R(x)`` is the class ``c`` with ``p_{R(x), c}(x) > 1/2``, and is
undecided where no class of that expert has more than half; the cascade ``G_C`` is Jeong &
Shin's (:mod:`.cascade`, largest sigma first). ``H(x) = G_R(x)`` where it is decided, else
``G_C(x)``.

- **Routed path** (the lazy set certificate certifies ``c`` within ``r``): within ``r`` every
  expert the router can pick has ``p_{k, c} > 1/2``, so ``G_R = c`` is decided and ``H = c``.
- **Fallback path** (it abstains; the cascade certifies ``c`` within ``r_C``): within ``r``,
  where ``G_R`` is undecided ``H = G_C = c``; where it is decided its class must be ``c``: every
  expert ``k`` the router can pick there must keep every other class at most 1/2. Expert ``k``
  cannot be picked within ``e_k`` (:func:`.set_certificate.entry_radii`); with its counts, class
  ``c'`` stays below 1/2 within ``-sigma_k Phi^-1(p_up(k, c'))``. So
  ``r = min(r_C, min_k max(e_k, off_k))``, ``off_k`` the smallest of those over ``c' != c``
  (0 for an expert whose estimation draws this input did not need).

Alpha (docs/theory.md, "Router, then cascade"): a union over every bound either path can use,
each fixed by the selection draws: the lazy set certificate's at ``alpha_router`` and
``alpha_expert``; the cascade's at ``alpha_cascade``; and an upper bound on ``p_{k, c'}`` for
every expert ``k`` and class ``c'`` at ``alpha_off`` each (``K C`` of them: the fallback class
is one of the stages' selection classes, so every ``c' != c`` is among them whichever stage
decides). Which path is taken depends on the estimation draws; the union does not care, and an
expert counted only where the fallback runs is a bound of the union evaluated lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.special import ndtri

from ..errors import CountsError
from .bounds import ABSTAIN, Counts, check_counts, split_alpha, upper_confidence_bound
from .cascade import cascade_one
from .checks import RADIUS_TOLERANCE, floats, ints, one_row, require_columns, row_error
from .lazy_set import (
    LAZY_SET_EXTRAS,
    LazySetRoutedCertificate,
    lazy_expert_levels,
    lazy_plan,
    lazy_set_extras,
    lazy_set_routed_certificate,
)
from .set_certificate import entry_radii

FALLBACK_EXTRAS = (*LAZY_SET_EXTRAS, "path", "evaluated", "class_counts", "fallback_share",
                   "alpha_cascade", "alpha_off")
DEFAULT_SHARE = 0.1  # of alpha, to the fallback (half to the cascade, half to the off bounds)


def fallback_levels(alpha: float, alpha_split: float, experts: int, classes: int,
                    share: float = DEFAULT_SHARE) -> tuple[float, float, float, float]:
    """``(alpha_router, alpha_expert, alpha_cascade, alpha_off)``: ``share`` of ``alpha`` to the
    fallback, half to the cascade and half over ``experts * classes`` off-class upper bounds
    (``alpha_off`` is each one's level); the rest split between router and experts at
    ``alpha_split``. ``alpha_router + alpha_expert + alpha_cascade + experts classes alpha_off``
    is ``alpha``.

    Raises:
        ValueError: ``share`` outside (0, 1).
    """
    if not 0 < share < 1:
        raise ValueError(f"the fallback share of alpha must be in (0, 1), got {share}")
    fallback, rest = split_alpha(alpha, share)
    a_r, a_e = split_alpha(rest, alpha_split)
    return a_r, a_e, fallback / 2, fallback / 2 / (experts * classes)


def off_class_radius(counts: np.ndarray, c: int, sigma: float, level: float) -> float:
    """How far every class but ``c`` of an expert with estimation ``counts`` provably stays
    below 1/2: ``min over c' != c of -sigma Phi^-1(p_up(c'))``, each upper bound at ``level``
    (0 once a bound reaches 1/2)."""
    n = int(counts.sum())
    worst = max(upper_confidence_bound(int(counts[k]), n, level)
                for k in range(len(counts)) if k != c)
    return max(0.0, float(-sigma * ndtri(worst)))


def fallback_radius(router_cA: int, router_counts: Sequence[int], router_sigma: float,
                    expert_cA: Sequence[int], counts_of: Callable[[int], np.ndarray],
                    expert_sigma: Sequence[float], alpha_router: float, alpha_cascade: float,
                    alpha_off: float, evaluated: list[bool],
                    threshold: float = 0.5) -> tuple[int, float, int]:
    """The fallback path of one input: ``(class, radius, binding)``, ``binding`` the expert
    whose ``max(e_k, off_k)`` sets the radius, -1 where the cascade's own radius does or the
    cascade abstains; ABSTAIN with 0 where the cascade abstains or a cap reaches 0.
    ``counts_of(k)``: expert ``k``'s estimation class counts, asked for only where needed (the
    cascade's stages, largest sigma first, then the caps of experts already ``evaluated``,
    which it updates)."""
    order = sorted(range(len(expert_cA)), key=lambda k: -float(expert_sigma[k]))

    class Stages(Sequence):
        """The cascade's stages, each expert's counts asked for when the cascade reaches it."""

        def __len__(self) -> int:
            return len(order)

        def __getitem__(self, i):
            if isinstance(i, slice):
                return [self[j] for j in range(*i.indices(len(order)))]
            k = order[i]
            evaluated[k] = True
            return int(expert_cA[k]), np.asarray(counts_of(k)), float(expert_sigma[k])

    c, radius, _, _ = cascade_one(Stages(), alpha_cascade, threshold)
    if c == ABSTAIN:
        return ABSTAIN, 0.0, -1
    entry = entry_radii(router_cA, router_counts, router_sigma, alpha_router)
    binding = -1
    for k in range(len(expert_cA)):
        off = off_class_radius(np.asarray(counts_of(k)), c, float(expert_sigma[k]), alpha_off) \
            if evaluated[k] else 0.0
        limit = max(entry[k], off)
        if not limit >= radius:  # NaN binds
            radius, binding = limit, k
    return (int(c), float(radius), binding) if radius > 0 else (ABSTAIN, 0.0, binding)


@dataclass(frozen=True)
class FallbackRoutedCertificate(LazySetRoutedCertificate):
    """A lazy set certificate with the cascade behind it: which path certified (``routed``,
    ``fallback`` or ``abstain``), whose estimation draws were used (``evaluated``) and their
    class counts (None where not evaluated), the share of alpha given to the fallback and its
    levels."""

    path: str = "routed"
    evaluated: tuple[bool, ...] = ()
    class_counts: tuple[tuple[int, ...] | None, ...] = ()
    fallback_share: float = DEFAULT_SHARE
    alpha_cascade: float = 0.0
    alpha_off: float = 0.0
    classes: int = 0

    @property
    def alpha(self) -> float:
        return (self.alpha_router + sum(self.expert_alpha) + self.alpha_cascade
                + self.alpha_off * len(self.expert_cA) * self.classes)


def fallback_routed_certificate(router: Counts, router_counts: Sequence[int],
                                router_select: Sequence[int], expert_cA: Sequence[int],
                                expert_select_nA: Sequence[int],
                                counts_of: Callable[[int], np.ndarray], sigmas: Sequence[float],
                                names: Sequence[str], alpha: float, alpha_split: float,
                                margin: float = 0.0, share: float = DEFAULT_SHARE,
                                classes: int | None = None) -> FallbackRoutedCertificate:
    """Router, then cascade, on one input: the lazy set certificate
    (:func:`.lazy_set.lazy_set_routed_certificate`) and, where it abstains, the cascade over
    every expert capped as the module says. ``counts_of(k)``: expert ``k``'s estimation class
    counts, asked for only for the experts the plan counts and the stages the cascade reaches
    (the cost); ``classes``: the class count (default: the length of the first counts asked
    for).

    Raises:
        CountsError: as the lazy set certificate.
        ValueError: ``share`` outside (0, 1).
    """
    n0, k_all = int(router.n0), len(expert_cA)
    plan = lazy_plan(router_select, expert_cA, expert_select_nA, n0, router.sigma, sigmas, margin)
    fetched: dict[int, np.ndarray] = {}

    def fetch(k: int) -> np.ndarray:
        if k not in fetched:
            fetched[k] = np.asarray(counts_of(k), dtype=np.int64)
        return fetched[k]

    experts = [Counts(int(expert_cA[k]), int(fetch(k)[int(expert_cA[k])]), int(fetch(k).sum()),
                      n0, float(sigmas[k]), router.seed, router.index, router.mode)
               if plan[k] else None for k in range(k_all)]
    classes = classes or len(next(iter(fetched.values())))
    a_r, a_e, a_c, a_o = fallback_levels(alpha, alpha_split, k_all, classes, share)
    cert = lazy_set_routed_certificate(router, router_counts, router_select, expert_cA,
                                       expert_select_nA, experts, sigmas, names, a_r, a_e, margin)
    evaluated = list(plan)
    prediction, radius, binding, path = cert.prediction, cert.radius, cert.binding, "routed"
    if prediction == ABSTAIN:
        prediction, radius, k = fallback_radius(int(router.cA), router_counts, router.sigma,
                                                expert_cA, fetch, sigmas, a_r, a_c, a_o,
                                                evaluated)
        path = "abstain" if prediction == ABSTAIN else "fallback"
        binding = "cascade" if k < 0 else names[k]
    return FallbackRoutedCertificate(
        prediction, radius, cert.expert, cert.expert_name, binding, cert.router_counts,
        cert.router_sigma, cert.expert_cA, cert.expert_nA, cert.expert_n, cert.n0,
        cert.expert_sigma, cert.alpha_router, cert.expert_alpha, cert.seed, cert.mode,
        cert.counted, cert.router_select, cert.expert_select_nA, cert.margin, path,
        tuple(evaluated),
        tuple(tuple(int(v) for v in fetched[k]) if evaluated[k] else None for k in range(k_all)),
        float(share), a_c, a_o, classes)


def fallback_extras(cert: FallbackRoutedCertificate) -> dict:
    """The TSV columns of a router-then-cascade certificate (:data:`FALLBACK_EXTRAS`):
    ``class_counts`` holds each expert's estimation class counts (``-`` where not evaluated),
    experts separated by ``;``."""
    return {**lazy_set_extras(cert), "path": cert.path,
            "evaluated": ",".join(str(int(v)) for v in cert.evaluated),
            "class_counts": ";".join("-" if c is None else ",".join(map(str, c))
                                     for c in cert.class_counts),
            "fallback_share": cert.fallback_share, "alpha_cascade": cert.alpha_cascade,
            "alpha_off": cert.alpha_off}


def _class_counts(text: str) -> list[np.ndarray | None]:
    return [None if part == "-" else np.array(ints(part), dtype=np.int64)
            for part in str(text).split(";")]


def check_fallback_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                        radius: np.ndarray) -> None:
    """Router-then-cascade rows: the levels are the fallback split of alpha, the counted and
    evaluated experts' class counts are possible and match the set columns, and the whole
    certificate recomputed from the row (plan, path, which experts it needed, prediction,
    radius) is the row's.

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    require_columns(df, where, FALLBACK_EXTRAS, "a router-then-cascade TSV")
    for column in ("margin", "alpha", "alpha_router", "fallback_share"):
        if df[column].nunique() > 1:
            raise CountsError(f"{where}: rows with different {column}s; the certificate fixes "
                              f"its {column} before any draw")
    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, c_a, sigmas = ints(r.router_counts), ints(r.expert_cA), floats(r.expert_sigma)
            select, select_na = ints(r.router_select), ints(r.expert_select_nA)
            n_a, n, levels = ints(r.expert_nA), ints(r.expert_n), floats(r.expert_alpha)
            evaluated = [bool(v) for v in ints(r.evaluated)]
            classes = _class_counts(r.class_counts)
            k_all, n0, a = len(c_a), int(r.n0), int(r.router_cA)
            if not (len(counts) == len(sigmas) == len(select) == len(select_na) == len(n_a)
                    == len(n) == len(evaluated) == len(classes) == k_all) or k_all < 2:
                raise CountsError("the router and the experts list different numbers of experts")
            if any((c is None) == e for c, e in zip(classes, evaluated)):
                raise CountsError("class_counts must be given exactly for the evaluated experts")
            width = {len(c) for c in classes if c is not None}
            if len(width) != 1:
                raise CountsError("the evaluated experts' class counts differ in length")
            if min(counts) < 0 or min(select) < 0 or sum(select) != n0 \
                    or a != int(np.argmax(select)) or not all(0 <= v <= n0 for v in select_na):
                raise CountsError("the selection votes do not give the router's choice")
            share, alpha = float(r.fallback_share), float(r.alpha)
            split = float(r.alpha_router) / (alpha * (1 - share))
            if not 0 < split < 1:
                raise CountsError("alpha_router must be a share in (0, 1) of the lazy set "
                                  "certificate's alpha")
            a_r, a_e, a_c, a_o = fallback_levels(alpha, split, k_all, width.pop(), share)
            expected = lazy_expert_levels(a_e, a, ints(r.counted))
            if not np.allclose([float(r.alpha_router), float(r.alpha_cascade),
                                float(r.alpha_off), *levels], [a_r, a_c, a_o, *expected],
                               rtol=1e-8, atol=0):
                raise CountsError("the levels are not the fallback split of alpha")
            check_counts(a, counts[a], sum(counts), n0, float(r.router_sigma), a_r)
            counted = [bool(v) for v in ints(r.counted)]
            for k in range(k_all):
                if counted[k]:
                    check_counts(c_a[k], n_a[k], n[k], n0, sigmas[k], levels[k])
                elif n_a[k] or n[k]:
                    raise CountsError(f"expert {k} is not counted but has counts")
            for k, c in enumerate(classes):
                if c is not None:
                    check_counts(c_a[k], int(c[c_a[k]]), int(c.sum()), n0, sigmas[k], a_c)
                    if min(c) < 0:
                        raise CountsError(f"expert {k}: negative class counts")
                if counted[k] and (c is None or (n_a[k], n[k]) != (int(c[c_a[k]]),
                                                                   int(c.sum()))):
                    raise CountsError(f"expert {k}: expert_nA, expert_n and class_counts differ")
            got = fallback_routed_certificate(
                Counts(a, counts[a], sum(counts), n0, float(r.router_sigma), int(r.seed),
                       int(r.idx), str(r.mode)), counts, select, c_a, select_na,
                partial(_asked, classes), sigmas, [str(k) for k in range(k_all)], alpha,
                split, float(r.margin), share)
        except (CountsError, ValueError, IndexError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        if got.prediction != predict[i] or abs(got.radius - radius[i]) > RADIUS_TOLERANCE \
                or got.path != r.path or list(got.evaluated) != evaluated \
                or tuple(got.counted) != tuple(bool(v) for v in ints(r.counted)):
            raise row_error(where, df, one_row(df, i), "its plan, path, prediction and radius do "
                            f"not follow from its counts (they give {got.prediction} within "
                            f"{got.radius:.6f} by the {got.path} path)")


def _asked(classes: list[np.ndarray | None], k: int) -> np.ndarray:
    if classes[k] is None:
        raise CountsError(f"the certificate needs expert {k}'s counts, which the row lacks")
    return classes[k]
