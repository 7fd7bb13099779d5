"""Router trees: a root router chooses a group of experts, a child router within the group.

The root (noise ``sigma_root``) is any router over all ``K`` experts with its outputs pooled into
groups: its smoothed group classifier is ``g(x) = argmax_G P(f(x + d) in G)``. A group covered
by a child router (its own ``sigma_c``, trained over that group's experts) defers the choice to
it; a group of one expert is that expert. The routed classifier is

    x -> expert(child_G(x)) with G = root(x)

and its certified radius is the minimum over the smoothed models on the path taken:

    R = min(R_root, R_child (if the group has a child), R_expert)

Each router's choice is certified constant within its radius (Cohen et al. applied to the router
as a classifier over groups, or over the group's experts), so within ``R`` the path and the
expert's class stay put. Alpha: which bounds are used depends only on the selection draws (the
root's and the child's guesses), which are independent of every estimation draw; given them, the
path's bounds fail with probability at most the sum of their levels. The router side's share
``alpha * split`` goes to the root alone on a path without a child and half-half to root and
child on a path with one; the expert gets the rest (docs/theory.md, "Router trees").

A path's TSV row: :data:`TREE_EXTRAS`, checked on reading by :func:`check_tree_rows`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import CountsError
from .bounds import ABSTAIN, certified_radius, check_counts, split_alpha
from .checks import RADIUS_TOLERANCE, ints, one_row, require_columns, row_error

TREE_EXTRAS = ("expert", "sigma", "group", "root_counts", "root_groups", "root_nA", "root_n",
               "root_sigma", "alpha_root", "child_cA", "child_nA", "child_n", "child_sigma",
               "alpha_child", "cA", "nA", "n", "n0", "alpha_expert", "alpha", "seed", "mode")


def groups_of(experts: Sequence[str], children: Sequence[Sequence[str]]) -> list[int]:
    """Group index of each of the root's experts: the experts of one child form one group, an
    expert no child covers is a group of its own; groups are numbered by their first expert in
    the root's order (``[0, 1, 1]`` when a child covers the last two of three).

    Raises:
        ValueError: a child names an expert the root does not have, or two children share one.
    """
    owner: dict[str, int] = {}
    for c, members in enumerate(children):
        for name in members:
            if name not in experts:
                raise ValueError(f"child router {c} chooses among {list(members)}, but the root "
                                 f"router's experts are {list(experts)}; a child must choose "
                                 "among some of the root's experts")
            if name in owner:
                raise ValueError(f"expert {name} is under two child routers; each expert may "
                                 "sit under one child at most")
            owner[name] = c
    labels: dict[tuple, int] = {}
    out = []
    for name in experts:
        key = ("child", owner[name]) if name in owner else ("expert", name)
        out.append(labels.setdefault(key, len(labels)))
    return out


def split_levels(alpha: float, split: float, with_child: bool) -> tuple[float, float, float]:
    """``(alpha_root, alpha_child, alpha_expert)`` of one path (``alpha_child`` 0 without a
    child); they sum to ``alpha``."""
    router, expert = split_alpha(alpha, split)
    if with_child:
        return (*split_alpha(router, 0.5), expert)
    return router, 0.0, expert


@dataclass(frozen=True)
class TreeCertificate:
    prediction: int  # the expert's certified class, or ABSTAIN
    radius: float
    group: int  # the root's guess (from its selection draws)
    root_radius: float
    child_radius: float | None  # None: the group has no child
    expert_radius: float | None  # None: a router on the path abstains (no expert reached);
    # 0.0: the expert reached abstains


def tree_certificate(group: int, root_nA: int, root_n: int, root_sigma: float,
                     alpha_root: float, child: tuple[int, int, float, float] | None,
                     expert: tuple[int, int, int, float, float] | None) -> TreeCertificate:
    """The certificate of one path from counts.

    ``group``: the root's guess; ``root_nA``: the root's estimation draws that fall in that
    group (its experts' counts summed) out of ``root_n``. ``child``: ``(nA, n, sigma, alpha)``
    of the child's guess, or None for a group without a child (the child is not consulted when
    the root abstains). ``expert``: ``(cA, nA, n, sigma, alpha)`` of the expert on the path
    (consulted only when every router on the path certifies).
    """
    r_root = certified_radius(int(root_nA), int(root_n), float(alpha_root), float(root_sigma))
    r_child = None
    if child is not None and r_root is not None:
        r_child = certified_radius(int(child[0]), int(child[1]), float(child[3]), float(child[2]))
    if r_root is None or (child is not None and r_child is None):
        return TreeCertificate(ABSTAIN, 0.0, int(group), r_root or 0.0,
                               None if child is None else (r_child or 0.0), None)
    r_expert = certified_radius(int(expert[1]), int(expert[2]), float(expert[4]),
                                float(expert[3]))
    if r_expert is None:
        return TreeCertificate(ABSTAIN, 0.0, int(group), r_root, r_child, 0.0)
    radius = min(r_root, r_expert, r_child if r_child is not None else float("inf"))
    return TreeCertificate(int(expert[0]), radius, int(group), r_root, r_child, r_expert)


def check_tree_rows(df: pd.DataFrame, where: str, predict: np.ndarray,
                    radius: np.ndarray) -> None:
    """Router-tree rows: the root's group count is its experts' counts summed, the levels sum
    to alpha, and the prediction and radius follow from the counts on the path.

    Raises:
        ResultsError, CountsError: naming the first row that fails.
    """
    require_columns(df, where, TREE_EXTRAS, "a router-tree TSV")
    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, groups = ints(r.root_counts), ints(r.root_groups)
            if len(counts) != len(groups) or int(r.group) not in groups or min(counts) < 0:
                raise CountsError("root_counts, root_groups and group do not match")
            # a group of several experts always has a child router (groups_of), and only a
            # path through a child spends alpha on it
            if groups.count(int(r.group)) > 1 and int(r.child_n) == 0 \
                    or (int(r.child_n) == 0) != (float(r.alpha_child) == 0):
                raise CountsError("a group of several experts goes through its child router "
                                  "(child counts, and alpha_child > 0 exactly then)")
            if int(r.root_nA) != sum(c for c, g in zip(counts, groups) if g == int(r.group)) \
                    or int(r.root_n) != sum(counts):
                raise CountsError("root_nA must be the root's counts of its group's experts")
            if abs(float(r.alpha_root) + float(r.alpha_child) + float(r.alpha_expert)
                   - float(r.alpha)) > 1e-9:
                raise CountsError("alpha_root + alpha_child + alpha_expert must equal alpha")
            check_counts(int(r.group), int(r.root_nA), int(r.root_n), int(r.n0),
                         float(r.root_sigma), float(r.alpha_root))
            child = None
            if int(r.child_n) > 0:
                check_counts(int(r.child_cA), int(r.child_nA), int(r.child_n), int(r.n0),
                             float(r.child_sigma), float(r.alpha_child))
                child = (int(r.child_nA), int(r.child_n), float(r.child_sigma),
                         float(r.alpha_child))
            reached = str(r.expert) != "-"
            if reached:
                check_counts(int(r.cA), int(r.nA), int(r.n), int(r.n0), float(r.sigma),
                             float(r.alpha_expert))
        except (CountsError, ValueError, TypeError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        cert = tree_certificate(int(r.group), int(r.root_nA), int(r.root_n), float(r.root_sigma),
                                float(r.alpha_root), child,
                                (int(r.cA), int(r.nA), int(r.n), float(r.sigma) or 1.0,
                                 float(r.alpha_expert) or 0.5))
        ok = (cert.expert_radius is not None) == reached and cert.prediction == predict[i] \
            and abs(cert.radius - radius[i]) <= RADIUS_TOLERANCE
        if not ok:
            raise row_error(where, df, one_row(df, i), "its path, prediction and radius do not "
                            f"follow from its counts (the counts give {cert.prediction} within "
                            f"{cert.radius:.6f})")
