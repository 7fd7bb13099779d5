"""Per-input coverage tests with power for the composed certificates (issue 19).

Each test certifies ONE fixed input (every coordinate 0.5) R times, at indices 0..R-1: every noise
stream is seeded by (seed, index, stage), so the repetitions are independent. alpha = 0.2. The
models are halfspaces on one coordinate (the tree's root pools two), whose smoothed probabilities
are exact (P(class) = Phi(margin / sigma)), so every exact robust radius is known. A repetition
FAILS if its certificate is not ABSTAIN and is wrong: a wrong class (or route), a radius above the
exact robust radius of the composed classifier, or, for the pinned certificates (routed, tree), a
router's or expert's own claim (its choice within its radius) that is false.

Tight by construction. Each model's probability p sits just below a jump of the one-sided
Clopper-Pearson lower bound L(k) at the level the model is certified at (:func:`below_jump`): with
k the smallest count whose bound exceeds p, P(bound > p) = P(Bin(n, p) >= k) =
beta.cdf(p, k, n - k + 1), which equals the level at p = L(k); so the bound fails at its level
less O(n * 1e-5). The models whose bounds can fail read separate coordinates of the shared
draws (independent failures) or one coordinate with a negative or small dependence (said in each
test), so the union bound over the bounds that can bind is nearly attained.

Thresholds. Let A be the level of the bounds whose failure can make this input's certificate fail
(A = alpha for the pinned certificates; less where the certificate's structure lets only some of
its bounds bind: said in each test) and SE = sqrt(A (1 - A) / R). The sound code must fail on at
most A + 4 SE of the repetitions. A broken variant, the real code path with the one function that
carries a piece of the alpha accounting patched to be 2x too generous, must fail on more than
A + 4 SE. Each docstring gives the expected rates (exact binomial sums; the sequential one by a
dynamic programme over the first look's count), and R puts both at least about 4 of their own SEs
from that threshold; the seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import beta, binom, norm
from torch import nn
from toymodels import Halfspace

from rsrouter.bench import methods
from rsrouter.bench.counts import read_counts
from rsrouter.bench.store import ensure_counts
from rsrouter.certify import cascade
from rsrouter.certify.bounds import ABSTAIN, radii_from_counts
from rsrouter.certify.sequential import Sequential
from rsrouter.certify.smoothing import Smooth
from rsrouter.data import DatasetInfo, TensorImageDataset
from rsrouter.protocol import Protocol
from rsrouter.routing.routed import RoutedClassifier
from rsrouter.routing.router import ROUTER_STAGES

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHA = 0.2
N0 = 100
BATCH = 50_000
DELTA = 1e-5  # how far below a jump of the lower bound each probability sits
TOL = 1e-9
X = 0.5  # every coordinate of the input
INFO = DatasetInfo("point", 2, (1, 1, 4), (0.5,), (0.25,))


class PooledRoot(nn.Module):
    """A root over three experts: 2 iff x[0] > m; else 1 iff x[3] > s, else 0. Its group {0, 1}
    has probability Phi((m - x[0]) / sigma), however the group's votes split."""

    def __init__(self, m: float, s: float) -> None:
        super().__init__()
        self.m, self.s = m, s

    def forward(self, x):
        v = x.flatten(1)
        k = torch.where(v[:, 0] > self.m, 2, (v[:, 3] > self.s).long())
        return nn.functional.one_hot(k, 3).float()


def below_jump(n: int, level: float, lo: float, hi: float) -> float:
    """A probability in (lo, hi) just below a jump of the lower bound at ``level`` with ``n``
    samples, where the bound fails with probability ``level`` - O(n DELTA); of those, the one
    where the bound at ``2 level`` (the broken variants') also fails most nearly at its level."""
    k = np.arange(1, n + 1)
    jumps = beta.ppf(level, k, n - k + 1)
    p = jumps[(jumps > lo) & (jumps < hi)] - DELTA
    first = np.searchsorted(beta.ppf(2 * level, k, n - k + 1), p, side="right") + 1
    return float(p[np.argmax(binom.sf(first - 1, n, p))])


def straddle(n: int, level: float, lo: float, hi: float) -> tuple[float, float]:
    """``(p, p0)``, ``p0 < p`` in (lo, hi), in the narrowest gap (at least 1e-5) between a jump
    U(j) of the upper bound and the next jump L(k) of the lower bound, both at ``level``:
    P(upper bound < p0) = P(Bin(n, p) <= j) and P(lower bound > p) = P(Bin(n, p) >= k) are both
    ``level`` less O(n * gap)."""
    counts = np.arange(n + 1)
    up = beta.ppf(1 - level, counts[:-1] + 1, n - counts[:-1])
    low = beta.ppf(level, counts[1:], n - counts[1:] + 1)
    up = up[(up > lo) & (up < hi)]
    gap = low[np.searchsorted(low, up, side="right")] - up
    i = int(np.argmin(np.where(gap >= 1e-5, gap, np.inf)))
    return float(up[i] + gap[i] / 2), float(up[i] + gap[i] / 4)


