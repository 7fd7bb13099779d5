"""Methods composed from stored counts: no sample is drawn here.

Each function takes count frames (:func:`rsrouter.bench.counts.read_counts`, same inputs, same
order) and returns the method's per-input TSV rows: Cohen's columns, the method's extras, the
forward passes it would have spent on each input alone (``forwards``) and the wall time of the
count passes it uses (``time``). Every bound is recomputed at the method's own alpha. What each
certifies, and its alpha accounting, is in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import beta, norm

from ..certify.set_certificate import SET_EXTRAS, join_numbers, set_certificate, split_alphas
from ..certify.smoothing import ABSTAIN, certificate_from_counts, radii_from_counts
from ..certify.tree import TREE_EXTRAS, split_levels, tree_certificate
from ..errors import CountsError
from ..results.runs import EXPERT_EXTRAS
from ..results.tsv import COHEN_COLUMNS, certified_accuracy
from ..routing.router import (
    ROUTED_EXTRAS,
    SetRoutedCertificate,
    compose,
    routed_extras,
    set_extras,
)

CASCADE_EXTRAS = ("stage", "stage_expert", "stage_sigma", "stage_cA", "stage_nA", "stage_n",
                  "stage_n0", "stage_alpha", "threshold", "alpha")


def _cost(*frames: pd.DataFrame, used: Sequence[np.ndarray] | None = None) -> dict:
    """Forward passes and time of the count passes a method uses on each input."""
    used = used or [np.ones(len(frames[0]), bool)] * len(frames)
    forwards = sum(np.where(u, f["n"] + f["n0"], 0) for f, u in zip(frames, used))
    seconds = sum(np.where(u, f["time"], 0.0) for f, u in zip(frames, used))
    return {"forwards": np.asarray(forwards, dtype=np.int64), "time": np.asarray(seconds)}


def expert_frame(c: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Cohen et al.'s CERTIFY from one expert's counts at ``alpha`` (times each row's share in
    sequential mode: the bound of the look where the input stopped)."""
    alpha = alpha * c["share"].to_numpy()
    radius = radii_from_counts(c["nA"].to_numpy(), c["n"].to_numpy(), alpha, c["sigma"].to_numpy())
    predict = np.where(radius > 0, c["cA"].to_numpy(), ABSTAIN)
    label = c["label"].to_numpy()
    out = pd.DataFrame({"idx": c["idx"].to_numpy(), "label": label, "predict": predict,
                        "radius": radius, "correct": ((predict != ABSTAIN) & (predict == label))
                        .astype(int), "time": 0.0,
                        "cA": c["cA"].to_numpy(), "nA": c["nA"].to_numpy(), "n": c["n"].to_numpy(),
                        "n0": c["n0"].to_numpy(), "sigma": c["sigma"].to_numpy(), "alpha": alpha,
                        "seed": c["seed"].to_numpy(), "mode": c["mode"].to_numpy()})
    cost = _cost(c)
    out["time"] = cost["time"]
    out["forwards"] = cost["forwards"]
    return out[[*COHEN_COLUMNS, *EXPERT_EXTRAS, "forwards"]]


def routed_frame(router: pd.DataFrame, experts: Sequence[pd.DataFrame], names: Sequence[str],
                 alpha: float, alpha_split: float, router_sigma: float) -> pd.DataFrame:
    """Dual RS routing: the router certified at ``alpha * alpha_split``, the chosen expert at the
    rest; radius = min of both; either abstains -> ABSTAIN. Only the chosen expert is paid for."""
    rows, used = [], [np.zeros(len(router), bool) for _ in experts]
    for pos, r in enumerate(router.itertuples(index=False)):
        alpha_r = alpha * alpha_split * float(r.share)
        alpha_e = (alpha - alpha * alpha_split)  # times the expert row's share below
        route = certificate_from_counts(int(r.cA), int(r.nA), int(r.n), int(r.n0), router_sigma,
                                        alpha_r, int(r.seed), int(r.idx), str(r.mode))
        expert = None
        if route.prediction != ABSTAIN:
            if not 0 <= route.prediction < len(experts):
                raise CountsError(f"input idx {r.idx}: the router chose expert {route.prediction}"
                                  f", but it has {len(experts)}")
            e = experts[route.prediction].iloc[pos]
            used[route.prediction][pos] = True
            alpha_e *= float(e.share)
            expert = certificate_from_counts(int(e.cA), int(e.nA), int(e.n), int(e.n0),
                                             float(e.sigma), alpha_e, int(e.seed), int(e.idx),
                                             str(e.mode))
        cert = compose(route, expert, names[route.prediction] if expert else "",
                       alpha_r + alpha_e, alpha_r, alpha_e)
        rows.append({"idx": int(r.idx), "label": int(r.label), "predict": cert.prediction,
                     "radius": cert.radius,
                     "correct": int(cert.prediction != ABSTAIN and cert.prediction == r.label),
                     **routed_extras(cert)})
    out = pd.DataFrame(rows)
    cost = _cost(router, *experts, used=[np.ones(len(router), bool), *used])
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *ROUTED_EXTRAS, "forwards"]]


