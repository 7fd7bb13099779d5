"""Methods composed from stored counts: no sample is drawn here.

Each function takes count frames (:func:`rsrouter.bench.counts.read_counts`, same inputs, same
order) and returns the method's per-input TSV rows: Cohen's columns, the method's extras, the
forward passes it would have spent on each input alone (``forwards``) and the wall time of the
count passes it uses (``time``). Every bound is recomputed at the method's own alpha. What each
certifies, and its alpha accounting, is in docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd

from .._moved import getattr_for as _getattr_for
from ..certify.bounds import ABSTAIN, Counts, radii_from_counts, split_alpha
from ..certify.cascade import CASCADE_EXTRAS, cascade_one
from ..certify.fallback import (
    DEFAULT_SHARE,
    FALLBACK_EXTRAS,
    fallback_extras,
    fallback_routed_certificate,
)
from ..certify.lazy_set import LAZY_SET_EXTRAS, lazy_set_extras, lazy_set_routed_certificate
from ..certify.routed import ROUTED_EXTRAS, routed_certificate, routed_extras
from ..certify.set_certificate import (
    SET_EXTRAS,
    join_numbers,
    set_extras,
    set_routed_certificate,
)
from ..certify.tree import TREE_EXTRAS, split_levels, tree_certificate
from ..errors import CountsError
from ..results.curves import certified_accuracy
from ..results.rows import COHEN_COLUMNS, EXPERT_EXTRAS, cohen_row
from . import accounting


def _cost(*frames: pd.DataFrame, used: Sequence[np.ndarray] | None = None) -> dict:
    """Forward passes and time of the count passes a method uses on each input."""
    used = used or [np.ones(len(frames[0]), bool)] * len(frames)
    forwards = sum(np.where(u, f["n"] + f["n0"], 0) for f, u in zip(frames, used))
    seconds = sum(np.where(u, f["time"], 0.0) for f, u in zip(frames, used))
    return {"forwards": np.asarray(forwards, dtype=np.int64), "time": np.asarray(seconds)}


def _routed_cost(router: pd.DataFrame, experts: Sequence[pd.DataFrame],
                 select: Sequence[np.ndarray], estimate: Sequence[np.ndarray],
                 shares: int | None = None) -> dict:
    """Forward passes and time of a routed method on each input: the router's ``n0 + n``, and
    each expert's ``n0`` where ``select`` and ``n`` where ``estimate`` says it runs. A router
    that shares expert ``shares``'s forward pass (its card's ``shares_forward_with``) costs
    nothing where that expert runs on the same draws (time: each pass's share of its model's)."""
    def part(f: pd.DataFrame, sel, est) -> tuple[np.ndarray, np.ndarray]:
        n0, n = f["n0"].to_numpy(), f["n"].to_numpy()
        forwards = np.where(sel, n0, 0) + np.where(est, n, 0)
        return forwards, f["time"].to_numpy() * (forwards / (n0 + n))  # exact when all run

    ones = np.ones(len(router), bool)
    if shares is None:
        parts = [part(router, ones, ones)]
    else:
        parts = [part(router, ~np.asarray(select[shares]), ~np.asarray(estimate[shares]))]
    parts += [part(f, sel, est) for f, sel, est in zip(experts, select, estimate)]
    return {"forwards": np.asarray(sum(f for f, _ in parts), dtype=np.int64),
            "time": np.asarray(sum(t for _, t in parts), dtype=float)}


def _counts(row, sigma: float | None = None) -> Counts:
    """The counts of one row of a count frame (a tuple of ``itertuples`` or a Series; ``sigma``:
    the model's, else the row's)."""
    mode = row["mode"] if isinstance(row, pd.Series) else row.mode  # Series.mode is a method
    return Counts(int(row.cA), int(row.nA), int(row.n), int(row.n0),
                  float(row.sigma) if sigma is None else sigma, int(row.seed), int(row.idx),
                  str(mode), float(row.share))


def _row_counts(frames: Sequence[pd.DataFrame], pos: int, k: int) -> Counts:
    """Model ``k``'s counts on the input at position ``pos``."""
    return _counts(frames[k].iloc[pos])


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
                 alpha: float, alpha_split: float, router_sigma: float,
                 shares: int | None = None) -> pd.DataFrame:
    """Dual RS routing: the router certified at ``alpha * alpha_split``, the chosen expert at the
    rest; radius = min of both; either abstains -> ABSTAIN. Only the chosen expert is paid for
    (and the router not at all where it shares that expert's forward pass: ``shares``)."""
    rows, used = [], [np.zeros(len(router), bool) for _ in experts]
    levels = split_alpha(alpha, alpha_split)
    for pos, r in enumerate(router.itertuples(index=False)):
        cert = routed_certificate(_counts(r, router_sigma), partial(_row_counts, experts, pos),
                                  names, *levels)
        if cert.expert_cert is not None:
            used[cert.expert][pos] = True
        rows.append({**cohen_row(r.idx, r.label, cert.prediction, cert.radius),
                     **routed_extras(cert)})
    out = pd.DataFrame(rows)
    cost = _routed_cost(router, experts, used, used, shares)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *ROUTED_EXTRAS, "forwards"]]