def repeat(r: int) -> torch.Tensor:
    """R copies of the input (indices 0..R-1 give them independent noise)."""
    return torch.full((r, 1, 1, 4), X)


def store_counts(folder, name: str, model: Smooth, r: int, protocol: Protocol,
                 stages: Sequence[str] = ("select", "estimate")) -> pd.DataFrame:
    """The model's counts on the R copies as ``bench run`` stores and reads them (the store's
    stages and seed: every model on the same noise draws)."""
    data = TensorImageDataset(repeat(r), torch.zeros(r, dtype=torch.long), INFO)
    return read_counts(ensure_counts(model, name, data, range(r), folder, protocol,
                                     stages=stages, progress=False))


def assert_power(sound: np.ndarray, broken: np.ndarray, level: float) -> None:
    """Sound failure share <= level + 4 SE < broken failure share."""
    r = len(sound)
    bar = level + 4 * math.sqrt(level * (1 - level) / r)
    assert sound.mean() <= bar, f"sound code: {sound.mean():.4f} of {r} fail, above {bar:.4f}"
    assert broken.mean() > bar, (f"broken variant: only {broken.mean():.4f} of {r} fail, not above "
                                 f"{bar:.4f}: the test has no power")


def _sound_then_broken(monkeypatch, run: Callable[[], np.ndarray], target, name: str,
                       broken) -> tuple[np.ndarray, np.ndarray]:
    """``run()`` as is, then with ``target.name`` replaced by ``broken``."""
    sound = run()
    with monkeypatch.context() as patch:
        patch.setattr(target, name, broken)
        return sound, run()


def test_routed_pinned_router_and_expert_read_one_coordinate(monkeypatch):
    """Dual RS's pinned certificate (``certify_batch``), router and expert on coordinate 0.

    Router (sigma 0.5): expert 1 iff x0 > 0.5 - rho_r; expert 1 (sigma 0.25): class 1 iff
    x0 < 0.5 + rho_e (flipped); expert 0 says class 0 where the route is 0, so the routed
    classifier is class 1 exactly on (0.5 - rho_r, 0.5 + rho_e). Both at p = 0.744 (rho =
    sigma Phi^-1(p)), tuned at level alpha / 2 = 0.1, n = 1000. On the shared draws the router
    counts z > -Phi^-1(p), the expert z < Phi^-1(p): negatively dependent (corr -0.34), so the two
    failures are nearly disjoint: exact failure rate (trinomial sum) 0.197 sound; 0.383 with
    ``RoutedClassifier.split`` giving both parts the full alpha. A = alpha; R = 800: bar 0.257,
    4.2 SE above 0.197 and 7.4 SE below 0.383.
    """
    r, n = 800, 1000
    p = below_jump(n, ALPHA / 2, 0.65, 0.75)
    rho_r, rho_e = 0.5 * norm.ppf(p), 0.25 * norm.ppf(p)
    router = Smooth(Halfspace(0, X - rho_r), 2, 0.5)
    experts = [Smooth(Halfspace(0, X - rho_r), 2, 0.25),
               Smooth(Halfspace(0, X + rho_e, flip=True), 2, 0.25)]

    def failures() -> np.ndarray:
        certs = RoutedClassifier(router, experts).certify_batch(repeat(r), N0, n, ALPHA,
                                                                batch_size=BATCH, seed=11)
        return np.array([c.prediction != ABSTAIN and (
            c.expert != 1 or c.prediction != 1 or c.router_radius > rho_r + TOL
            or c.expert_radius > rho_e + TOL or c.radius > min(rho_r, rho_e) + TOL)
            for c in certs])

    assert_power(*_sound_then_broken(monkeypatch, failures, RoutedClassifier, "split",
                                     lambda self, alpha: (alpha, alpha)), ALPHA)


