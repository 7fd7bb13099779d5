"""The validation rule: which routed variant of a validation benchmark to ship.

Among the candidate methods (by default every router method of the benchmark), keep those whose
ACR is at least the best single expert's minus ``acr_slack`` and whose forward passes per input
are at most ``cost_cap`` times one expert's (``n0 + n``); choose the smallest max regret, ties by
the larger ACR. The rule reads only the benchmark's summary (so it is applied to what the report
printed) and refuses a benchmark run on test inputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResultsError

ACR_SLACK = 0.02
COST_CAP = 1.3


@dataclass(frozen=True)
class Choice:
    """The rule's outcome: the chosen method (None: no candidate qualifies) and, per candidate,
    its ACR, max regret, cost in experts and why it was left out (empty if eligible)."""

    chosen: str | None
    best_expert: str
    best_expert_acr: float
    candidates: list[dict]
    record: str = ""  # the command that records the chosen certificate in its router's card
    nearest: str | None = None  # none chosen: the cheapest candidate within the ACR floor

    def text(self) -> str:
        """A markdown report of the decision."""
        lines = [f"Best single expert: {self.best_expert} (ACR {self.best_expert_acr:.3f}).", "",
                 "| method | ACR | max regret | cost (x one expert) | eligible |",
                 "| --- | --- | --- | --- | --- |"]
        for c in self.candidates:
            lines.append(f"| {c['method']} | {c['acr']:.3f} | {c['max_regret']:.1f} | "
                         f"{c['cost']:.2f} | {c['why'] or 'yes'} |")
        lines += ["", f"Chosen: {self.chosen}" if self.chosen else
                  "Chosen: none (no candidate qualifies; ship the best single expert)"]
        if self.nearest:
            cost = next(c["cost"] for c in self.candidates if c["method"] == self.nearest)
            lines += [f"Nearest: {self.nearest}, the cheapest candidate within the ACR floor "
                      f"({cost:.2f}x one expert: above the cost cap)"]
        if self.record:
            lines += ["", f"Record it in the router's card: {self.record}"]
        return "\n".join(lines)


def choose(folder: str | os.PathLike, candidates: list[str] | None = None, *,
           acr_slack: float = ACR_SLACK, cost_cap: float = COST_CAP) -> Choice:
    """Apply the validation rule to the benchmark report in ``folder``.

    Raises:
        ResultsError: no report there, a benchmark on the test split, an unknown candidate, or
            no expert to compare with.
    """
    folder = Path(folder)
    try:
        bench = json.loads((folder / "bench.json").read_text())
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        raise ResultsError(f"{folder}: no benchmark report (bench.json, summary.json); run "
                           "`rsrouter bench run` first") from None
    config = bench["config"]
    if config.get("split") == "test":
        raise ResultsError(f"{folder} is a benchmark on the test split: choices are made on a "
                           "validation split, never on the test inputs")
    types = {m["name"]: m["type"] for m in config["methods"]}
    rows = {row["method"]: row for row in summary["table"]}
    experts = [name for name, kind in types.items() if kind == "expert" and name in rows]
    if not experts:
        raise ResultsError(f"{folder}: the benchmark has no single expert to compare with")
    best = max(experts, key=lambda name: rows[name]["ACR"])
    names = candidates or [n for n, kind in types.items() if kind in ("router", "tree")]
    unknown = [n for n in names if n not in rows]
    if unknown:
        raise ResultsError(f"{folder}: no method {unknown} in its report; methods: "
                           f"{', '.join(rows)}")
    if any(rows[n].get("max regret") is None for n in names):
        raise ResultsError(f"{folder}: no max regret in its report; the rule needs the envelope "
                           "(add `{type: envelope}` to the config and rerun `bench run`)")
    one = config["protocol"]["n0"] + config["protocol"]["n"]
    floor = rows[best]["ACR"] - acr_slack
    table = []
    for name in names:
        row = rows[name]
        cost = row["forwards/input"] / one
        why = "; ".join(text for bad, text in (
            (row["ACR"] < floor - 1e-12, f"ACR below {floor:.3f}"),
            (cost > cost_cap + 1e-12, f"cost above {cost_cap:g}x")) if bad)
        table.append({"method": name, "acr": row["ACR"], "max_regret": row["max regret"],
                      "cost": cost, "why": why})
    eligible = [c for c in table if not c["why"]]
    chosen = min(eligible, key=lambda c: (c["max_regret"], -c["acr"]))["method"] \
        if eligible else None
    nearest = None
    if chosen is None:
        within = [c for c in table if c["acr"] >= floor - 1e-12]
        nearest = min(within, key=lambda c: (c["cost"], c["max_regret"]))["method"] \
            if within else None
    return Choice(chosen, best, rows[best]["ACR"], table, _record(folder, chosen, types),
                  nearest)


def _record(folder: Path, chosen: str | None, types: dict) -> str:
    """``rsrouter router certificate ...`` for a chosen router method (from its metadata)."""
    meta = folder / f"{chosen}.method.json"
    if chosen is None or types.get(chosen) != "router" or not meta.is_file():
        return ""
    info = json.loads(meta.read_text())
    margin = f" --margin {info['margin']:g}" if "margin" in info else ""
    if "fallback_share" in info:
        margin += f" --fallback-share {info['fallback_share']:g}"
    return (f"rsrouter router certificate ROUTER --kind {info.get('certificate', 'pinned')}"
            f"{margin} --alpha-split {info.get('alpha_split', 0.5):g} --chosen-on {folder}"
            f" (ROUTER: {info['router']['name']})")
