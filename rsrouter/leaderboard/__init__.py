"""Leaderboards: ``entries`` (schema, checks, keys), ``logs`` (entries for published
certification logs), ``board`` (collect and merge entries, build a site), ``site`` (its markdown
and HTML pages), ``publishing`` (merge a site into a folder, a git remote or a Hub dataset repo).
"""