def _set_models(n: int, level: float) -> tuple[Smooth, list[Smooth], float]:
    """Router, experts and exact radius d of the set certificate's input, all on coordinate 0.

    Router (sigma 0.5): expert B = 1 iff x0 > 0.5 + d, with q = P(route A = 0) = Phi(d / 0.5)
    tuned at ``level``; B: class 0 iff x0 < 0.5 + d, its sigma set so that its class-0
    probability p_B is tuned at ``level`` too; A: class 0 iff x0 < 0.5 + 3d (sigma 0.5, p_A
    0.97: its radius is never the binding one). The routed classifier is class 0 up to
    x0 = 0.5 + d, where the router switches to B and B says 1: exact robust radius d, which the
    router's entry radius e_B (from its lower bound on q) and B's radius both reach.
    """
    q = below_jump(n, level, 0.7, 0.75)
    d = 0.5 * norm.ppf(q)
    p_b = below_jump(n, level, 0.94, 0.97)
    router = Smooth(Halfspace(0, X + d), 2, 0.5)
    experts = [Smooth(Halfspace(0, X + 3 * d), 2, 0.5),
               Smooth(Halfspace(0, X + d), 2, d / norm.ppf(p_b))]
    return router, experts, d


def test_set_certificate_with_switching(monkeypatch):
    """``certify_set_batch``'s own output, where the router may switch to expert B.

    Radius = min(R_A, max(e_B, R_B)) with B agreeing; R_A is slack, so it fails exactly when the
    router's lower bound (alpha_r / 2 = 0.05) or B's bound (alpha_e / 2 = 0.05) fails: only half
    of alpha can bind at one input (A's bound and B's sit in a min; with two experts the router's
    upper bound on B is its lower bound on A), so A = alpha / 2. n = 1000, q = 0.734, p_B = 0.963:
    the two counts are nested events of one coordinate (corr 0.33); exact failure rate 0.092
    sound, 0.177 with ``RoutedClassifier.split`` giving both parts the full alpha (every bound
    2x). R = 1600: bar 0.130, 5.2 SE above 0.092 and 5.0 SE below 0.177.
    """
    r, n = 1600, 1000
    router, experts, d = _set_models(n, ALPHA / 4)
    switched = []

    def failures() -> np.ndarray:
        certs = RoutedClassifier(router, experts).certify_set_batch(repeat(r), N0, n, ALPHA,
                                                                    batch_size=BATCH, seed=12)
        own = radii_from_counts([c.router_counts[0] for c in certs], n, ALPHA / 4, 0.5)
        switched.append(np.mean([c.radius > e for c, e in zip(certs, own)]))
        return np.array([c.prediction != ABSTAIN and (c.prediction != 0 or c.radius > d + TOL)
                         for c in certs])

    assert_power(*_sound_then_broken(monkeypatch, failures, RoutedClassifier, "split",
                                     lambda self, alpha: (alpha, alpha)), ALPHA / 2)
    assert switched[0] > 0.3  # B's certificate carries the radius beyond the router's own


def test_router_tree_on_the_bench_shared_streams(tmp_path, monkeypatch):
    """A router tree composed by ``tree_frame`` from counts the bench store computed: root,
    child and experts on the same noise draws (same seed and stages), reading coordinates 0, 1
    and 2 of them, so their failures are independent.

    Root (sigma 0.5, three experts pooled into {0, 1} and {2}): group {0, 1} iff x0 < 0.5 +
    rho_0, split 90 / 10 inside the group by coordinate 3; child (sigma 0.25): expert 1 iff
    x1 > 0.5 - rho_c; expert 1 (sigma 0.25): class 1 iff x2 > 0.5 - rho_e. Levels (split 0.5,
    a child on the path): root 0.05, child 0.05, expert 0.1, each model's p tuned at its level,
    n = 1000. Exact failure rate 1 - 0.95 * 0.95 * 0.9 = 0.188 sound, 1 - 0.9 * 0.9 * 0.8 = 0.352
    with ``tree.split_levels`` (as the bench imports it) doubling every level. A = alpha; R = 800:
    bar 0.257, 5.0 SE above 0.188 and 5.6 SE below 0.352.
    """
    r, n = 800, 1000
    p_root, p_child = below_jump(n, ALPHA / 4, 0.7, 0.75), below_jump(n, ALPHA / 4, 0.7, 0.75)
    p_e = below_jump(n, ALPHA / 2, 0.7, 0.75)
    rho = (0.5 * norm.ppf(p_root), 0.25 * norm.ppf(p_child), 0.25 * norm.ppf(p_e))
    protocol = Protocol(N0, n, ALPHA, seed=13, batch_size=BATCH)
    root = Smooth(PooledRoot(X + rho[0], X - 0.5 * norm.ppf(0.9)), 3, 0.5)
    child = Smooth(Halfspace(1, X - rho[1]), 2, 0.25)
    experts = [Smooth(Halfspace(2, t), 2, 0.25) for t in (2.0, X - rho[2], 2.0)]
    root_counts = store_counts(tmp_path, "root", root, r, protocol, ROUTER_STAGES)
    child_counts = store_counts(tmp_path, "child", child, r, protocol, ROUTER_STAGES)
    expert_counts = [store_counts(tmp_path, f"e{k}", e, r, protocol) for k, e in enumerate(experts)]

    def failures() -> np.ndarray:
        f = methods.tree_frame(root_counts, 0.5, [0, 0, 1], ["e0", "e1", "e2"],
                               [(child_counts, 0.25, [0, 1])], {0: 0}, expert_counts, ALPHA, 0.5)
        claims = [radii_from_counts(f[f"{m}nA"], f[f"{m}n"], f[f"alpha_{a}"], f[f"{m}sigma"])
                  for m, a in (("root_", "root"), ("child_", "child"), ("", "expert"))]
        wrong = (f["group"] != 0) | (f["child_cA"] != 1) | (f["predict"] != 1)
        for claim, exact in zip(claims, rho):
            wrong |= claim > exact + TOL
        return ((f["predict"] != ABSTAIN) & wrong).to_numpy()

    levels = methods.split_levels

    def doubled(alpha, split, with_child):
        return tuple(2 * v for v in levels(alpha, split, with_child))

    assert_power(*_sound_then_broken(monkeypatch, failures, methods, "split_levels", doubled),
                 ALPHA)


