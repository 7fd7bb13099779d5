"""The routed certificate of Dual RS (Sun, Mao, Vechev 2026), from counts (torch-free).

A router is a classifier over experts, smoothed with its own noise ``sigma_r``. For an input x:

1. the router CERTIFIES its choice ``k`` within ``R_router`` at ``alpha_r`` (else ABSTAIN);
2. expert ``k`` CERTIFIES its class within ``R_expert`` at ``alpha_e`` (else ABSTAIN);
3. the routed prediction is certified within ``min(R_router, R_expert)`` with probability at least
   ``1 - alpha_r - alpha_e`` (union bound; no independence between the stages is needed).

:func:`routed_certificate` is the one composition: the live path
(:class:`rsrouter.routing.routed.RoutedClassifier`) and the bench's composition from stored
counts (:func:`rsrouter.bench.methods.routed_frame`) both call it. Its TSV row:
:data:`ROUTED_EXTRAS`, :func:`routed_extras`, checked on reading by :func:`check_routed_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import CountsError
from .bounds import ABSTAIN, Certificate, Counts
from .checks import RADIUS_TOLERANCE, check_prediction, count_radii, numeric, row_error

ROUTED_EXTRAS = ("expert", "sigma", "router_radius", "expert_radius", "router_cA", "router_nA",
                 "router_n", "router_sigma", "cA", "nA", "n", "n0", "alpha", "alpha_router",
                 "alpha_expert", "seed", "mode")
# the columns that make a row routed; a TSV has all of them or none
ROUTED_COUNT_COLUMNS = ("expert", "router_cA", "router_nA", "router_sigma", "alpha_router",
                        "alpha_expert")


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
    """The routed rule: either part abstains -> ABSTAIN; else the min of the radii."""
    if router.prediction == ABSTAIN or expert is None or expert.prediction == ABSTAIN:
        return RoutedCertificate(ABSTAIN, 0.0, router.prediction, expert_name, router, expert,
                                 alpha, alpha_router, alpha_expert)
    return RoutedCertificate(expert.prediction, min(router.radius, expert.radius),
                             router.prediction, expert_name, router, expert, alpha, alpha_router,
                             alpha_expert)


def routed_certificate(router: Counts, expert_counts: Callable[[int], Counts],
                       names: Sequence[str], alpha_router: float, alpha_expert: float,
                       alpha: float | None = None) -> RoutedCertificate:
    """The routed certificate of one input from counts: the router at ``alpha_router``, the
    chosen expert (``expert_counts(k)``, asked only when the router certifies ``k``) at
    ``alpha_expert`` (the two parts of :func:`~rsrouter.certify.bounds.split_alpha`), each level
    times its counts' share; ``alpha`` of the result is the sum of the levels used, unless the
    caller names the level it split (``alpha``: the live path records the level it was asked).

    Raises:
        CountsError: impossible counts, or a router choice that is not one of ``names``.
    """
    route = router.certificate(alpha_router)
    alpha_e = alpha_expert
    alpha_r, expert = route.alpha, None
    if route.prediction != ABSTAIN:
        if not 0 <= route.prediction < len(names):
            raise CountsError(f"input idx {router.index}: the router chose expert "
                              f"{route.prediction}, but it has {len(names)}")
        expert = expert_counts(route.prediction).certificate(alpha_e)
        alpha_e = expert.alpha
    total = alpha_r + alpha_e if alpha is None else alpha
    return compose(route, expert, names[route.prediction] if expert else "", total, alpha_r,
                   alpha_e)


def routed_extras(cert: RoutedCertificate) -> dict:
    """The TSV extras of a routed certificate (:data:`ROUTED_EXTRAS`: both sets of counts,
    both alphas)."""
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


def check_routed_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                      radius: np.ndarray) -> None:
    """Routed rows: the router's counts always, the chosen expert's when routed; the prediction
    stands only where both certify, and the radius is their minimum.

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    numeric(df, where, ["alpha_router", "alpha_expert"])
    bad = np.abs(df["alpha_router"] + df["alpha_expert"] - df["alpha"]).to_numpy() > 1e-9
    if bad.any():
        raise row_error(where, df, bad, "alpha_router + alpha_expert must equal alpha")
    everywhere = np.ones(len(df), bool)
    # the router's own sample size (sequential mode: it may stop at another look than the expert)
    router_frame = df.assign(n=df["router_n"] if "router_n" in df else df["n"])
    router = count_radii(router_frame, where, "router_cA", "router_nA", "router_sigma",
                         "alpha_router", everywhere)
    routed = (df["expert"].astype(str) != "-").to_numpy()
    bad = routed != (router > 0)
    if bad.any():
        raise row_error(where, df, bad, "expert must be '-' exactly when the router's counts "
                        "abstain")
    expert = count_radii(df, where, "cA", "nA", "sigma", "alpha_expert", routed)
    both = np.where(routed & (expert > 0), expert, 0.0)
    check_prediction(df, where, predict, both, "cA")
    total = np.where(both > 0, np.minimum(router, expert), 0.0)
    bad = np.abs(total - radius) > RADIUS_TOLERANCE
    if bad.any():
        raise row_error(where, df, bad, "its radius is not min(router radius, expert radius) "
                        "from its counts")
