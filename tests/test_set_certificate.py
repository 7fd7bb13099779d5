"""The set certificate: by hand, its coverage on a problem with a known routed classifier, and
its rows checked on reading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from countframes import counts_frame
from scipy.optimize import brentq
from scipy.stats import beta, norm
from toymodels import Bands, Halfspace

from rsrouter.bench.methods import set_frame
from rsrouter.certify.bounds import ABSTAIN, upper_confidence_bound
from rsrouter.certify.set_certificate import expert_levels, router_levels, set_certificate
from rsrouter.certify.smoothing import Smooth
from rsrouter.errors import CountsError, ResultsError
from rsrouter.results.tsv import read_tsv, write_tsv


def test_by_hand():
    """Router votes [300, 9000, 700] of 10,000 for expert 1; experts 0 and 2 agree with it.

    e_k = sigma_r / 2 (Phi^-1(pA_low) - Phi^-1(pk_up)); radius = min(R_1, max(e_0, R_0),
    max(e_2, R_2)), every bound one-sided Clopper-Pearson at its share of alpha."""
    a_r, a_e = 0.0005, 0.0005
    (low, up), levels = router_levels(a_r, 3), expert_levels(a_e, 1, 3)
    assert (low, up) == (a_r / 2, a_r / 4) and levels == [a_e / 4, a_e / 2, a_e / 4]
    p_low = beta.ppf(low, 9000, 1001)
    e0 = 0.5 * (norm.ppf(p_low) - norm.ppf(beta.ppf(1 - up, 301, 9700)))
    e2 = 0.5 * (norm.ppf(p_low) - norm.ppf(beta.ppf(1 - up, 701, 9300)))
    r = [s * norm.ppf(beta.ppf(lv, na, 1000 - na + 1))
         for s, na, lv in zip((0.25, 0.5, 1.0), (999, 990, 900), levels)]
    cert = set_certificate(1, [300, 9000, 700], 1.0, [4, 4, 4], [999, 990, 900],
                           [1000] * 3, [0.25, 0.5, 1.0], a_r, levels)
    expected = min(r[1], max(e0, r[0]), max(e2, r[2]))
    assert cert.prediction == 4 and cert.radius == pytest.approx(expected, rel=1e-12)
    assert cert.entry == pytest.approx((e0, 0.0, e2), rel=1e-12)
    # expert 2 disagrees: the router may switch to it at e2, so the radius stops there
    cert = set_certificate(1, [300, 9000, 700], 1.0, [4, 4, 7], [999, 10_000, 900],
                           [1000, 10_000, 1000], [0.25, 0.5, 1.0], a_r, levels)
    r1 = 0.5 * norm.ppf(beta.ppf(levels[1], 10_000, 1))
    assert r1 > e2 and cert.radius == pytest.approx(min(r1, max(e0, r[0]), e2), rel=1e-12)
    assert cert.binding == 2
    # the chosen expert abstains: nothing is certified
    cert = set_certificate(1, [300, 9000, 700], 1.0, [4, 4, 4], [999, 500, 900],
                           [1000] * 3, [0.25, 0.5, 1.0], a_r, levels)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0


def test_an_undecided_router_still_certifies_where_all_experts_agree():
    levels = expert_levels(0.0005, 0, 2)
    cert = set_certificate(0, [5000, 5000], 1.0, [3, 3], [990, 980], [1000, 1000], [0.25, 0.5],
                           0.0005, levels)
    r = [s * norm.ppf(beta.ppf(lv, na, 1000 - na + 1))
         for s, na, lv in zip((0.25, 0.5), (990, 980), levels)]
    assert cert.prediction == 3 and cert.radius == pytest.approx(min(r), rel=1e-12)
    assert cert.entry[1] < 0  # the router may pick expert 1 at x itself
    assert upper_confidence_bound(10, 10, 0.01) == 1.0


SIGMA_R = 0.3
EXPERTS = [(0.45, 0.15, False), (0.5, 0.25, False), (0.55, 0.4, True)]  # (t, sigma, flip)


def _route(v):
    """The smoothed router's choice at x0 = v (argmax of its three probabilities)."""
    q = [norm.cdf((0.35 - v) / SIGMA_R), 0.0, norm.cdf((v - 0.65) / SIGMA_R)]
    q[1] = 1 - q[0] - q[2]
    return int(np.argmax(q))


def _bounds():
    """x0 where the smoothed router's choice changes: 0 | 1 and 1 | 2."""
    def margin(v, k):
        q0, q2 = norm.cdf((0.35 - v) / SIGMA_R), norm.cdf((v - 0.65) / SIGMA_R)
        return (1 - q0 - q2) - (q0 if k == 0 else q2)
    return brentq(margin, -3, 0.5, args=(0,)), brentq(margin, 0.5, 4, args=(2,))