def set_frame(router: pd.DataFrame, experts: Sequence[pd.DataFrame], names: Sequence[str],
              alpha: float, alpha_split: float, router_sigma: float,
              shares: int | None = None) -> pd.DataFrame:
    """The set certificate (:mod:`rsrouter.certify.set_certificate`) on every input: the router at
    ``alpha * alpha_split``, every expert's certificate within the rest (each row's level times
    its look's share in sequential mode). Pays for the router and every expert."""
    rows, levels = [], split_alpha(alpha, alpha_split)
    for pos, r in enumerate(router.itertuples(index=False)):
        cert = set_routed_certificate(_counts(r, router_sigma), r.counts,
                                      [_counts(f.iloc[pos]) for f in experts], names, *levels)
        rows.append({**cohen_row(r.idx, r.label, cert.prediction, cert.radius),
                     **set_extras(cert)})
    out = pd.DataFrame(rows)
    everyone = [np.ones(len(router), bool)] * len(experts)
    cost = _routed_cost(router, experts, everyone, everyone, shares)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *SET_EXTRAS, "forwards"]]


def lazy_set_frame(router: pd.DataFrame, experts: Sequence[pd.DataFrame], names: Sequence[str],
                   alpha: float, alpha_split: float, router_sigma: float, margin: float = 0.0,
                   shares: int | None = None) -> pd.DataFrame:
    """The lazy set certificate (:mod:`rsrouter.certify.lazy_set`) on every input: the plan from
    the selection votes of the router and of every expert (their count files' ``select``), then
    the set certificate from the estimation counts of the planned experts only. Pays for every
    expert's ``n0`` selection draws and for the planned experts' ``n`` (and the router's, unless
    it shares a planned expert's forward pass: ``shares``).

    Raises:
        CountsError: a count file without selection votes (rsrouter 0.2's, or sequential).
    """
    rows, levels = [], split_alpha(alpha, alpha_split)
    planned = np.zeros((len(experts), len(router)), bool)
    for pos, r, own, c_a, select_na in _with_votes(router, experts, "the lazy set certificate"):
        cert = lazy_set_routed_certificate(
            _counts(r, router_sigma), r.counts, r.select, c_a, select_na,
            [_counts(e) for e in own], [float(e.sigma) for e in own], names, *levels,
            margin=margin)
        planned[:, pos] = cert.counted
        rows.append({**cohen_row(r.idx, r.label, cert.prediction, cert.radius),
                     **lazy_set_extras(cert)})
    return _planned_frame(rows, router, experts, planned, shares, LAZY_SET_EXTRAS)


def fallback_frame(router: pd.DataFrame, experts: Sequence[pd.DataFrame], names: Sequence[str],
                   alpha: float, alpha_split: float, router_sigma: float, margin: float = 0.0,
                   share: float = DEFAULT_SHARE, shares: int | None = None) -> pd.DataFrame:
    """Router, then cascade (:mod:`rsrouter.certify.fallback`) on every input: the lazy set
    certificate with ``1 - share`` of ``alpha``, and where it abstains the cascade over the
    same experts, capped, with ``share``. Pays for every expert's ``n0`` selection draws and
    for the ``n`` of the experts the input needed: the plan's, and the cascade's stages
    where it ran.

    Raises:
        CountsError: a count file without selection votes (rsrouter 0.2's, or sequential).
    """
    rows = []
    evaluated = np.zeros((len(experts), len(router)), bool)
    for pos, r, own, c_a, select_na in _with_votes(router, experts, "router-then-cascade"):
        cert = fallback_routed_certificate(
            _counts(r, router_sigma), r.counts, r.select, c_a, select_na,
            lambda k, own=own: own[k]["counts"], [float(e.sigma) for e in own], names, alpha,
            alpha_split, margin, share)
        evaluated[:, pos] = cert.evaluated
        rows.append({**cohen_row(r.idx, r.label, cert.prediction, cert.radius),
                     **fallback_extras(cert)})
    return _planned_frame(rows, router, experts, evaluated, shares, FALLBACK_EXTRAS)