def test_multiscale_cascade_sound_rule(tmp_path, monkeypatch):
    """The multiscale cascade (``cascade_frame``, "sound" rule: alpha / 3 for each of the 3
    bounds of two stages) from stored counts.

    Stage 0 (sigma 0.5): class 0 with probability p = 0.7052 on coordinate 0; stage 1 (sigma
    0.25): class 1 with probability 0.99; threshold p0 just below p (:func:`straddle`, n = 2050,
    level alpha / 3). The cascade predicts 0 at the input, exact robust radius
    0.5 (Phi^-1(p) - Phi^-1(p0)) (beyond it stage 0 declines and stage 1 says 1). Its certificate
    is wrong exactly when stage 0's lower bound exceeds p (class 0, radius too large) or its
    upper bound on class 0 (which is also its off-class bound for stage 1's class) falls below
    p0 (it declines, stage 1 certifies class 1); stage 1's bound cannot make it wrong, so
    A = 2 alpha / 3. Exact failure rate 0.133 sound, 0.255 with ``cascade_bounds`` halved (every
    bound at 2 alpha / 3). R = 1000: bar 0.176, 4.0 SE above 0.133 and 5.7 SE below 0.255.
    """
    r, n = 1000, 2050
    p, p0 = straddle(n, ALPHA / 3, 0.7, 0.72)
    protocol = Protocol(N0, n, ALPHA, seed=14, batch_size=BATCH)
    big = store_counts(tmp_path, "big", Smooth(Halfspace(0, X + 0.5 * norm.ppf(p)), 2, 0.5), r,
                       protocol)
    small = store_counts(tmp_path, "small",
                         Smooth(Halfspace(0, X - 0.25 * norm.ppf(0.99)), 2, 0.25), r, protocol)
    exact = 0.5 * (norm.ppf(p) - norm.ppf(p0))

    def failures() -> np.ndarray:
        f = methods.cascade_frame([small, big], ["small", "big"], ALPHA, p0, "sound")
        return ((f["predict"] != ABSTAIN)
                & ((f["predict"] != 0) | (f["radius"] > exact + TOL))).to_numpy()

    bounds = cascade.cascade_bounds
    assert_power(*_sound_then_broken(monkeypatch, failures, cascade, "cascade_bounds",
                                     lambda stages: bounds(stages) / 2), 2 * ALPHA / 3)


def _full_shares(self) -> list[float]:
    """A broken :meth:`Sequential.shares`: every look at the full alpha (2x with two looks)."""
    return [1.0] * len(self.looks)