def set_frame(router: pd.DataFrame, experts: Sequence[pd.DataFrame], names: Sequence[str],
              alpha: float, alpha_split: float, router_sigma: float) -> pd.DataFrame:
    """The set certificate (:mod:`rsrouter.certify.set_certificate`) on every input: the router at
    ``alpha * alpha_split``, every expert's certificate within the rest (each row's level times
    its look's share in sequential mode). Pays for the router and every expert."""
    rows = []
    for pos, r in enumerate(router.itertuples(index=False)):
        e = [f.iloc[pos] for f in experts]
        a = int(r.cA)
        if not 0 <= a < len(experts):
            raise CountsError(f"input idx {r.idx}: the router chose expert {a}, but it has "
                              f"{len(experts)}")
        alpha_r = alpha * alpha_split * float(r.share)
        _, _, levels = split_alphas(alpha_r, alpha - alpha * alpha_split, a, len(experts))
        levels = [lv * float(row.share) for lv, row in zip(levels, e)]
        c_a, n_a, n = (tuple(int(getattr(x, col)) for x in e) for col in ("cA", "nA", "n"))
        sigmas = tuple(float(x.sigma) for x in e)
        cert = set_certificate(a, r.counts, router_sigma, c_a, n_a, n, sigmas, alpha_r, levels)
        row = SetRoutedCertificate(
            cert.prediction, cert.radius, a, names[a], names[cert.binding],
            tuple(int(v) for v in r.counts), router_sigma, c_a, n_a, n, int(r.n0), sigmas,
            alpha_r, tuple(levels), int(r.seed), str(r.mode))
        rows.append({"idx": int(r.idx), "label": int(r.label), "predict": cert.prediction,
                     "radius": cert.radius,
                     "correct": int(cert.prediction != ABSTAIN and cert.prediction == r.label),
                     **set_extras(row)})
    out = pd.DataFrame(rows)
    cost = _cost(router, *experts)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *SET_EXTRAS, "forwards"]]


