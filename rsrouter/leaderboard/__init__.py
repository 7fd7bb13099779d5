"""Leaderboards: ``entries`` (schema, checks, keys), ``logs`` (entries for published
certification logs), ``board`` (collect and merge entries, build a site), ``site`` (its markdown
and HTML pages), ``publishing`` (merge a site into a folder, a git remote or a Hub dataset repo).

The old module ``rsrouter.leaderboard``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for

__getattr__ = _getattr_for(__name__)
