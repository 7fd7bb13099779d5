"""Leaderboards: ``entries`` (schema, checks, keys), ``logs`` (entries for published
certification logs, radii recomputed from counts), ``compose`` (envelope and per-input oracle
over logs on the same inputs), ``sources`` (the pinned sources manifest), ``fetching`` (its files
from the authors' repositories), ``aces`` (ACES compositions from its logs), ``reported`` (a
paper's printed numbers, apart), ``board`` (collect and merge entries, build a site), ``views``
(flags, provenance, each family's headroom), ``plots`` and ``site`` (its markdown and HTML
pages), ``publishing`` (merge a site into a folder, a git remote or a Hub dataset repo).

The old module ``rsrouter.leaderboard``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for

__getattr__ = _getattr_for(__name__)