def tree_frame(root: pd.DataFrame, root_sigma: float, groups: Sequence[int],
               names: Sequence[str], children: Sequence[tuple[pd.DataFrame, float, list[int]]],
               child_of_group: dict[int, int], experts: Sequence[pd.DataFrame], alpha: float,
               alpha_split: float) -> pd.DataFrame:
    """A router tree (:mod:`rsrouter.certify.tree`) on every input. ``groups[k]``: the group of the
    root's expert ``k``; ``children[i]``: ``(counts, sigma, root index of each of its
    experts)``; ``child_of_group``: which child covers a group. Pays for the root, the child on
    the path and the expert reached."""
    groups = np.asarray(groups)
    rows = []
    used_child = [np.zeros(len(root), bool) for _ in children]
    used_expert = [np.zeros(len(root), bool) for _ in experts]
    for pos, r in enumerate(root.itertuples(index=False)):
        if not 0 <= int(r.cA) < len(groups):
            raise CountsError(f"input idx {r.idx}: the root chose expert {r.cA}, but it has "
                              f"{len(groups)}")
        g = int(groups[int(r.cA)])
        members = np.flatnonzero(groups == g)
        c_index = child_of_group.get(g)
        a_root, a_child, a_expert = split_levels(alpha, alpha_split, c_index is not None)
        a_root *= float(r.share)
        child, k, c = None, int(members[0]), None
        if c_index is not None:
            frame, c_sigma, roots = children[c_index]
            c = frame.iloc[pos]
            if not 0 <= int(c.cA) < len(roots):
                raise CountsError(f"input idx {r.idx}: child router {c_index} chose expert "
                                  f"{c.cA}, but it has {len(roots)}")
            a_child *= float(c.share)
            child, k = (int(c.nA), int(c.n), c_sigma, a_child), roots[int(c.cA)]
        e = experts[k].iloc[pos]
        a_expert *= float(e.share)
        cert = tree_certificate(g, int(r.counts[members].sum()), int(r.n), root_sigma, a_root,
                                child, (int(e.cA), int(e.nA), int(e.n), float(e.sigma), a_expert))
        reached = cert.expert_radius is not None
        used_expert[k][pos] = reached
        if c_index is not None:
            used_child[c_index][pos] = cert.root_radius > 0
        rows.append({"idx": int(r.idx), "label": int(r.label), "predict": cert.prediction,
                     "radius": cert.radius,
                     "correct": int(cert.prediction != ABSTAIN and cert.prediction == r.label),
                     "expert": names[k] if reached else "-",
                     "sigma": float(e.sigma) if reached else 0.0, "group": g,
                     "root_counts": join_numbers(r.counts), "root_groups": join_numbers(groups),
                     "root_nA": int(r.counts[members].sum()), "root_n": int(r.n),
                     "root_sigma": root_sigma, "alpha_root": a_root,
                     "child_cA": int(c.cA) if c is not None else -1,
                     "child_nA": int(c.nA) if c is not None else 0,
                     "child_n": int(c.n) if c is not None else 0,
                     "child_sigma": child[2] if child else 0.0, "alpha_child": a_child,
                     "cA": int(e.cA) if reached else -1, "nA": int(e.nA) if reached else 0,
                     "n": int(e.n) if reached else 0, "n0": int(r.n0), "alpha_expert": a_expert,
                     "alpha": a_root + a_child + a_expert, "seed": int(r.seed),
                     "mode": str(r.mode)})
    out = pd.DataFrame(rows)
    cost = _cost(root, *[f for f, _, _ in children], *experts,
                 used=[np.ones(len(root), bool), *used_child, *used_expert])
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *TREE_EXTRAS, "forwards"]]


def tree_stats(frame: pd.DataFrame) -> dict:
    """A router tree's behaviour: choice shares (``-``: a router on the path abstained), the
    share of inputs that reached a child router (the root certified a group that has one)."""
    frame = frame.assign(root_certified=[
        bool(r > 0) for r in radii_from_counts(frame["root_nA"].to_numpy(),
                                               frame["root_n"].to_numpy(),
                                               frame["alpha_root"].to_numpy(),
                                               frame["root_sigma"].to_numpy())])
    choices = frame["expert"].value_counts(normalize=True).round(4).to_dict()
    return {"router_abstain": round(float((frame["expert"] == "-").mean()), 4),
            "choices": {str(k): float(v) for k, v in choices.items()},
            "through_a_child": round(float(((frame["child_n"] > 0) & frame["root_certified"])
                                            .mean()), 4)}


