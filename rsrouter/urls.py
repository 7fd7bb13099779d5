"""URLs as rsrouter records them: credentials never leave the machine they were typed on.

A user may fetch a private expert with ``git+https://user:token@host/org/e.git@sha``; a router
card, a results folder or a leaderboard entry made from it is meant to be shared, so every source
recorded there goes through :func:`public_url` first: the password is dropped everywhere, the
user name too on http(s) (tokens are often passed as the user name), and the query parameters
that carry credentials (``token``, ``key``, ``sig``, signed-URL parameters). git then asks its
credential helper, as it would for anyone else who fetches the record.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# a URL inside any text (a free-text source may hold one anywhere)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s<>\"']+")
_DROP_USER = ("http", "https", "git+http", "git+https")
# query parameters that carry credentials (signed URLs, API tokens); the others are kept
_SECRET = re.compile(r"(?i)(.*token.*|.*secret.*|.*passw.*|.*key.*|sig|signature|auth.*|"
                     r"credential.*|x-amz-.*|x-goog-.*|sv|se|sp|skoid|sktid)$")


def public_url(uri: str) -> str:
    """``uri`` without credentials: ``git+https://u:tok@host/x.git@sha`` -> ``git+https://host/
    x.git@sha``; ``ssh://git:pw@host/x`` -> ``ssh://git@host/x``. Anything that is not a URL
    with a scheme is returned as it is."""
    if "://" not in uri:
        return uri
    try:
        parts = urlsplit(uri)
    except ValueError:  # not a URL after all: scrub what looks like userinfo anyway
        return scrub_text(uri)
    netloc = parts.netloc
    if "@" in netloc:  # the last '@' ends the userinfo (a password may hold a raw '@')
        user, host = netloc.rsplit("@", 1)
        user = user.split(":", 1)[0]
        netloc = host if parts.scheme.lower() in _DROP_USER or not user else f"{user}@{host}"
    query = "&".join(p for p in parts.query.split("&")
                     if not _SECRET.match(p.partition("=")[0])) if parts.query else ""
    if (netloc, query) == (parts.netloc, parts.query):
        return uri  # nothing to drop (and file:/// keeps its three slashes)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub_text(text: str) -> str:
    """Free text (a ``--source`` note) with every URL in it as :func:`public_url` records it."""
    return _URL.sub(lambda m: public_url(m.group(0)), text)