def _planned_frame(rows: list[dict], router: pd.DataFrame, experts: Sequence[pd.DataFrame],
                   estimated: np.ndarray, shares: int | None, extras: Sequence[str]
                   ) -> pd.DataFrame:
    """The rows of a certificate that runs every expert's selection draws and, per input, the
    estimation draws of the experts ``estimated[k]`` marks, with their cost."""
    out = pd.DataFrame(rows)
    cost = _routed_cost(router, experts, [np.ones(len(router), bool)] * len(experts),
                        list(estimated), shares)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *extras, "forwards"]]


def _with_votes(router: pd.DataFrame, experts: Sequence[pd.DataFrame], what: str):
    """Per input: ``(position, router row, each expert's row, each expert's selection class,
    its selection votes for that class)``, after checking that every model has fixed-n counts
    with selection votes on the same inputs.

    Raises:
        CountsError: naming what is missing and the fix.
    """
    for f in (router, *experts):
        if not np.array_equal(f["idx"].to_numpy(), router["idx"].to_numpy()) \
                or (f["share"] != 1).any():
            raise CountsError(f"{what} needs fixed-n counts of every model on the same inputs, "
                              "in the same order")
    for pos, r in enumerate(router.itertuples(index=False)):
        own = [f.iloc[pos] for f in experts]
        if any(v is None for v in [r.select, *(e["select"] for e in own)]):
            raise CountsError(f"input idx {r.idx}: a count file without selection votes "
                              f"(rsrouter 0.2's, or sequential looks); {what} plans from them: "
                              "rerun `rsrouter bench run` with fixed n")
        c_a = [int(e.cA) for e in own]
        yield pos, r, own, c_a, [int(e["select"][c]) for e, c in zip(own, c_a)]


def router_frame(kind: str, router: pd.DataFrame, experts: Sequence[pd.DataFrame],
                 names: Sequence[str], alpha: float, alpha_split: float, router_sigma: float,
                 margin: float = 0.0, fallback_share: float = DEFAULT_SHARE,
                 shares: int | None = None) -> tuple[pd.DataFrame, dict, str]:
    """A router's certificate of ``kind`` (pinned, set, lazy-set, lazy-set+cascade) on every
    input: ``(rows, routing statistics, alpha accounting in words)``."""
    args = (router, experts, names, alpha, alpha_split, router_sigma)
    k = len(names)
    if kind == "lazy-set+cascade":
        frame = fallback_frame(*args, margin=margin, share=fallback_share, shares=shares)
        classes = len(experts[0]["counts"].iloc[0])
        return frame, {**accounting.set_stats(frame), **accounting.lazy_stats(frame),
                       **accounting.fallback_stats(frame)}, accounting.fallback_alpha_text(
            alpha, alpha_split, k, classes, fallback_share)
    if kind == "lazy-set":
        frame = lazy_set_frame(*args, margin=margin, shares=shares)
        return frame, {**accounting.set_stats(frame), **accounting.lazy_stats(frame)}, \
            accounting.set_alpha_text(alpha, alpha_split, k, lazy=True)
    if kind == "set":
        frame = set_frame(*args, shares=shares)
        return frame, accounting.set_stats(frame), accounting.set_alpha_text(alpha, alpha_split,
                                                                            k)
    frame = routed_frame(*args, shares=shares)
    return frame, accounting.routing_stats(frame), accounting.alpha_split_text(alpha,
                                                                               alpha_split)


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
        rows.append({**cohen_row(r.idx, r.label, cert.prediction, cert.radius),
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
        rows.append({**cohen_row(f["idx"].iloc[pos], f["label"].iloc[pos], predict, radius),
                     "stage": k, "stage_expert": names[order[k]], "stage_sigma": stages[k][2],
                     "stage_cA": stages[k][0], "stage_nA": int(stages[k][1][stages[k][0]]),
                     "stage_n": int(f["n"].iloc[pos]), "stage_n0": int(f["n0"].iloc[pos]),
                     "stage_alpha": a, "threshold": threshold, "alpha": alpha})
    out = pd.DataFrame(rows)
    cost = _cost(*frames, used=used)
    out["time"], out["forwards"] = cost["time"], cost["forwards"]
    return out[[*COHEN_COLUMNS, *CASCADE_EXTRAS, "forwards"]]


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


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
