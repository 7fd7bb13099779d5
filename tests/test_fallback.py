"""Router, then cascade (:mod:`rsrouter.certify.fallback`): per-input coverage of the combined
certificate against the true robust radius of the classifier it certifies, on the two-class
problem of test_set_certificate and on three-class experts where the routed classifier is
undecided (there the fallback path certifies), each with a power check; levels; row checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from test_set_certificate import EXPERTS, SIGMA_R, _true
from toymodels import Bands, Halfspace, Interval3

from rsrouter.certify import fallback
from rsrouter.certify.bounds import ABSTAIN, Counts
from rsrouter.certify.fallback import fallback_levels, fallback_routed_certificate
from rsrouter.certify.smoothing import Smooth


def test_levels_sum_to_alpha():
    a_r, a_e, a_c, a_o = fallback_levels(0.01, 0.5, 3, 10, share=0.1)
    assert math.isclose(a_r + a_e + a_c + 30 * a_o, 0.01)
    assert math.isclose(a_c, 0.0005) and math.isclose(a_r, a_e)


def _certifier(xs, router, experts, n0, n, seed, margin=math.inf):
    """``cert(i, alpha, share)``: the fallback certificate of input ``i`` from fresh counts of the
    router and of every expert (the plan, with ``margin``, asks only for those it needs; by
    default it counts every expert that agrees with the chosen one)."""
    r_sel, r_cnt = router.vote_batch(xs, n0, n, batch_size=20000, seed=seed)
    e = [ex.vote_batch(xs, n0, n, batch_size=20000, seed=seed) for ex in experts]
    sigmas = [ex.sigma for ex in experts]

    def cert(i, alpha, share=0.5):
        a = int(r_sel[i].argmax())
        c_a = [int(sel[i].argmax()) for sel, _ in e]
        return fallback_routed_certificate(
            Counts(a, int(r_cnt[i, a]), n, n0, router.sigma, seed, i), r_cnt[i].tolist(),
            r_sel[i].tolist(), c_a, [int(sel[i, c]) for (sel, _), c in zip(e, c_a)],
            lambda k: e[k][1][i].numpy(), sigmas, ["e0", "e1", "e2"], alpha, 0.5,
            margin=margin, share=share)
    return cert


def _overstated(got, c: int, true_radius: float, tolerance: float) -> bool:
    """Certified and wrong, or certified beyond the true robust radius."""
    return got.prediction != ABSTAIN and (got.prediction != c
                                          or got.radius > true_radius + tolerance)


def _toy_inputs(m: int, seed: int, x1: tuple[float, float] = (0.1, 0.9)) -> torch.Tensor:
    """``m`` inputs: x0 (the router's coordinate) uniform in [0, 1], x1 (the experts') in
    ``x1``."""
    rng = np.random.default_rng(seed)
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0] = torch.tensor(rng.uniform(0.0, 1.0, m)).float()
    xs[:, 0, 0, 1] = torch.tensor(rng.uniform(*x1, m)).float()
    return xs


def test_coverage_of_router_then_cascade(monkeypatch):
    """Overstated on at most alpha + 3 SE of the inputs. Power: the same certificate without
    the fallback's caps (the cascade's radius alone, as if the routed classifier never decided
    near x) overstates on far more, almost all on the fallback path."""
    alpha, m, n0, n = 0.01, 1500, 32, 3000
    xs = _toy_inputs(m, seed=5)
    cert = _certifier(xs, Smooth(Bands(), 3, SIGMA_R),
                      [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS], n0, n, seed=2)
    truth = [_true(float(xs[i, 0, 0, 0]), float(xs[i, 0, 0, 1])) for i in range(m)]
    got = [cert(i, alpha) for i in range(m)]
    bad = sum(_overstated(g, *t, 1e-6) for g, t in zip(got, truth))
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se, bad
    assert sum(g.path == "fallback" for g in got) >= 5  # 8 at seed 2

    monkeypatch.setattr(fallback, "off_class_radius", lambda *args: math.inf)
    uncapped = [cert(i, alpha) for i in range(m)]
    wrong = [_overstated(g, *t, 1e-6) for g, t in zip(uncapped, truth)]
    assert sum(wrong) / m > alpha + 10 * se, sum(wrong)  # 111 of 1500 at seed 2
    assert all(g.path == "fallback" for g, w in zip(uncapped, wrong) if w)


# three-class experts on x1, bands [a, b), each at its sigma: the middle class of a narrow band
# never has half the mass at a large sigma, so the routed classifier is undecided there
EXPERTS3 = [(0.45, 0.55, 0.10), (0.40, 0.60, 0.25), (0.42, 0.58, 0.40)]  # (a, b, sigma)


def _probs(x1: np.ndarray, a: float, b: float, s: float) -> np.ndarray:
    p0, p2 = norm.cdf((a - x1) / s), norm.cdf((x1 - b) / s)
    return np.stack([p0, 1 - p0 - p2, p2], axis=-1)


def _h_along_x1(k: int, grid: np.ndarray) -> np.ndarray:
    """H on router band k along x1: expert k's class where one has more than half, else the
    population cascade (largest sigma first: the first stage with a class at >= 1/2), else -1."""
    out = np.full(len(grid), -1)
    p = _probs(grid, *EXPERTS3[k])
    decided = p.max(axis=1) > 0.5
    out[decided] = p.argmax(axis=1)[decided]
    for j in sorted(range(3), key=lambda j: -EXPERTS3[j][2]):
        q = _probs(grid, *EXPERTS3[j])
        stop = (out == -1) & (q.max(axis=1) >= 0.5)
        out[stop] = q.argmax(axis=1)[stop]
        # a stage that reached 1/2 decides (stops) even where the routed class was used
    return out


def _true3(x0: float, x1: float, grid: np.ndarray, along: list[np.ndarray]):
    """H's class at (x0, x1) and the distance to the nearest point where it differs (on a grid
    of x1, exact in x0 through the router's band edges)."""
    from test_set_certificate import _bounds, _route

    b01, b12 = _bounds()
    bands = [(-math.inf, b01), (b01, b12), (b12, math.inf)]
    k = _route(x0)
    c = int(along[k][np.abs(grid - x1).argmin()])
    dist = math.inf
    for j, (lo, hi) in enumerate(bands):
        dx = 0.0 if lo <= x0 <= hi else min(abs(x0 - lo), abs(x0 - hi))
        other = grid[along[j] != c]
        dy = float(np.abs(other - x1).min()) if len(other) else math.inf
        dist = min(dist, math.hypot(dx, dy))
    return c, dist