def _cp(n_a: int, n: int, a: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson lower and upper bounds, each at level ``a``."""
    low = float(beta.ppf(a, n_a, n - n_a + 1)) if n_a > 0 else 0.0
    high = float(beta.ppf(1 - a, n_a + 1, n - n_a)) if n_a < n else 1.0
    return low, high


def _grouped(counts: np.ndarray, c: int) -> np.ndarray:
    """Class ``c``'s count first, then the other classes largest first, those with fewer than 5
    samples pooled until a pool reaches 5 (a leftover pool joins the last group of other classes,
    never class ``c``'s): the grouping of Jeong & Shin's code (Goodman's intervals need it;
    for exact bounds it means fewer of them)."""
    rest = counts.astype(np.int64).copy()
    first = int(rest[c])
    rest[c] = 0
    groups, pool = [first], 0
    for k in np.argsort(-rest, kind="stable"):
        if rest[k] >= 5:
            groups.append(int(rest[k]))
        else:
            pool += int(rest[k])
            if pool >= 5:
                groups.append(pool)
                pool = 0
    if pool:
        if len(groups) > 1:
            groups[-1] += pool
        else:
            groups.append(pool)
    return np.array(groups)


def off_class_upper(counts: np.ndarray, c: int, a: float, exact: bool = True) -> float:
    """An upper bound, at level ``a``, on the probability of every class other than ``c``
    (each one, or a pool of them). Two groups: one minus the lower bound on ``p_c``. More:
    ``exact`` (the sound rule), one-sided Clopper-Pearson upper bounds on each other group at
    ``a`` over their number (Bonferroni: exact, and on the published benchmarks never looser
    than Goodman's); otherwise Goodman's simultaneous intervals at two-sided level ``2a``, as
    Jeong & Shin's code (asymptotic, chi-square based: not exact)."""
    groups = _grouped(counts, c)
    n = int(counts.sum())
    if len(groups) <= 2:
        return 1.0 - _cp(int(counts[c]), n, a)[0]
    if exact:
        share = a / (len(groups) - 1)
        return max(_cp(int(g), n, share)[1] for g in groups[1:])
    from statsmodels.stats.proportion import multinomial_proportions_confint

    return float(multinomial_proportions_confint(groups, alpha=2 * a, method="goodman")[1:, 1]
                 .max())


def cascade_bounds(stages: int) -> int:
    """How many bounds a K-stage cascade can use: a lower bound per stage (on its own selected
    class), and at each stage j an off-class bound for each class a later stage may predict
    (one per later stage, since each later stage's class is fixed by its selection samples):
    ``K + K (K - 1) / 2``."""
    return stages + stages * (stages - 1) // 2


def cascade_one(stages: Sequence[tuple[int, np.ndarray, float]], alpha: float, threshold: float,
                rule: str = "sound", shares: Sequence[float] | None = None
                ) -> tuple[int, float, int, float]:
    """The multiscale cascade of Jeong & Shin (NeurIPS 2023) on one input.

    ``stages``: ``(cA, estimation counts, sigma)`` from the largest sigma to the smallest. A
    stage whose lower bound on ``p_cA`` reaches ``threshold`` (p0) predicts ``cA`` within
    ``sigma (Phi^-1(pA_low) - Phi^-1(p0))``, capped so that every earlier stage, which declined,
    keeps every other class below p0: ``-sigma_j (Phi^-1(pB_high_j) - Phi^-1(p0))``. A stage
    whose upper bound still reaches p0 is undecided: ABSTAIN. A stage below p0 declines: next.

    ``rule``: "faithful" uses ``alpha / (k + 1)`` at stopping stage k, as their certify.py;
    "sound" uses ``alpha / cascade_bounds(K)`` for every bound (a union over every bound any
    stopping stage can use). ``shares`` (sequential mode) scale each stage's bounds by the share
    of alpha of the look where that stage's counts stopped. Returns ``(prediction, radius,
    stage, alpha of that stage)``.
    """
    big_k = len(stages)
    shares = shares or [1.0] * big_k
    for k, (c_a, counts, sigma) in enumerate(stages):
        a = alpha / (k + 1) if rule == "faithful" else alpha / cascade_bounds(big_k)
        n = int(counts.sum())
        low, high = _cp(int(counts[c_a]), n, a * shares[k])
        if low >= threshold:
            radius = sigma * (norm.ppf(low) - norm.ppf(threshold))
            for j, (_, earlier, sigma_j) in enumerate(stages[:k]):
                upper = off_class_upper(earlier, c_a, a * shares[j], exact=rule == "sound")
                radius = min(radius, -sigma_j * (norm.ppf(upper) - norm.ppf(threshold)))
            a_k = a * shares[k]
            return (int(c_a), float(radius), k, a_k) if radius >= 0 else (ABSTAIN, 0.0, k, a_k)
        if high >= threshold:
            return ABSTAIN, 0.0, k, a * shares[k]
    return ABSTAIN, 0.0, big_k - 1, a * shares[-1]


def cascade_frame(experts: Sequence[pd.DataFrame], names: Sequence[str], alpha: float,
                  threshold: float = 0.5, rule: str = "sound") -> pd.DataFrame:
    """:func:`cascade_one` on every input; ``experts`` in any order (sorted here by sigma,
    largest first). Pays for the stages it visits."""
    order = sorted(range(len(experts)), key=lambda k: -float(experts[k]["sigma"].iloc[0]))
    frames = [experts[k] for k in order]
    rows, used = [], [np.zeros(len(frames[0]), bool) for _ in frames]
    for pos in range(len(frames[0])):
        stages = [(int(f["cA"].iloc[pos]), f["counts"].iloc[pos], float(f["sigma"].iloc[pos]))
                  for f in frames]
        predict, radius, k, a = cascade_one(stages, alpha, threshold, rule,
                                            [float(f["share"].iloc[pos]) for f in frames])
        for j in range(k + 1):
            used[j][pos] = True
        f = frames[k]
        label = int(f["label"].iloc[pos])
        rows.append({"idx": int(f["idx"].iloc[pos]), "label": label, "predict": predict,
                     "radius": radius, "correct": int(predict != ABSTAIN and predict == label),
                     "stage": k, "stage_expert": names[order[k]], "stage_sigma": stages[k][2],
                     "stage_cA": stages[k][0], "stage_nA": int(stages[k][1][stages[k][0]]),
                     "stage_n": int(f["n"].iloc[pos]), "stage_n0": int(f["n0"].iloc[pos]),
                     "stage_alpha": a, "threshold": threshold, "alpha": alpha})
    out = pd.DataFrame(rows)
    cost = _cost(*frames, used=used)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *CASCADE_EXTRAS, "forwards"]]


ORACLE = "oracle (per-input best expert; not a certificate)"


def oracle_frame(expert_results: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per input, the best expert in hindsight (largest certified radius among correct ones).

    A ceiling for any router over these experts, **not a certificate**: choosing the expert by
    the label is not something a certified classifier can do. ``predict`` is the label where some
    expert is correct, else the first non-abstaining expert's prediction, else ABSTAIN (so the
    abstain share counts inputs where every expert abstains).
    """
    frames = list(expert_results.values())
    idx = frames[0]["idx"].to_numpy()
    for df in frames[1:]:
        if not np.array_equal(df["idx"].to_numpy(), idx):
            raise ValueError("oracle: the experts were not certified on the same inputs")
    radius = np.stack([df["radius"].to_numpy() * df["correct"].to_numpy() for df in frames], 1)
    correct = np.stack([df["correct"].to_numpy() for df in frames], 1).any(1)
    predictions = np.stack([df["predict"].to_numpy() for df in frames], 1)
    answered = predictions != ABSTAIN
    first = predictions[np.arange(len(idx)), answered.argmax(1)]
    wrong = np.where(answered.any(1), first, ABSTAIN)
    best = radius.argmax(1)
    names = list(expert_results)
    return pd.DataFrame({"idx": idx, "label": frames[0]["label"],
                         "predict": np.where(correct, frames[0]["label"], wrong),
                         "radius": radius.max(1), "correct": correct.astype(int),
                         "best_expert": [names[b] if c else "-" for b, c in zip(best, correct)]})


def routing_stats(routed: pd.DataFrame) -> dict:
    """Router behaviour on the certified inputs: choice shares, abstain rate, mean radius."""
    choices = routed["expert"].value_counts(normalize=True).round(4).to_dict()
    return {"router_mean_radius": round(float(routed["router_radius"].mean()), 4),
            "router_abstain": round(float((routed["expert"] == "-").mean()), 4),
            "choices": {str(k): float(v) for k, v in choices.items()},
            "expert_abstain_given_route": round(float(
                ((routed["predict"] == -1) & (routed["expert"] != "-")).mean()), 4)}


def set_stats(frame: pd.DataFrame) -> dict:
    """The set certificate's behaviour: the router's top choices, and how often the chosen
    expert's own radius (not another expert the router may switch to) sets the radius."""
    certified = frame["predict"] != ABSTAIN
    choices = frame["expert"].value_counts(normalize=True).round(4).to_dict()
    return {"choices": {str(k): float(v) for k, v in choices.items()},
            "radius_set_by_chosen_expert": round(float(
                (certified & (frame["binding"] == frame["expert"])).mean()), 4),
            "radius_set_by_another_expert": round(float(
                (certified & (frame["binding"] != frame["expert"])).mean()), 4)}


def envelope(expert_results: dict[str, pd.DataFrame], radii: Sequence[float]) -> pd.DataFrame:
    """Per radius, the expert with the highest certified accuracy there: what one global sigma,
    picked per radius on these very inputs, reaches. A selection over the test set, not a
    classifier: no single system attains it at every radius."""
    table = pd.DataFrame({name: certified_accuracy(df, radii) for name, df in
                          expert_results.items()})
    n = len(next(iter(expert_results.values())))
    best = table.idxmax(axis=1)
    return pd.DataFrame({"radius": list(radii), "expert": best.to_numpy(),
                         "certified_accuracy": table.max(axis=1).to_numpy(),
                         "correct": np.rint(table.max(axis=1).to_numpy() * n).astype(int),
                         "inputs": n})