def _true(x0, x1):
    """The routed classifier's class at (x0, x1) and the distance to the nearest point where it
    differs: the smoothed experts are halfspaces in x1, the router bands in x0."""
    b01, b12 = _bounds()
    bands = [(-math.inf, b01), (b01, b12), (b12, math.inf)]
    k = _route(x0)
    t, _, flip = EXPERTS[k]
    c = int((x1 > t) != flip)
    dist = math.inf
    for j, (lo, hi) in enumerate(bands):
        tj, _, fj = EXPERTS[j]
        dx = 0.0 if lo <= x0 <= hi else min(abs(x0 - lo), abs(x0 - hi))
        # points of band j whose class is not c: x1 on the other side of t_j
        above = 0 if fj else 1  # expert j's class above t_j
        if above != c:  # the points of band j above t_j are the wrong ones
            dy = max(0.0, tj - x1)
        else:
            dy = max(0.0, x1 - tj)
        dist = min(dist, math.hypot(dx, dy))
    return c, dist


def test_coverage_on_a_known_routed_classifier():
    """Certified and wrong, or certified beyond the true robust radius of the routed classifier,
    on at most alpha + 3 standard errors of the inputs; plug-in radii overstate far more often
    (the check has power)."""
    alpha, m, n0, n = 0.1, 1500, 32, 3000  # n large enough that an entry radius twice too
    # large (sigma_r instead of sigma_r / 2) breaks the bound here: 17% of inputs
    rng = np.random.default_rng(3)
    x0, x1 = rng.uniform(0.0, 1.0, m), rng.uniform(0.1, 0.9, m)
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0], xs[:, 0, 0, 1] = torch.tensor(x0).float(), torch.tensor(x1).float()
    router = Smooth(Bands(), 3, SIGMA_R)
    experts = [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS]
    r_ca, r_counts = router.count_batch(xs, n0, n, batch_size=20000, seed=1)
    e = [ex.count_batch(xs, n0, n, batch_size=20000, seed=1) for ex in experts]
    a_r = a_e = alpha / 2
    bad = naive = certified = 0
    for i in range(m):
        a = int(r_ca[i])
        levels = expert_levels(a_e, a, 3)
        c_a = [int(ca[i]) for ca, _ in e]
        n_a = [int(cnt[i, c]) for (_, cnt), c in zip(e, c_a)]
        cert = set_certificate(a, r_counts[i].tolist(), SIGMA_R, c_a, n_a, [n] * 3,
                               [s for _, s, _ in EXPERTS], a_r, levels)
        c, true_radius = _true(float(xs[i, 0, 0, 0]), float(xs[i, 0, 0, 1]))
        if cert.prediction != ABSTAIN:
            certified += 1
            bad += cert.prediction != c or cert.radius > true_radius + 1e-6
        plug = set_certificate(a, r_counts[i].tolist(), SIGMA_R, c_a, n_a, [n] * 3,
                               [s for _, s, _ in EXPERTS], 0.9999, [0.9999] * 3)
        naive += plug.prediction != ABSTAIN and (plug.prediction != c
                                                 or plug.radius > true_radius + 1e-6)
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se
    assert certified > m / 2
    assert naive / m > alpha + 10 * se


def test_set_rows_are_checked_on_reading(tmp_path):
    router = counts_frame([(0, 1, [100, 9900]), (1, 0, [5000, 5000])], 1.0)
    experts = [counts_frame([(0, 1, [3, 997]), (1, 0, [995, 5])], 0.25),
               counts_frame([(0, 1, [10, 990]), (1, 0, [900, 100])], 0.5)]
    frame = set_frame(router, experts, ["small", "big"], 0.001, 0.5, 1.0)
    assert frame["alpha"].tolist() == pytest.approx([0.001, 0.001])
    assert frame["forwards"].tolist() == [10_100 + 2 * 1100] * 2  # the router and every expert
    path = write_tsv(frame, tmp_path / "set.tsv")
    back = read_tsv(path)
    assert back["radius"].tolist() == pytest.approx(frame["radius"].tolist())
    assert (back["predict"] == [1, 0]).all()  # the undecided router still certifies input 1
    for column, value, match in [("radius", frame["radius"][0] + 0.1, "do not follow"),
                                 # a negative count would make an entry radius NaN
                                 ("router_counts", "100,-1", "a count >= 0")]:
        forged = frame.copy()
        forged.loc[0, column] = value
        write_tsv(forged, tmp_path / "forged.tsv")
        with pytest.raises((ResultsError, CountsError), match=match):
            read_tsv(tmp_path / "forged.tsv")
    # sequential mode: every level is scaled by its look's share
    halved = set_frame(router.assign(share=0.5), [e.assign(share=0.5) for e in experts],
                       ["small", "big"], 0.001, 0.5, 1.0)
    assert halved["alpha"].tolist() == pytest.approx([0.0005, 0.0005])