def test_the_fallback_path_certifies_where_the_routed_classifier_is_undecided():
    """On three-class experts the fallback path is taken and certifies a fair share of the
    inputs, within the true robust radius of H up to alpha + 3 SE (grid step as tolerance); at
    plug-in levels it overstates far more often (power)."""
    from test_set_certificate import SIGMA_R

    alpha, m, n0, n = 0.01, 800, 32, 3000
    xs = _toy_inputs(m, seed=6, x1=(0.3, 0.7))
    cert = _certifier(xs, Smooth(Bands(), 3, SIGMA_R),
                      [Smooth(Interval3(1, a, b), 3, s) for a, b, s in EXPERTS3], n0, n, seed=3)
    grid = np.linspace(-1.0, 2.0, 30001)
    along = [_h_along_x1(k, grid) for k in range(3)]

    truth = [_true3(float(xs[i, 0, 0, 0]), float(xs[i, 0, 0, 1]), grid, along)
             for i in range(m)]
    got = [cert(i, alpha) for i in range(m)]
    bad = sum(_overstated(g, *t, 2e-4) for g, t in zip(got, truth))
    on_fallback = sum(g.path == "fallback" for g in got)
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se, (bad, on_fallback)
    assert on_fallback >= m / 80, on_fallback  # 17 of 800 at seed 3
    # power: at plug-in levels (every bound near its estimate) it overstates far more often
    naive = sum(_overstated(cert(i, 4 * 0.9999), *t, 2e-4) for i, t in enumerate(truth))
    assert naive / m > alpha + 10 * se, (naive, bad)  # 103 of 800 (sound: 0) at seed 3


def test_the_live_path_is_the_composition_from_counts_and_runs_only_what_it_needs():
    """certify_fallback_batch gives the certificates composed from full count passes (same
    draws), and runs an expert's estimation draws only on the inputs that needed them."""
    from rsrouter.routing.routed import RoutedClassifier

    m, n0, n, alpha = 300, 32, 2000, 0.1
    xs = _toy_inputs(m, seed=8)
    experts = [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS]
    routed = RoutedClassifier(Smooth(Bands(), 3, SIGMA_R), experts)
    calls = [ex.base_model.calls for ex in experts]
    live = routed.certify_fallback_batch(xs, n0, n, alpha, share=0.5, batch_size=20000, seed=4)
    ran = [ex.base_model.calls - c for ex, c in zip(experts, calls)]
    assert ran == [m * n0 + n * sum(c.evaluated[k] for c in live) for k in range(3)]
    assert sum(c.path == "fallback" for c in live) >= 1  # 2 at seed 8
    assert any(c.evaluated != c.counted for c in live)  # the cascade ran an unplanned expert
    composed = _certifier(xs, routed.router, experts, n0, n, seed=4, margin=0.0)
    for i, got in enumerate(live):
        want = composed(i, alpha)
        assert (got.prediction, got.radius, got.path, got.evaluated, got.class_counts) == \
            (want.prediction, want.radius, want.path, want.evaluated, want.class_counts)


