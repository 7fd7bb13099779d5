"""Count frames as the bench's count store reads them, built by hand for tests."""

from __future__ import annotations

import numpy as np
import pandas as pd


def counts_frame(rows, sigma: float, mode: str = "fp32") -> pd.DataFrame:
    """``rows``: ``(idx, label, estimation counts per class)``, or with a fourth item, the share
    of alpha of the sequential look that stopped (else 1: no sequential looks); ``cA`` is the top
    class, ``n0`` 100."""
    out = []
    for idx, label, counts, *share in rows:
        counts = np.asarray(counts, dtype=np.int64)
        c_a = int(counts.argmax())
        out.append({"idx": idx, "label": label, "cA": c_a, "nA": int(counts[c_a]),
                    "n": int(counts.sum()), "n0": 100, "sigma": sigma,
                    "share": share[0] if share else 1.0, "seed": 0, "mode": mode,
                    "counts": counts, "time": 0.1})
    return pd.DataFrame(out)
