"""Router trees: groups, the certificate by hand, its coverage on a problem whose routed
classifier is known exactly, the bench rows checked on reading."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from countframes import counts_frame
from scipy.stats import beta, norm
from torch import nn
from toymodels import Bands, Halfspace

from rsrouter.bench.methods import tree_frame
from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.smoothing import Smooth
from rsrouter.certify.tree import groups_of, split_levels, tree_certificate
from rsrouter.errors import CountsError, ResultsError
from rsrouter.results.tsv import read_tsv, write_tsv


def test_groups():
    experts = ["s25", "s50", "s100"]
    assert groups_of(experts, [["s25", "s50"]]) == [0, 0, 1]
    assert groups_of(experts, [["s50", "s100"]]) == [0, 1, 1]
    assert groups_of(experts, [["s25"], ["s100"]]) == [0, 1, 2]
    with pytest.raises(ValueError, match="among some of the root's experts"):
        groups_of(experts, [["s25", "s200"]])
    with pytest.raises(ValueError, match="under two child routers"):
        groups_of(experts, [["s25", "s50"], ["s50"]])
    assert split_levels(0.001, 0.5, True) == pytest.approx((0.00025, 0.00025, 0.0005))
    assert split_levels(0.001, 0.5, False) == pytest.approx((0.0005, 0.0, 0.0005))


def _radius(n_a, n, a, sigma):
    return sigma * norm.ppf(beta.ppf(a, n_a, n - n_a + 1))


def test_by_hand():
    """Root 9,000 of 10,000 draws in the group, child 800 of 1,000, expert 990 of 1,000: the
    radius is the smallest of the three, each one-sided Clopper-Pearson at its level."""
    cert = tree_certificate(0, 9000, 10_000, 1.0, 0.00025, (800, 1000, 0.5, 0.00025),
                            (7, 990, 1000, 0.25, 0.0005))
    parts = (_radius(9000, 10_000, 0.00025, 1.0), _radius(800, 1000, 0.00025, 0.5),
             _radius(990, 1000, 0.0005, 0.25))
    assert cert.prediction == 7 and cert.radius == pytest.approx(min(parts), rel=1e-12)
    assert (cert.root_radius, cert.child_radius, cert.expert_radius) == pytest.approx(parts)
    # no child: the root and the expert
    cert = tree_certificate(1, 9000, 10_000, 1.0, 0.0005, None, (7, 990, 1000, 0.25, 0.0005))
    assert cert.radius == pytest.approx(min(parts[0], parts[2]), rel=1e-12)
    # the child cannot decide: abstain, and the expert is not reached
    cert = tree_certificate(0, 9000, 10_000, 1.0, 0.00025, (500, 1000, 0.5, 0.00025),
                            (7, 990, 1000, 0.25, 0.0005))
    assert cert.prediction == ABSTAIN and cert.radius == 0 and cert.expert_radius is None
    # the expert abstains
    cert = tree_certificate(0, 9000, 10_000, 1.0, 0.00025, None, (7, 500, 1000, 0.25, 0.0005))
    assert cert.prediction == ABSTAIN and cert.expert_radius == 0.0


class Split(nn.Module):
    """The child on coordinate 2: its expert 0 below 0.5, its expert 1 above."""

    def forward(self, x):
        return nn.functional.one_hot((x.flatten(1)[:, 2] > 0.5).long(), 2).float()


SIGMA_ROOT, SIGMA_CHILD = 0.3, 0.2
EXPERTS = [(0.45, 0.15, False), (0.5, 0.25, False), (0.55, 0.4, True)]  # (t, sigma, flip)
GROUPS = [0, 0, 1]  # the child covers experts 0 and 1


def _true(x0, x1, x2):
    """The routed classifier's class at x and the distance to the nearest point where it
    differs. Smoothed, the root's group "small" has probability Phi((0.65 - x0) / sigma_root):
    above 1/2 iff x0 < 0.65; the child picks expert 0 iff x2 < 0.5; each smoothed expert is its
    halfspace. Regions: (x0 < 0.65, x2 < 0.5) -> 0, (x0 < 0.65, x2 >= 0.5) -> 1, x0 >= 0.65 -> 2."""
    regions = [((-math.inf, 0.65), (-math.inf, 0.5), 0), ((-math.inf, 0.65), (0.5, math.inf), 1),
               ((0.65, math.inf), (-math.inf, math.inf), 2)]

    def gap(v, lo, hi):
        return 0.0 if lo <= v <= hi else min(abs(v - lo), abs(v - hi))

    k = next(e for (a, b), (c, d), e in regions if a <= x0 < b and c <= x2 < d)
    t, _, flip = EXPERTS[k]
    c = int((x1 > t) != flip)
    dist = math.inf
    for (a, b), (lo, hi), j in regions:
        tj, _, fj = EXPERTS[j]
        above = 0 if fj else 1  # expert j's class above t_j
        dy = max(0.0, tj - x1) if above != c else max(0.0, x1 - tj)
        dist = min(dist, math.sqrt(gap(x0, a, b) ** 2 + gap(x2, lo, hi) ** 2 + dy ** 2))
    return c, dist


def test_coverage_on_a_known_routed_classifier():
    """Certified and wrong, or certified beyond the routed classifier's true robust radius, on at
    most alpha + 3 standard errors of the inputs. Power: leaving out the child's radius (the
    mistake a tree invites) overstates far more often."""
    alpha, m, n0, n = 0.01, 1500, 32, 3000
    rng = np.random.default_rng(5)
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0] = torch.tensor(rng.uniform(0.0, 1.0, m)).float()
    xs[:, 0, 0, 1] = torch.tensor(rng.uniform(0.1, 0.9, m)).float()
    xs[:, 0, 0, 2] = torch.tensor(rng.uniform(0.0, 1.0, m)).float()
    root = Smooth(Bands(), 3, SIGMA_ROOT).count_batch(xs, n0, n, batch_size=20000, seed=1)
    child = Smooth(Split(), 2, SIGMA_CHILD).count_batch(xs, n0, n, batch_size=20000, seed=2)
    experts = [Smooth(Halfspace(1, t, f), 2, s).count_batch(xs, n0, n, batch_size=20000, seed=3)
               for t, s, f in EXPERTS]
    groups = np.array(GROUPS)
    bad = blind = certified = 0
    for i in range(m):
        g = int(groups[int(root[0][i])])
        a_root, a_child, a_expert = split_levels(alpha, 0.5, g == 0)
        k = int(child[0][i]) if g == 0 else 2
        c_k, counts_k = int(experts[k][0][i]), experts[k][1][i]
        path_child = (int(child[1][i, child[0][i]]), n, SIGMA_CHILD, a_child) if g == 0 else None
        cert = tree_certificate(g, int(root[1][i][groups == g].sum()), n, SIGMA_ROOT, a_root,
                                path_child, (c_k, int(counts_k[c_k]), n, EXPERTS[k][1], a_expert))
        c, true_radius = _true(*(float(xs[i, 0, 0, j]) for j in range(3)))
        if cert.prediction != ABSTAIN:
            certified += 1
            bad += cert.prediction != c or cert.radius > true_radius + 1e-6
            without_child = min(cert.root_radius, cert.expert_radius)
            blind += without_child > true_radius + 1e-6
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert bad / m <= alpha + 3 * se
    assert certified > m / 2
    assert blind / m > alpha + 10 * se


def test_tree_rows_are_checked_on_reading(tmp_path):
    """Input 0: the root picks expert 0's group (pooled 9,000 + 900), the child expert 1.
    Input 1: the root picks the large expert (no child). Input 2: the root abstains."""
    root = counts_frame([(0, 1, [9000, 900, 100]), (1, 0, [100, 100, 9800]),
                          (2, 1, [3000, 2000, 5000])], 1.0)
    child = counts_frame([(0, 1, [100, 900]), (1, 0, [500, 500]), (2, 1, [900, 100])], 0.5)
    experts = [counts_frame([(0, 1, [3, 997]), (1, 0, [995, 5]), (2, 1, [0, 1000])], 0.25),
               counts_frame([(0, 1, [10, 990]), (1, 0, [900, 100]), (2, 1, [0, 1000])], 0.5),
               counts_frame([(0, 1, [50, 950]), (1, 0, [990, 10]), (2, 1, [0, 1000])], 1.0)]
    names = ["s25", "s50", "s100"]
    frame = tree_frame(root, 1.0, GROUPS, names, [(child, 0.5, [0, 1])], {0: 0}, experts,
                       0.001, 0.5)
    assert frame["expert"].tolist() == ["s50", "s100", "-"]
    assert frame["predict"].tolist() == [1, 0, ABSTAIN]
    assert frame["alpha"].tolist() == pytest.approx([0.001] * 3)
    r0 = min(_radius(9900, 10_000, 0.00025, 1.0), _radius(900, 1000, 0.00025, 0.5),
             _radius(990, 1000, 0.0005, 0.5))
    assert frame["radius"][0] == pytest.approx(r0, rel=1e-9)
    # the root, the child on the path and the expert reached are paid for; nothing past an
    # abstaining root
    assert frame["forwards"].tolist() == [10_100 + 1100 + 1100, 10_100 + 1100, 10_100]
    path = write_tsv(frame, tmp_path / "tree.tsv")
    back = read_tsv(path)
    assert back["radius"].tolist() == pytest.approx(frame["radius"].tolist(), abs=1e-6)
    for changes, match in [({"radius": frame["radius"][0] + 0.1}, "do not follow from its counts"),
                           ({"root_nA": 9800}, "group's experts"),
                           ({"alpha_child": 0.0004}, "must equal alpha"),
                           # leave the child out and give its alpha to the root: a larger radius
                           ({"child_n": 0, "child_nA": 0, "alpha_root": 0.0005,
                             "alpha_child": 0.0}, "goes through its child router"),
                           ({"root_counts": "9901,-1,100"}, "do not match")]:
        forged = frame.copy()
        for column, value in changes.items():
            forged.loc[0, column] = value
        write_tsv(forged, tmp_path / "forged.tsv")
        with pytest.raises((ResultsError, CountsError), match=match):
            read_tsv(tmp_path / "forged.tsv")
    # sequential mode: each model's level is scaled by the share of the look it stopped at
    halved = [f.assign(share=0.5) for f in (root, child, *experts)]
    frame = tree_frame(halved[0], 1.0, GROUPS, names, [(halved[1], 0.5, [0, 1])], {0: 0},
                       halved[2:], 0.001, 0.5)
    assert frame["alpha"].tolist() == pytest.approx([0.0005] * 3)
    assert frame["alpha_root"][0] == pytest.approx(0.000125)
