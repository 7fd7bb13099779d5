"""What a method's metadata says beside its rows: its alpha accounting in words and its
routing statistics (torch-free, from the composed frames of :mod:`.methods`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..certify.bounds import ABSTAIN, radii_from_counts, split_alpha
from ..certify.fallback import fallback_levels
from ..certify.set_certificate import expert_levels, router_levels


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
    expert's own radius (not another expert the router may switch to) sets the radius (on the
    routed path, where the frame has a cascade behind it)."""
    certified = frame["predict"] != ABSTAIN
    if "path" in frame.columns:
        certified &= frame["path"] == "routed"
    choices = frame["expert"].value_counts(normalize=True).round(4).to_dict()
    return {"choices": {str(k): float(v) for k, v in choices.items()},
            "radius_set_by_chosen_expert": round(float(
                (certified & (frame["binding"] == frame["expert"])).mean()), 4),
            "radius_set_by_another_expert": round(float(
                (certified & (frame["binding"] != frame["expert"])).mean()), 4)}


def alpha_split_text(alpha: float, split: float) -> str:
    """The alpha accounting of a pinned routed certificate, in words."""
    a_r, a_e = split_alpha(alpha, split)
    return f"router alpha {a_r:g} + expert alpha {a_e:g} = {alpha} (union bound)"


def set_alpha_text(alpha: float, split: float, k: int, lazy: bool = False) -> str:
    """The alpha accounting of a (lazy) set certificate over ``k`` experts, in words."""
    a_r, a_e = split_alpha(alpha, split)
    (lower, upper), levels = router_levels(a_r, k), expert_levels(a_e, 0, k)
    if lazy:
        return (f"lazy set certificate: router alpha {a_r:g} (lower bound on its choice "
                f"{lower:g}, an upper bound on each of the {k - 1} others {upper:g}) + experts "
                f"alpha {a_e:g} (the chosen expert {levels[0]:g} and the others counted on that "
                f"input {levels[0]:g} split evenly; all {a_e:g} to the chosen one when none "
                f"is; the plan is fixed by the selection draws) = {alpha} (union bound)")
    return (f"set certificate: router alpha {a_r:g} (lower bound on its choice {lower:g}, an "
            f"upper bound on each of the {k - 1} others {upper:g}) + experts alpha "
            f"{a_e:g} (the chosen expert {levels[0]:g}, each other {levels[1]:g}) = "
            f"{alpha} (union bound)")


def fallback_alpha_text(alpha: float, split: float, k: int, classes: int, share: float) -> str:
    """The alpha accounting of router, then cascade, over ``k`` experts, in words."""
    a_r, a_e, a_c, a_o = fallback_levels(alpha, split, k, classes, share)
    return (f"router, then cascade: router alpha {a_r:g} + experts alpha {a_e:g} (the lazy set "
            f"certificate, each split as it splits it) + cascade alpha {a_c:g} (where that "
            f"abstains; split over the stages as the cascade splits it) + an upper bound on each "
            f"class of each expert at {a_o:g} ({k} x {classes} of them: {k * classes * a_o:g})"
            f" = {alpha} (union bound)")


def fallback_stats(frame: pd.DataFrame) -> dict:
    """Which path certified, and how many experts beyond the plan the cascade needed."""
    extra = [sum(int(e) - int(c) for e, c in zip(str(ev).split(","), str(co).split(",")))
             for ev, co in zip(frame["evaluated"], frame["counted"])]
    paths = frame["path"].value_counts()
    return {f"inputs_{p}": round(float(paths.get(p, 0) / len(frame)), 4)
            for p in ("routed", "fallback", "abstain")} | {
        "experts_evaluated_beyond_the_plan_per_input": round(float(np.mean(extra)), 4)}


def lazy_stats(frame: pd.DataFrame) -> dict:
    """The lazy set certificate's plan: how many experts besides the chosen one it counted."""
    others = frame["counted"].map(lambda v: sum(int(c) for c in str(v).split(",")) - 1)
    return {"other_experts_counted_per_input": round(float(others.mean()), 4),
            "inputs_with_another_expert_counted": round(float((others > 0).mean()), 4)}
