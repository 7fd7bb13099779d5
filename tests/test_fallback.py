"""Router, then cascade (WORK IN PROGRESS, branch fallback-cert): coverage of the combined
certificate on the problem of test_set_certificate, whose routed classifier is known, with a
power check of the whole (the fallback path's own power needs a three-class toy: TODO)."""

from __future__ import annotations

import math

import numpy as np
import torch
from test_set_certificate import EXPERTS, SIGMA_R, _true
from toymodels import Bands, Halfspace

from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.fallback import fallback_certificate, fallback_levels
from rsrouter.certify.smoothing import Smooth


def test_levels_sum_to_alpha():
    levels = fallback_levels(0.01, 3, 10)
    assert math.isclose(levels.total(3, 10), 0.01)


def test_coverage_of_router_then_cascade():
    """Certified and wrong, or certified beyond the true robust radius, on at most alpha + 3 SE
    of the inputs; the same certificate at plug-in levels overstates far more often."""
    alpha, m, n0, n = 0.1, 1500, 32, 3000
    rng = np.random.default_rng(5)
    x0, x1 = rng.uniform(0.0, 1.0, m), rng.uniform(0.1, 0.9, m)
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0], xs[:, 0, 0, 1] = torch.tensor(x0).float(), torch.tensor(x1).float()
    router = Smooth(Bands(), 3, SIGMA_R)
    experts = [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS]
    r_sel, r_cnt = router.vote_batch(xs, n0, n, batch_size=20000, seed=2)
    e = [ex.vote_batch(xs, n0, n, batch_size=20000, seed=2) for ex in experts]
    sigmas = [s for _, s, _ in EXPERTS]

    def cert(i, a):
        return fallback_certificate(
            int(r_sel[i].argmax()), r_cnt[i].tolist(), SIGMA_R,
            [int(sel[i].argmax()) for sel, _ in e], [cnt[i].numpy() for _, cnt in e], sigmas, a,
            share=0.5)

    bad = naive = fallback = 0
    for i in range(m):
        c, true_radius = _true(float(xs[i, 0, 0, 0]), float(xs[i, 0, 0, 1]))
        got = cert(i, alpha)
        fallback += got.path == "fallback"
        if got.prediction != ABSTAIN:
            bad += got.prediction != c or got.radius > true_radius + 1e-6
        plug = cert(i, 4 * 0.9999)  # every half-level near 1: plug-in estimates
        naive += plug.prediction != ABSTAIN and (plug.prediction != c
                                                 or plug.radius > true_radius + 1e-6)
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se
    # TODO: with two classes the fallback rarely certifies (an undecided chosen expert keeps
    # its other class near 1/2, so its off-class radius is 0): a three-class toy is needed to
    # check the fallback path's power (here it certified 3 of 1500 inputs).
    assert naive / m > alpha + 10 * se
