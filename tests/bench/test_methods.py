"""Methods composed from counts: the multiscale cascade by hand, routing, the envelope."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from countframes import counts_frame
from scipy.stats import beta, chi2, norm

from rsrouter.bench.methods import envelope, expert_frame
from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.cascade import _grouped, cascade_one, off_class_upper


def _goodman_upper(groups, a):
    """Goodman (1965) simultaneous intervals written out: two-sided level 2a, k groups."""
    groups = np.asarray(groups, float)
    n, k = groups.sum(), len(groups)
    q = chi2.ppf(1 - 2 * a / k, 1)
    return (q + 2 * groups + np.sqrt(q * (q + 4 * groups * (n - groups) / n))) / (2 * (n + q))


def test_cascade_by_hand():
    """Two stages (sigma 1.0 then 0.5), p0 = 0.5, n = 1000, alpha = 0.01, rule sound: every
    bound at alpha / (K + K (K - 1) / 2) = 0.01 / 3.

    Stage 0 (sigma 1.0): counts [300, 400, 300], top class 1 with upper bound < 0.5: declines.
    Stage 1 (sigma 0.5): counts [20, 960, 20]: class 1 with lower bound > 0.5: predicts 1 within
    0.5 * Phi^-1(pA_low), capped by stage 0: its other classes (0 and 2, 300 each of 1000) must
    stay below 0.5: -1.0 * Phi^-1(upper) with the exact upper bound on 300 of 1000 at a / 2 (one
    Clopper-Pearson bound per other class, Bonferroni). The faithful rule uses Goodman's
    intervals, as their code.
    """
    a = 0.01 / 3
    stage0 = np.array([300, 400, 300])
    stage1 = np.array([20, 960, 20])
    assert beta.ppf(1 - a, 401, 600) < 0.5  # stage 0 declines
    low = beta.ppf(a, 960, 41)
    own = 0.5 * norm.ppf(low)
    upper = beta.ppf(1 - a / 2, 301, 700)
    assert upper < _goodman_upper([400, 300, 300], a)[1:].max()  # exact, and tighter here
    cap = -1.0 * norm.ppf(upper)
    assert 0 < cap < own  # the earlier stage is what limits the radius here
    prediction, radius, stage, alpha = cascade_one([(1, stage0, 1.0), (1, stage1, 0.5)], 0.01,
                                                   0.5, "sound")
    assert (prediction, stage, alpha) == (1, 1, pytest.approx(a))
    assert radius == pytest.approx(cap, rel=1e-9)
    assert off_class_upper(stage0, 1, a) == pytest.approx(upper, rel=1e-9)
    # faithful: alpha / (k + 1) at stopping stage k = 1
    _, faithful, _, a1 = cascade_one([(1, stage0, 1.0), (1, stage1, 0.5)], 0.01, 0.5, "faithful")
    assert a1 == pytest.approx(0.005)
    assert faithful == pytest.approx(-norm.ppf(_goodman_upper([400, 300, 300], 0.005)[1:].max()))


def test_cascade_abstains_when_undecided_or_all_decline():
    a = 0.01 / 3
    undecided = np.array([480, 520])  # the upper bound on 520/1000 reaches 0.5
    assert beta.ppf(1 - a, 521, 480) >= 0.5 > beta.ppf(a, 520, 481)
    assert cascade_one([(1, undecided, 1.0), (0, np.array([1000, 0]), 0.5)], 0.01, 0.5)[:3] == \
        (ABSTAIN, 0.0, 0)
    flat = np.array([400, 300, 300])
    assert cascade_one([(0, flat, 1.0), (0, flat, 0.5)], 0.01, 0.5)[:3] == (ABSTAIN, 0.0, 1)
    # a first stage that certifies is not capped by anything
    prediction, radius, stage, _ = cascade_one([(2, np.array([0, 0, 1000]), 1.0)], 0.01, 0.5)
    assert (prediction, stage) == (2, 0)
    assert radius == pytest.approx(norm.ppf(beta.ppf(0.01, 1000, 1)))


def test_the_sound_rule_counts_every_bound_a_stopping_stage_can_use():
    from rsrouter.certify.cascade import cascade_bounds

    # K lower bounds, and at stage j one off-class bound per later stage's predicted class
    assert [cascade_bounds(k) for k in (1, 2, 3, 4)] == [1, 3, 6, 10]


def test_off_class_grouping_as_in_their_code():
    # classes with fewer than 5 samples are pooled until a pool reaches 5
    assert _grouped(np.array([900, 50, 3, 2, 1, 44]), 0).tolist() == [900, 50, 44, 6]
    # a leftover pool never joins the predicted class; the bound is on the other classes
    assert _grouped(np.array([996, 2, 2]), 0).tolist() == [996, 4]
    # faithful (their code): two groups -> one minus the lower bound on p_c
    a = 0.001
    assert off_class_upper(np.array([990, 6, 4]), 0, a, exact=False) == pytest.approx(
        1 - beta.ppf(a, 990, 11))


def test_the_sound_off_class_bound_never_pools():
    """Pooling decided by the counts would make the number of bounds (and so each one's level)
    depend on the data they bound. The sound rule bounds each of the C - 1 other classes at
    a / (C - 1), whatever the counts: the level of a class's bound is the same with or without
    small classes beside it."""
    a = 0.001
    assert off_class_upper(np.array([996, 2, 2]), 0, a) == pytest.approx(
        beta.ppf(1 - a / 2, 3, 998))
    assert off_class_upper(np.array([990, 6, 4]), 0, a) == pytest.approx(
        beta.ppf(1 - a / 2, 7, 994))
    wide = np.array([900, 50, 3, 2, 1, 44])  # their code: 3 other groups; here 5 classes
    assert off_class_upper(wide, 0, a) == pytest.approx(beta.ppf(1 - a / 5, 51, 950))
    # two classes: the same bound as one minus the lower bound on p_c (Clopper-Pearson symmetry)
    assert off_class_upper(np.array([990, 10]), 0, a) == pytest.approx(
        1 - beta.ppf(a, 990, 11), rel=1e-9)
    for bad in (np.array([5]), np.array([990, 10])):
        with pytest.raises(ValueError, match="off-class bound"):
            off_class_upper(bad, 2, a)


def test_envelope_is_the_per_radius_best_expert():
    def frame(radius, correct):
        n = len(radius)
        return pd.DataFrame({"idx": range(n), "label": 1, "predict": 1, "radius": radius,
                             "correct": correct, "time": 0.0})

    small = frame([0.3, 0.3, 0.1, 0.0], [1, 1, 1, 0])
    large = frame([0.9, 0.0, 0.0, 0.8], [1, 0, 0, 1])
    env = envelope({"small": small, "large": large}, [0.0, 0.25, 0.5])
    assert env["expert"].tolist() == ["small", "small", "large"]
    assert env["certified_accuracy"].tolist() == [0.75, 0.5, 0.5]


def test_expert_frame_matches_certificate_from_counts():
    from rsrouter.certify.bounds import certificate_from_counts

    counts = pd.DataFrame({"idx": [0, 1, 2], "label": [3, 3, 3], "cA": [3, 3, 1],
                           "nA": [999, 400, 997], "n": 1000, "n0": 100, "sigma": 0.5,
                           "share": 1.0, "seed": 0,
                           "mode": "fp32", "time": 0.01})
    out = expert_frame(counts, 0.001)
    for row, c in zip(out.itertuples(), counts.itertuples()):
        cert = certificate_from_counts(c.cA, c.nA, c.n, c.n0, c.sigma, 0.001)
        assert (row.predict, row.radius) == (cert.prediction, pytest.approx(cert.radius))
    assert out["correct"].tolist() == [1, 0, 0] and (out["forwards"] == 1100).all()


def test_sequential_shares_scale_every_composed_bound():
    """In sequential mode each row's bound is at alpha times the share of its stopping look:
    the expert, routed and cascade compositions all use it (by hand, Clopper-Pearson)."""
    from rsrouter.bench.methods import cascade_frame, routed_frame

    alpha = 0.01
    big = counts_frame([(0, 1, [5, 995], 0.125), (1, 0, [900, 100], 0.5)], 1.0, "fp32+seq")
    small = counts_frame([(0, 1, [2, 398], 0.25), (1, 0, [780, 20], 0.125)], 0.5, "fp32+seq")
    frame = expert_frame(big, alpha)
    assert frame["alpha"].tolist() == pytest.approx([alpha * 0.125, alpha * 0.5])
    assert frame["radius"].tolist() == pytest.approx(
        [1.0 * norm.ppf(beta.ppf(alpha * 0.125, 995, 6)),
         1.0 * norm.ppf(beta.ppf(alpha * 0.5, 900, 101))], rel=1e-9)
    # a share of 1 would have certified more: the test can tell the two apart
    assert expert_frame(big.assign(share=1.0), alpha)["radius"].iloc[0] > frame["radius"].iloc[0]

    router = counts_frame([(0, 1, [10, 390], 0.25), (1, 0, [0, 400], 0.5)], 0.3,  # route 1, 1
                          "fp32+seq")
    routed = routed_frame(router, [big, small], ["big", "small"], alpha, 0.5, 0.3)
    a_r = [alpha * 0.5 * 0.25, alpha * 0.5 * 0.5]
    a_e = [alpha * 0.5 * 0.25, alpha * 0.5 * 0.125]  # the chosen expert (small) row's share
    assert routed["alpha_router"].tolist() == pytest.approx(a_r)
    assert routed["alpha_expert"].tolist() == pytest.approx(a_e)
    r_router = [0.3 * norm.ppf(beta.ppf(a_r[0], 390, 11)), 0.3 * norm.ppf(beta.ppf(a_r[1], 400, 1))]
    r_expert = [0.5 * norm.ppf(beta.ppf(a_e[0], 398, 3)), 0.5 * norm.ppf(beta.ppf(a_e[1], 780, 21))]
    assert routed["radius"].tolist() == pytest.approx(np.minimum(r_router, r_expert), rel=1e-9)

    cascade = cascade_frame([small, big], ["small", "big"], alpha)  # stage 0 = sigma 1.0
    a = alpha / 3  # K + K (K - 1) / 2 bounds for K = 2, each times its look's share
    assert cascade["stage"].tolist() == [0, 0]
    assert cascade["stage_alpha"].tolist() == pytest.approx([a * 0.125, a * 0.5])
    assert cascade["radius"].tolist() == pytest.approx(
        [norm.ppf(beta.ppf(a * 0.125, 995, 6)), norm.ppf(beta.ppf(a * 0.5, 900, 101))], rel=1e-9)


def test_the_exact_off_class_bound_covers_every_other_class_at_once():
    """The sound rule's off-class bound U (n = 300 draws of p = [0.45, 0.35, 0.1, 0.1], class 0
    predicted) must be above every other class's probability with probability >= 1 - a. Only
    class 1 can break it here (U is a maximum over the other classes, and classes 2 and 3 sit
    far below it), so U fails at most as often as class 1's own bound, at a / 3 (Bonferroni over
    three groups): within a / 3 + 3 SE over m = 3000 draws at a = 0.2. Bounds at the full a each
    (no Bonferroni) fail at about a, far above that: the check has power."""
    from rsrouter.certify.bounds import upper_confidence_bound

    p, n, a, m = np.array([0.45, 0.35, 0.1, 0.1]), 300, 0.2, 3000
    draws = np.random.default_rng(7).multinomial(n, p, size=m)
    sound = np.mean([off_class_upper(d, 0, a) < p[1:].max() for d in draws])
    broken = np.mean([max(upper_confidence_bound(int(d[k]), n, a) for k in (1, 2, 3))
                      < p[1:].max()
                      for d in draws])
    level = a / 3
    threshold = level + 3 * np.sqrt(level * (1 - level) / m)
    assert sound <= threshold < broken