def test_rows_are_checked_on_reading():
    """A row of each path reads back; an edited radius, level, plan, path or class count, or
    an unevaluated expert given counts, is refused."""
    import pandas as pd

    from rsrouter.errors import CountsError, ResultsError
    from rsrouter.results.rows import check_rows, cohen_row

    m, n0, n = 300, 32, 2000
    cert = _certifier(_toy_inputs(m, seed=8), Smooth(Bands(), 3, SIGMA_R),
                      [Smooth(Halfspace(1, t, f), 2, s) for t, s, f in EXPERTS], n0, n, seed=4)
    certs = [cert(i, 0.1) for i in range(m)]
    df = pd.DataFrame([{**cohen_row(i, 0, c.prediction, round(c.radius, 6)), "time": 0.0,
                        **fallback.fallback_extras(c)} for i, c in enumerate(certs)])
    assert set(df["path"]) == {"routed", "fallback", "abstain"}
    assert all(c.alpha == pytest.approx(0.1) for c in certs)
    check_rows(df, "x.tsv")
    row = int(np.flatnonzero(df["path"] == "fallback")[0])
    unplanned = next(k for k, (e, c) in enumerate(zip(certs[row].evaluated,
                                                      certs[row].counted)) if e and not c)
    parts = df.loc[row, "class_counts"].split(";")
    counts = [int(v) for v in parts[unplanned].split(",")]
    parts[unplanned] = ",".join(map(str, counts[::-1]))  # its selection class loses its votes
    skipped = int(np.flatnonzero(df["evaluated"].map(lambda v: "0" in v))[0])
    for r, column, value, message in [
            (row, "radius", df.loc[row, "radius"] * 1.5, "do not follow"),
            (row, "path", "routed", "do not follow"),
            (row, "alpha_cascade", df.loc[row, "alpha_cascade"] * 2, "levels"),
            (row, "counted", "1,1,1", "levels|do not follow"),
            (row, "class_counts", ";".join(parts), "do not follow"),
            (skipped, "evaluated", "1,1,1", "exactly for the evaluated")]:
        bad = df.copy()
        bad.loc[r, column] = value
        with pytest.raises((CountsError, ResultsError), match=message):
            check_rows(bad, "x.tsv")


def test_the_fallback_radius_by_hand():
    """The fallback path's radius from hand-made counts, each bound at its documented level:
    the cascade at s alpha / 2, each off-class upper bound at s alpha / (2 K C), the router's
    entry radii at the lazy set certificate's router levels; the smallest binds."""
    from scipy.stats import beta

    from rsrouter.certify.cascade import cascade_one
    from rsrouter.certify.set_certificate import entry_radii

    alpha, s, sigmas = 0.01, 0.2, [0.25, 0.5, 1.0]
    a_r, a_e, a_c, a_o = fallback_levels(alpha, 0.5, 3, 3, share=s)
    assert (a_c, a_o) == pytest.approx((s * alpha / 2, s * alpha / 18))
    counts = [np.array([6000, 3800, 200]),  # sigma 0.25: decides class 0 (not evaluated here)
              np.array([4400, 3400, 2200]),  # sigma 0.5, the router's choice: undecided
              np.array([9300, 500, 200])]  # sigma 1.0: the cascade's first stage decides 0
    router_counts = [60, 9880, 60]
    asked = []

    def counts_of(k):
        asked.append(k)
        return counts[k]

    got = fallback_routed_certificate(
        Counts(1, 9880, 10000, 100, 1.0), router_counts, [2, 97, 1], [0, 0, 0], [60, 45, 95],
        counts_of, sigmas, ["a", "b", "c"], alpha, 0.5, margin=-10.0, share=s)
    assert got.path == "fallback" and got.counted == (False, True, False)
    assert sorted(set(asked)) == [1, 2] and got.evaluated == (False, True, True)
    r_c = cascade_one([(0, counts[2], 1.0), (0, counts[1], 0.5), (0, counts[0], 0.25)], a_c,
                      0.5)[1]
    upper = [float(beta.ppf(1 - a_o, c[j] + 1, c.sum() - c[j])) for c in counts for j in (1, 2)]
    off = [-sig * norm.ppf(max(upper[2 * k:2 * k + 2])) for k, sig in enumerate(sigmas)]
    entry = entry_radii(1, router_counts, 1.0, a_r)
    caps = [entry[0], max(entry[1], off[1]), max(entry[2], off[2])]  # expert 0 not evaluated
    assert got.radius == pytest.approx(min(r_c, *caps), rel=1e-9)
    assert got.binding == "b" and got.radius == pytest.approx(off[1], rel=1e-9)
    assert got.alpha == pytest.approx(alpha)


def test_a_cards_certificate_block_is_checked():
    from rsrouter.cards.router import check_certificate
    from rsrouter.errors import CardError

    check_certificate({"kind": "lazy-set+cascade", "margin": 0.0, "fallback_share": 0.05}, "c")
    for spec, message in [({"kind": "lazy-set", "fallback_share": 0.1}, "cascade certificate only"),
                          ({"kind": "lazy-set+cascade", "fallback_share": 1.0}, r"\(0, 1\)"),
                          ({"kind": "cascade"}, "must be one of")]:
        with pytest.raises(CardError, match=message):
            check_certificate(spec, "c")
