"""Results: certification TSVs (tsv), their rows (rows), published logs (logs), curves and
tables (curves), long resumable runs over a dataset (runs).

The old module ``rsrouter.results``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for

__getattr__ = _getattr_for(__name__)
