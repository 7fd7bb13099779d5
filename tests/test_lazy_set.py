"""The lazy set certificate: its plan and levels by hand, its coverage on a problem with a known
routed classifier (with a power check), and its rows and bench frame checked on reading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from test_set_certificate import EXPERTS, SIGMA_R, _true
from toymodels import Bands, Halfspace

from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.lazy_set import (
    check_lazy_set_rows,
    lazy_expert_levels,
    lazy_plan,
    lazy_set_extras,
    lazy_set_routed_certificate,
)
from rsrouter.certify.set_certificate import expert_levels, set_certificate
from rsrouter.certify.smoothing import Smooth
from rsrouter.errors import CountsError


def test_levels_split_over_the_counted_experts_only():
    assert lazy_expert_levels(0.01, 1, [False, True, False]) == [0.0, 0.01, 0.0]
    assert lazy_expert_levels(0.01, 1, [True, True, False]) == [0.005, 0.005, 0.0]
    assert lazy_expert_levels(0.01, 0, [True, True, True]) == [0.005, 0.0025, 0.0025]
    assert lazy_expert_levels(0.01, 0, [True] * 3) == expert_levels(0.01, 0, 3)


def test_the_plan_by_hand():
    """Router votes [40, 59, 1] of n0 = 100 for expert 1 (sigma_r 1). Plug-in shares
    (v + 1/2) / 101; e_k = 1/2 (Phi^-1(q_1) - Phi^-1(q_k)); R_k = sigma_k Phi^-1(share of its
    top class)."""
    q = [(v + 0.5) / 101 for v in (40, 59, 1)]
    e0, e2 = (0.5 * (norm.ppf(q[1]) - norm.ppf(q[k])) for k in (0, 2))
    r = [s * norm.ppf((v + 0.5) / 101) for s, v in zip((0.25, 0.5, 1.0), (100, 99, 70))]
    assert e0 < r[1] < e2 and r[0] > e0  # 0 may bind and certifies beyond e_0; 2 lies beyond R_1
    sigmas = [0.25, 0.5, 1.0]
    assert lazy_plan([40, 59, 1], [4, 4, 4], [100, 99, 70], 100, 1.0, sigmas) == (True, True,
                                                                                   False)
    assert lazy_plan([40, 59, 1], [3, 4, 4], [100, 99, 70], 100, 1.0, sigmas) == (False, True,
                                                                                   False)
    # a margin beyond e_2 - R_1 and e_2 - R_2 counts expert 2 as well
    assert e2 - r[2] > e2 - r[1]
    wide = lazy_plan([40, 59, 1], [4, 4, 4], [100, 99, 70], 100, 1.0, sigmas,
                     margin=e2 - r[2] + 1e-9)
    assert wide == (True, True, True)


def test_an_uncounted_expert_stands_for_its_entry_radius_alone():
    """At equal levels, leaving agreeing experts out leaves min(R_A, e_k...): never more than
    counting them."""
    args = (1, [2500, 7000, 500], 1.0, [4, 4, 4], [999, 990, 900], [1000] * 3,
            [0.25, 0.5, 1.0], 0.0005)
    levels = [0.000125, 0.00025, 0.000125]
    full = set_certificate(*args, levels)
    lazy = set_certificate(*args, levels, counted=[False, True, False])
    alone = set_certificate(*args, levels, counted=[False, True, True])
    r_1 = 0.5 * norm.ppf(__import__("scipy.stats").stats.beta.ppf(0.00025, 990, 11))
    assert lazy.prediction == full.prediction == alone.prediction == 4
    assert lazy.radius == pytest.approx(min(r_1, lazy.entry[0], lazy.entry[2]), rel=1e-12)
    assert lazy.radius <= alone.radius <= full.radius
    assert lazy.radius < full.radius  # expert 0 certifies beyond e_0 here: counting it pays
    with pytest.raises(ValueError, match="chosen expert"):
        set_certificate(*args, [0.0, 0.0005, 0.0], counted=[True, False, True])


def _lazy(r_sel, r_cnt, e, i, a_r, a_e, margin, sigma_r=SIGMA_R):
    """The lazy set certificate of input ``i`` from vote tensors, through
    :func:`lazy_set_routed_certificate` (the plan, then the counts of the planned experts)."""
    from rsrouter.certify.bounds import Counts

    sigmas = [s for _, s, _ in EXPERTS]
    n0, n = int(r_sel[i].sum()), int(r_cnt[i].sum())
    c_a = [int(sel[i].argmax()) for sel, _ in e]
    router = Counts(int(r_sel[i].argmax()), 0, n, n0, sigma_r, 1, i, "fp32")
    experts = [Counts(c, int(cnt[i, c]), n, n0, s, 1, i, "fp32")
               for (_, cnt), c, s in zip(e, c_a, sigmas)]
    cert = lazy_set_routed_certificate(
        router, r_cnt[i].tolist(), r_sel[i].tolist(), c_a,
        [int(sel[i, c]) for (sel, _), c in zip(e, c_a)], experts, sigmas, ["a", "b", "c"], a_r,
        a_e, margin=margin)
    return cert, cert.counted


def test_coverage_on_a_known_routed_classifier():
    """Certified and wrong, or certified beyond the true robust radius of the routed classifier,
    on at most alpha + 3 standard errors of the inputs, while the plan leaves experts out on
    many inputs; the same certificate at plug-in levels overstates far more often (the check has
    power)."""
    alpha, m, n0, n = 0.1, 1500, 32, 3000
    rng = np.random.default_rng(4)
    x0, x1 = rng.uniform(0.0, 1.0, m), rng.uniform(0.1, 0.9, m)
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0], xs[:, 0, 0, 1] = torch.tensor(x0).float(), torch.tensor(x1).float()
    router = Smooth(Bands(), 3, SIGMA_R)
    experts = [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS]
    r_sel, r_cnt = router.vote_batch(xs, n0, n, batch_size=20000, seed=1)
    e = [ex.vote_batch(xs, n0, n, batch_size=20000, seed=1) for ex in experts]
    bad = naive = certified = skipped = 0
    for i in range(m):
        cert, plan = _lazy(r_sel, r_cnt, e, i, alpha / 2, alpha / 2, 0.0)
        skipped += not all(plan)
        c, true_radius = _true(float(xs[i, 0, 0, 0]), float(xs[i, 0, 0, 1]))
        if cert.prediction != ABSTAIN:
            certified += 1
            bad += cert.prediction != c or cert.radius > true_radius + 1e-6
        plug, _ = _lazy(r_sel, r_cnt, e, i, 0.9999, 0.9999, 0.0)
        naive += plug.prediction != ABSTAIN and (plug.prediction != c
                                                 or plug.radius > true_radius + 1e-6)
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se
    assert certified > m / 2 and skipped > m / 4
    assert naive / m > alpha + 10 * se


def test_the_live_plan_never_looks_at_the_estimation_draws():
    """certify_lazy_batch's plan is the same whatever n is, and it is the plan of the selection
    votes alone; the experts outside it are not run on the estimation draws."""
    from rsrouter.routing.routed import RoutedClassifier

    xs = torch.zeros(40, 1, 1, 4)
    xs[:, 0, 0, 0], xs[:, 0, 0, 1] = torch.linspace(0, 1, 40), torch.linspace(0.2, 0.8, 40)
    experts = [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS]
    routed = RoutedClassifier(Smooth(Bands(), 3, SIGMA_R), experts)
    plans = [[c.counted for c in routed.certify_lazy_batch(xs, 32, n, 0.1, batch_size=20000,
                                                           seed=5)] for n in (200, 2000)]
    assert plans[0] == plans[1] and not all(all(p) for p in plans[0])
    r_sel = routed.router.sample_counts(xs, 32, batch_size=20000, seed=5,
                                        indices=range(40), stage="select")
    e_sel = [ex.sample_counts(xs, 32, batch_size=20000, seed=5, indices=range(40),
                              stage="select") for ex in experts]
    for i, plan in enumerate(plans[0]):
        c_a = [int(v[i].argmax()) for v in e_sel]
        assert plan == lazy_plan(r_sel[i].tolist(), c_a,
                                 [int(v[i, c]) for v, c in zip(e_sel, c_a)], 32, SIGMA_R,
                                 [s for _, s, _ in EXPERTS])
    calls = [ex.base_model.calls for ex in experts]
    routed.certify_lazy_batch(xs, 32, 2000, 0.1, batch_size=20000, seed=5)
    ran = [ex.base_model.calls - c for ex, c in zip(experts, calls)]
    planned = [sum(p[k] for p in plans[0]) for k in range(3)]
    assert ran == [40 * 32 + 2000 * m for m in planned]


def _row(**change):
    """A lazy set certificate of one input and its TSV row, from hand-made counts."""
    from rsrouter.certify.bounds import Counts

    names, sigmas = ["a", "b", "c"], [0.25, 0.5, 1.0]
    router = Counts(1, 9000, 10000, 100, 1.0, 0, 7, "fp32")
    experts = [Counts(4, v, 10000, 100, s, 0, 7, "fp32") for v, s in zip((9990, 9900, 9000),
                                                                         sigmas)]
    cert = lazy_set_routed_certificate(router, [300, 9000, 700], [40, 59, 1], [4, 4, 4],
                                       [100, 99, 70], experts, sigmas, names, 0.0005, 0.0005)
    import pandas as pd

    row = {"idx": 7, "label": 4, "predict": cert.prediction, "radius": cert.radius,
           "correct": int(cert.prediction == 4), "time": 0.0, **lazy_set_extras(cert)}
    row.update(change)
    df = pd.DataFrame([row])
    return cert, df


def test_rows_are_checked_on_reading():
    cert, df = _row()
    assert cert.counted == (True, True, False) and cert.expert_nA[2] == 0
    assert cert.alpha == pytest.approx(0.001)
    check_lazy_set_rows(df, "x.tsv", df["predict"].to_numpy(), df["radius"].to_numpy())
    for change, message in [({"counted": "1,1,1"}, "is not the plan"),
                            ({"router_select": "40,1,59"}, "selection votes"),
                            ({"margin": 5.0}, "is not the plan"),
                            ({"expert_alpha": "0.0005,0.0001,0.0001"}, "levels"),
                            ({"expert_nA": "9990,9900,9000"}, "not counted but has counts")]:
        _, bad = _row(**change)
        with pytest.raises(CountsError, match=message):
            check_lazy_set_rows(bad, "x.tsv", bad["predict"].to_numpy(),
                                bad["radius"].to_numpy())
    _, forged = _row(radius=cert.radius * 1.5)
    with pytest.raises(Exception, match="do not follow"):
        check_lazy_set_rows(forged, "x.tsv", forged["predict"].to_numpy(),
                            forged["radius"].to_numpy())
