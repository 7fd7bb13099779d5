"""What a board shows of its entries: flags, provenance, each entry's role among the entries of
its benchmark (one family of experts on the same inputs), and that family's routing headroom:
its best single expert, envelope, per-input oracle and every routed or composed method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .entries import entry_sigmas, is_number


def entry_flags(entry: dict) -> list[str]:
    """What a reader must know before comparing ``entry``: what it is not (a classifier, a
    certificate), choices made on the test inputs, an inferred protocol, a partial input set."""
    flags = []
    if entry.get("type") == "reported":
        flags.append("reported, not recomputed")
        if not entry.get("checked_against_paper"):
            flags.append("secondary record, not checked against the paper's table")
    elif entry["kind"] != "certificate":
        flags.append(entry["kind"].split(":")[0])
    if entry.get("chosen_on_test") and entry["kind"] == "certificate":
        flags.append("choices made on the test inputs")
    if entry.get("protocol_inferred"):
        flags.append(entry["protocol_inferred"])
    if entry.get("external") and entry["inputs"].get("spec") not in (None, "as published"):
        flags.append(f"inputs: {entry['inputs']['spec']}")
    return flags


def provenance(entry: dict) -> str:
    """Where an entry's numbers come from: a paper's table, a log at its repository and
    commit, or an rsrouter run (and its experts' weights)."""
    if entry.get("type") == "reported":
        return (f"{entry.get('paper', '')}, {entry.get('table', '')} ({entry.get('url', '')}); "
                f"read from: {entry.get('read_from') or 'not said'}")
    if entry.get("type") in ("envelope", "oracle") and entry.get("pool"):
        return f"composed from {len(entry['pool'])} logs: {', '.join(entry['pool'])}"
    if entry.get("external"):
        parts = [f"{what}: {entry[key]}" for key, what in (("source", "source"),
                                                            ("paper", "paper"))
                 if entry.get(key)]
        if entry.get("log_sha256"):
            parts.append(f"log sha256 {entry['log_sha256'][:12]}...")
        return "; ".join(parts) or "imported log (no source given)"
    experts = [f"{e.get('name')} ({str(e.get('weights_sha256') or '')[:12]})"
               for e in entry.get("experts") or [] if isinstance(e, dict)]
    return "rsrouter bench run" + (f"; experts: {', '.join(experts)}" if experts else "")


def counts_obtained(entry: dict) -> str:
    """How the counts behind an entry were obtained, in words."""
    if entry.get("type") == "reported":
        return "none: the paper's printed numbers"
    if entry.get("external") and entry.get("type") in ("envelope", "oracle"):
        return "its logs' recomputed radii"
    if entry.get("external"):
        text = str(entry.get("counts") or entry["kind"].split("counts ", 1)[-1])
        return text.split(" (")[0]
    return "count store, checked" if entry.get("counts_available") else "not stored"


def role(entry: dict) -> str:
    """``expert`` (one model at one noise level), ``envelope``, ``oracle``, ``reported`` or
    ``method`` (a routed, cascaded or composed certificate)."""
    kind = entry.get("type")
    if kind in ("envelope", "oracle", "reported", "expert"):
        return kind
    if entry.get("external") and entry.get("log_sha256") and len(set(entry_sigmas(entry))) <= 1:
        return "expert"  # one published log: one model at one noise level
    return "method"


@dataclass
class Family:
    """The entries of one benchmark (experts on the same inputs) for the headroom view."""

    benchmark: str
    count: int  # the inputs its experts certify
    best: dict  # the single expert of largest ACR
    experts: int
    envelope: dict | None = None
    oracle: dict | None = None
    methods: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.benchmark} ({self.count} inputs)"

    def gain(self, entry: dict) -> float | None:
        """``entry``'s ACR minus the best single expert's (the oracle's: the headroom)."""
        if entry is self.best or not is_number(entry.get("acr")):
            return None
        return entry["acr"] - self.best["acr"]


def families(rows: Sequence[dict]) -> list[Family]:
    """A family per benchmark and input count (experts on the same inputs) with at least two
    experts, or one beside a method; its best single expert by ACR, its methods by ACR, and
    the envelope and oracle composed over exactly its experts (an entry naming its ``pool``
    must name them all; one without a pool, from a bench run, is its benchmark's own)."""
    out = []
    for benchmark, count in sorted({(e["benchmark"], e["inputs"]["count"]) for e in rows}):
        mine = [e for e in rows if e["benchmark"] == benchmark and e["inputs"]["count"] == count]
        experts = [e for e in mine if role(e) == "expert" and is_number(e.get("acr"))]
        methods = [e for e in mine if role(e) == "method" and is_number(e.get("acr"))]
        if not experts or (len(experts) < 2 and not methods):
            continue
        refs = {}
        for kind in ("envelope", "oracle"):
            found = [e for e in mine if role(e) == kind and _over(e, experts)]
            refs[kind] = found[0] if len(found) == 1 else None
        out.append(Family(benchmark, count, max(experts, key=lambda e: e["acr"]), len(experts),
                          refs["envelope"], refs["oracle"],
                          sorted(methods, key=lambda e: -e["acr"])))
    return out


def _over(reference: dict, experts: Sequence[dict]) -> bool:
    """Whether an envelope or oracle is composed over exactly ``experts``: by the logs its
    ``pool`` names, or (a bench run's) by its experts' weights."""
    if reference.get("pool"):
        return set(reference["pool"]) == {e["method"] for e in experts}
    weights = [{x.get("weights_sha256") for x in e.get("experts") or []} for e in experts]
    mine = {x.get("weights_sha256") for x in reference.get("experts") or []}
    return bool(mine) and None not in mine and all(len(w) == 1 for w in weights) \
        and mine == set().union(*weights)