def test_routed_pinned_sequential_looks(tmp_path, monkeypatch):
    """Dual RS routing (``routed_frame``) on sequential counts from the bench store.

    Looks (100, 1000), shares (0.5, 0.5): router and expert at alpha / 2 * 0.5 = 0.05 a look.
    Router (coordinate 0) and expert 1 (coordinate 1), both sigma 0.5 with p = 0.7285, so both
    exact radii are rho = 0.5 Phi^-1(p), and the grid is (rho,): a model stops at the first look
    iff its look-1 bounds at the stopping rule's level (alpha * 0.5) decide rho: certified there
    (which includes every look-1 failure) or out of reach; else it goes on to the last look. Per
    model, by a sum over the first look's count: fails with probability 0.076 (either look can
    fail); union of the two, independent: 0.146. Broken: ``Sequential.shares`` returning 1 for
    every look (the looks' shares ignored): 0.164 per model, 0.301. p is the jump of the last
    look's bound (in (0.728, 0.729)) where that sum gives the broken rate most above the bar; the
    coarse first look makes this matter (the median jump in (0.65, 0.8) gives 0.26). A = alpha;
    R = 2000: bar 0.236, 11 SE above 0.146 and 6.4 SE below 0.301.
    """
    r, looks = 2000, (100, 1000)
    p = below_jump(looks[-1], ALPHA / 4, 0.728, 0.729)
    rho = 0.5 * norm.ppf(p)
    router = Smooth(Halfspace(0, X - rho), 2, 0.5)
    experts = [Smooth(Halfspace(2, -1.0), 2, 0.5), Smooth(Halfspace(1, X - rho), 2, 0.5)]
    stops = []

    def failures() -> np.ndarray:
        folder = tmp_path / f"run{len(stops)}"  # a patched share is not in the counts' key
        protocol = Protocol(N0, looks[-1], ALPHA, seed=15, batch_size=BATCH,
                            sequential=Sequential(looks), radii=(rho,))
        f = methods.routed_frame(store_counts(folder, "router", router, r, protocol,
                                              ROUTER_STAGES),
                                 [store_counts(folder, f"e{k}", e, r, protocol)
                                  for k, e in enumerate(experts)],
                                 ["e0", "e1"], ALPHA, 0.5, 0.5)
        stops.append([np.mean(f[col] == looks[0]) for col in ("router_n", "n")])
        wrong = ((f["router_cA"] != 1) | (f["predict"] != 1) | (f["router_radius"] > rho + TOL)
                 | (f["expert_radius"] > rho + TOL))
        return ((f["predict"] != ABSTAIN) & wrong).to_numpy()

    assert_power(*_sound_then_broken(monkeypatch, failures, Sequential, "shares",
                                     _full_shares), ALPHA)
    assert all(0.05 < share < 0.5 for share in stops[0])  # both looks are used


def test_set_certificate_sequential_looks(tmp_path, monkeypatch):
    """The set certificate (``set_frame``) on sequential counts from the bench store.

    Looks (500, 1000), shares (0.5, 0.5), grid (0,): every model's first look decides r = 0
    (its lower bound at alpha * 0.5 stays at or below 1/2 with probability < 1e-20), so every
    input stops there (checked) and its bounds carry the first look's share: the router's lower
    bound alpha_r / 2 * 0.5 = 0.025, B's alpha_e / 2 * 0.5 = 0.025. Models as in
    :func:`_set_models`, tuned at n = 500 and level 0.025: q = 0.739, p_B = 0.969 (corr 0.30);
    A = (alpha / 2) * 0.5 = 0.05. Exact failure rate (nested events) 0.048 sound, 0.092 with
    ``Sequential.shares`` returning 1 for every look. R = 3000: bar 0.066, 4.7 SE above 0.048
    and 5.0 SE below 0.092.
    (With a grid that sends inputs on to the second look, as in the routed test, the set
    certificate fails at 0.07 sound and 0.12 broken against A = 0.1: some 15,000 repetitions to
    tell them apart.)
    """
    r, looks = 3000, (500, 1000)
    router, experts, d = _set_models(looks[0], ALPHA / 8)
    runs = []

    def failures() -> np.ndarray:
        folder = tmp_path / f"run{len(runs)}"  # a patched share is not in the counts' key
        protocol = Protocol(N0, looks[-1], ALPHA, seed=16, batch_size=BATCH,
                            sequential=Sequential(looks), radii=(0.0,))
        counts = [store_counts(folder, "router", router, r, protocol, ROUTER_STAGES),
                  *(store_counts(folder, f"e{k}", e, r, protocol) for k, e in enumerate(experts))]
        runs.append(all((c["n"] == looks[0]).all() for c in counts))
        f = methods.set_frame(counts[0], counts[1:], ["A", "B"], ALPHA, 0.5, 0.5)
        return ((f["predict"] != ABSTAIN)
                & ((f["predict"] != 0) | (f["radius"] > d + TOL))).to_numpy()

    assert_power(*_sound_then_broken(monkeypatch, failures, Sequential, "shares",
                                     _full_shares), ALPHA / 4)
    assert all(runs)  # every input stopped at the first look, sound and broken
