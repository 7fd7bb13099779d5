"""The summary of certification TSVs that ``rsrouter summary`` (and ``certify``) prints."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from .curves import summary_table
from .tsv import read_tsv


def read_results(paths: Mapping[str, str | os.PathLike]) -> dict[str, pd.DataFrame]:
    """Each named TSV, read and checked (:func:`rsrouter.results.tsv.read_tsv`).

    Raises:
        ResultsError, CountsError: naming the file and its row.
    """
    return {name: read_tsv(path) for name, path in paths.items()}


def summary_text(results: Mapping[str, pd.DataFrame]) -> str:
    """Certified accuracy (%) at each standard radius, ACR, abstentions and inputs, one row per
    name, with a note when some rows were certified in a mode that is not floating-point exact
    (bf16, compile)."""
    lines = ["certified accuracy (%) at l2 radius r; ACR = average certified radius",
             summary_table(dict(results)).to_string()]
    modes = {str(m) for df in results.values() if "mode" in df for m in df["mode"].unique()}
    if modes - {"fp32"}:
        lines.append(f"note: modes {sorted(modes)}: bf16/compile results are not floating-point "
                     "exact")
    return "\n".join(lines)
