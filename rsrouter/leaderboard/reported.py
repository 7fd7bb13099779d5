"""Reported-only entries: numbers a paper prints without per-input logs (a sources manifest's
``reported`` block), entered as "reported, not recomputed" with the citation, the table and
where it was read, checked for what can be checked (shares in range that never grow with the
radius, nothing beyond what the stated protocol can certify) and shown apart from recomputed
entries, never ranked among them. Torch-free.
"""

from __future__ import annotations

from datetime import date

import numpy as np

from .. import __version__
from ..errors import ResultsError
from ..results.curves import interval95
from ..urls import scrub_text
from .entries import REPORTED, SCHEMA, check_entry, entry_key
from .logs import LOG_DATASETS

_TABLE_KEYS = {"paper", "url", "table", "read_from", "checked_against_paper", "dataset",
               "benchmark", "inputs", "protocol", "radii", "rows"}


def reported_entries(block: object, where: str) -> list[dict]:
    """One entry per row of every table in a manifest's ``reported`` block.

    A table names its ``paper``, ``url`` (the paper), ``table`` (number and caption),
    ``read_from`` (where these numbers were actually read) and ``checked_against_paper``
    (false: a secondary record, flagged on the board), ``dataset``, ``benchmark``, ``inputs``
    (``count`` and ``spec``: what is stated, or inferred and said so), ``protocol`` (``n0``,
    ``n``, ``alpha``, ``sigma``: the largest sigma any row uses, or a list; null where not
    stated), the ``radii`` and ``rows`` (``method``, ``accuracy`` in percent as printed, null
    where the paper prints none; optional ``note``).

    Raises:
        ResultsError: naming the table or row and what is missing or impossible.
    """
    if not isinstance(block, list):
        raise ResultsError(f"{where}: `reported` is a list of tables")
    out = []
    for i, table in enumerate(block):
        here = f"{where}: reported[{i}]"
        if not isinstance(table, dict) or set(table) != _TABLE_KEYS:
            raise ResultsError(f"{here} needs exactly {', '.join(sorted(_TABLE_KEYS))}")
        if table["dataset"] not in LOG_DATASETS:
            raise ResultsError(f"{here}: dataset {table['dataset']!r} is not one of "
                               f"{', '.join(LOG_DATASETS)}")
        inputs = table["inputs"]
        if not (isinstance(inputs, dict) and set(inputs) == {"count", "spec"}
                and isinstance(inputs["count"], int) and inputs["count"] >= 1):
            raise ResultsError(f"{here}: inputs needs count (the number of test images the "
                               "paper certified) and spec (which ones)")
        if not isinstance(table["read_from"], str) or not table["read_from"] \
                or not isinstance(table["checked_against_paper"], bool):
            raise ResultsError(f"{here}: read_from (where the numbers were read) and "
                               "checked_against_paper (true or false) are needed")
        radii = table["radii"]
        if not (isinstance(radii, list) and radii and all(
                isinstance(r, (int, float)) and r >= 0 for r in radii)):
            raise ResultsError(f"{here}: radii must be a list of radii")
        for j, row in enumerate(table["rows"] or []):
            out.append(_entry(table, row, f"{here}.rows[{j}]"))
    return out


def _entry(table: dict, row: object, where: str) -> dict:
    if not (isinstance(row, dict) and {"method", "accuracy"} <= set(row)
            <= {"method", "accuracy", "note"} and isinstance(row["accuracy"], list)
            and len(row["accuracy"]) == len(table["radii"])):
        raise ResultsError(f"{where} needs method and accuracy (one per radius; null where the "
                           "paper prints none), and optionally a note")
    printed = [(float(r), a) for r, a in zip(table["radii"], row["accuracy"]) if a is not None]
    if not printed or not all(isinstance(a, (int, float)) and 0 <= a <= 100
                              for _, a in printed):
        raise ResultsError(f"{where}: accuracy in percent, between 0 and 100")
    radii = [r for r, _ in printed]
    acc = [round(a / 100, 4) for _, a in printed]
    count = table["inputs"]["count"]
    low, high = interval95(np.rint(np.asarray(acc) * count), count)
    entry = {"schema": SCHEMA, "key": "", "benchmark": str(table["benchmark"]),
             "dataset": table["dataset"], "split": "test",
             "inputs": {"spec": str(table["inputs"]["spec"]), "count": count},
             "protocol": table["protocol"], "method": str(row["method"]), "type": "reported",
             "kind": REPORTED, "radii": radii, "accuracy": acc,
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": None, "abstain": None, "max_regret": None, "forwards_per_input": None,
             "seconds_per_input": None, "experts": [], "router": None, "chosen_on": "unknown",
             "chosen_on_test": False, "external": True, "counts_available": False,
             "radii_recomputed": False, "paper": scrub_text(str(table["paper"])),
             "table": scrub_text(str(table["table"])), "url": scrub_text(str(table["url"])),
             "read_from": scrub_text(table["read_from"]),
             "checked_against_paper": table["checked_against_paper"],
             "note": scrub_text(str(row.get("note", ""))),
             "rsrouter_version": __version__, "date": date.today().isoformat()}
    entry["key"] = entry_key(entry)
    return check_entry(entry, where)
