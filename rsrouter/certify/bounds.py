"""Bounds and certificates from counts (torch-free): Clopper-Pearson bounds, radii, the alpha split.

Every binomial bound rsrouter uses is one of the two one-sided Clopper-Pearson bounds written
here, :func:`lower_bounds` and :func:`upper_bounds` (vectorized; :func:`lower_confidence_bound`
and :func:`upper_confidence_bound` for one count). CERTIFY (Cohen et al. 2019) turns the count
``nA`` of the class ``cA`` among ``n`` estimation draws into ``pA_lower`` at level ``alpha``;
if ``pA_lower <= 0.5`` the smoothed classifier ABSTAINs, else it is certified within
``R = sigma * Phi^-1(pA_lower)`` (l2, in pixel units).

Stored counts are checked before any bound is computed (:func:`check_counts`): a count that no
certification could have produced raises :class:`~rsrouter.errors.CountsError`. A level is
divided between the parts of a composed certificate by :func:`split_alpha` only. The beta and
normal quantiles come from ``scipy.special`` (``betaincinv``, ``ndtri``): bit for bit
``scipy.stats.beta.ppf`` and ``norm.ppf``, without importing ``scipy.stats`` (0.8 s).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import betaincinv, ndtri

from ..errors import CountsError

ABSTAIN = -1


def lower_bounds(n_a, n, alpha) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson lower bounds on binomial proportions (arrays
    broadcast): 0 where ``n_a`` is 0, NaN for impossible counts (``n_a > n``)."""
    n_a, n = np.asarray(n_a, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(n_a > 0, betaincinv(np.maximum(n_a, 1), n - n_a + 1, alpha), 0.0)


def upper_bounds(n_a, n, alpha) -> np.ndarray:
    """One-sided (1 - alpha) Clopper-Pearson upper bounds on binomial proportions (arrays
    broadcast): 1 where ``n_a`` is ``n``."""
    n_a, n = np.asarray(n_a, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        return np.where(n_a < n, betaincinv(n_a + 1, np.maximum(n - n_a, 1), 1 - alpha), 1.0)


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """:func:`lower_bounds` of one count."""
    return float(lower_bounds(n_a, n, alpha))


def upper_confidence_bound(n_k: int, n: int, alpha: float) -> float:
    """:func:`upper_bounds` of one count."""
    return float(upper_bounds(n_k, n, alpha))


def radii_from_bounds(p_lower, sigma, abstain: float = 0.0) -> np.ndarray:
    """``sigma * Phi^-1(p_lower)`` where ``p_lower > 0.5``, ``abstain`` elsewhere (NaN
    included); arrays broadcast."""
    with np.errstate(all="ignore"):
        radius = np.asarray(sigma, dtype=float) * ndtri(np.clip(p_lower, 0.5, 1.0))
    return np.where(p_lower > 0.5, radius, abstain)


def radii_from_counts(n_a, n, alpha, sigma) -> np.ndarray:
    """Vectorized :func:`certified_radius` (arrays broadcast): 0 where the smoothed classifier
    abstains (bound not above 1/2, NaN included). Counts must have been checked."""
    return radii_from_bounds(lower_bounds(n_a, n, alpha), sigma)


def certified_radius(n_a: int, n: int, alpha: float, sigma: float) -> float | None:
    """Radius ``sigma * Phi^-1(pA_lower)``, or ``None`` (abstain) unless ``pA_lower > 0.5``.

    Written so that a NaN bound abstains.
    """
    p_lower = lower_confidence_bound(n_a, n, alpha)
    if not p_lower > 0.5:
        return None
    return float(sigma * ndtri(p_lower))


def split_alpha(alpha: float, share: float) -> tuple[float, float]:
    """``(alpha * share, alpha - alpha * share)``: a level divided between two parts of one
    certificate (router and expert, root and child, a lower bound and the upper bounds);
    a union bound over both parts holds at ``alpha``."""
    first = alpha * share
    return first, alpha - first


def check_alpha(alpha: float) -> None:
    """Raise ValueError unless ``0 < alpha < 1``."""
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def check_count(name: str, value: int) -> None:
    """Raise ValueError unless ``value`` is an integer >= 1 (``name`` says which setting)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_settings(n0: int, n: int, alpha: float, batch_size: int) -> None:
    """Raise ValueError unless ``n0, n, batch_size >= 1`` and ``0 < alpha < 1``."""
    for name, value in (("n0", n0), ("n", n), ("batch_size", batch_size)):
        check_count(name, value)
    check_alpha(alpha)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_counts(c_a: int, n_a: int, n: int, n0: int, sigma: float, alpha: float) -> None:
    """Refuse counts that no certification could have produced.

    Raises:
        CountsError: unless ``c_a >= 0``, ``0 <= n_a <= n``, ``n >= 1``, ``n0 >= 1``,
            ``0 < alpha < 1`` and ``sigma > 0`` (finite).
    """
    problems = []
    if not _is_int(c_a) or c_a < 0:
        problems.append(f"cA={c_a!r} (a class index >= 0)")
    if not _is_int(n) or n < 1:
        problems.append(f"n={n!r} (an integer >= 1)")
    if not _is_int(n_a) or n_a < 0 or (_is_int(n) and n_a > n):
        problems.append(f"nA={n_a!r} (an integer in [0, n={n}])")
    if not _is_int(n0) or n0 < 1:
        problems.append(f"n0={n0!r} (an integer >= 1)")
    if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < alpha < 1.0):
        problems.append(f"alpha={alpha!r} (in (0, 1))")
    if not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        problems.append(f"sigma={sigma!r} (> 0)")
    if problems:
        raise CountsError("impossible counts: " + ", ".join(problems))


@dataclass(frozen=True)
class Certificate:
    """One smoothed prediction with the counts it rests on (radii at any alpha follow from them).

    ``prediction`` is ``ABSTAIN`` (-1) when the bound is <= 0.5; ``radius`` is then 0.
    ``c_a`` is the class chosen on the ``n0`` selection samples, ``n_a`` its count among the ``n``
    estimation samples. ``mode`` says how the counts were produced ("fp32", "bf16", "+compile").
    """

    prediction: int
    radius: float
    cA: int
    nA: int
    n: int
    n0: int
    sigma: float
    alpha: float
    seed: int = 0
    index: int = 0
    mode: str = "fp32"

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def p_lower(self) -> float:
        return lower_confidence_bound(self.nA, self.n, self.alpha)

    def radius_at(self, alpha: float) -> float:
        """Certified radius at another ``alpha`` from the stored counts (0 if abstaining there).

        Raises:
            CountsError: the stored counts or ``alpha`` are impossible.
        """
        return self.at_alpha(alpha).radius

    def at_alpha(self, alpha: float) -> Certificate:
        """The certificate the same counts give at level ``alpha``."""
        return certificate_from_counts(
            self.cA, self.nA, self.n, self.n0, self.sigma, alpha, self.seed, self.index, self.mode
        )

    def to_dict(self) -> dict:
        return asdict(self)


def certificate_from_counts(
    c_a: int,
    n_a: int,
    n: int,
    n0: int,
    sigma: float,
    alpha: float,
    seed: int = 0,
    index: int = 0,
    mode: str = "fp32",
) -> Certificate:
    """Build a :class:`Certificate` from selection/estimation counts (Cohen et al.'s CERTIFY).

    Raises:
        CountsError: counts outside ``0 <= nA <= n``, ``n0 >= 1``, ``0 < alpha < 1``, sigma > 0.
    """
    check_counts(c_a, n_a, n, n0, sigma, alpha)
    r = certified_radius(n_a, n, alpha, sigma)
    prediction = ABSTAIN if r is None else int(c_a)
    return Certificate(
        prediction, 0.0 if r is None else r, int(c_a), int(n_a), int(n), int(n0),
        float(sigma), float(alpha), int(seed), int(index), mode,
    )


@dataclass(frozen=True)
class Counts:
    """One smoothed model's counts on one input: ``cA`` chosen on ``n0`` selection draws, ``nA``
    its count among ``n`` estimation draws. ``share`` scales any level used on them (the share
    of alpha of the sequential look where they stopped; 1 otherwise)."""

    cA: int
    nA: int
    n: int
    n0: int
    sigma: float
    seed: int = 0
    index: int = 0
    mode: str = "fp32"
    share: float = 1.0

    def certificate(self, alpha: float) -> Certificate:
        """The certificate of these counts at ``alpha * share``.

        Raises:
            CountsError: impossible counts.
        """
        return certificate_from_counts(self.cA, self.nA, self.n, self.n0, self.sigma,
                                       alpha * self.share, self.seed, self.index, self.mode)
