"""The one interface of every place experts come from (the Hub, git remotes, local folders).

A :class:`Source` turns a reference of its scheme into a pinned :class:`Resolved` (a branch or
tag becomes a commit sha), fetches that commit's files into a local folder (its cache; no
request when cached) and deletes a cached copy whose bytes failed verification. Sources know
nothing of cards beyond file names, nor of the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..cards.pins import ARTIFACT_FILES, Pin


@dataclass(frozen=True)
class Resolved:
    """Where a reference points: a local folder, or a remote (Hub repo or git remote) at a
    commit sha; and its pin (a registration's, when it came from one)."""

    name: str  # the registered name ("" otherwise: the card's name is used)
    uri: str  # pinned: the folder, or "<source>@<commit sha>"
    pin: Pin | None = None
    folder: Path | None = None
    source: str | None = None  # hf://org/name or git+URL (remotes only)
    revision: str | None = None  # the commit sha (remotes only)

    @property
    def is_remote(self) -> bool:
        return self.source is not None


class Source(Protocol):
    """Where experts of one scheme live: resolve -> fetch, and the cache behind fetch."""

    def resolve(self, ref: str) -> Resolved:
        """``ref`` pinned (a remote's branch or tag resolved to its commit sha).

        Raises:
            UnknownExpertError: ``ref`` is not a reference of this source.
            HubError: the revision cannot be resolved.
        """

    def fetch(self, resolved: Resolved, filenames: Sequence[str] = ARTIFACT_FILES) -> Path:
        """The local folder holding ``filenames`` of ``resolved`` (fetched unless cached).

        Raises:
            HubError: not cached and cannot be fetched (offline, missing, network).
        """

    def cached_folder(self, resolved: Resolved,
                      filenames: Sequence[str] = ARTIFACT_FILES) -> Path | None:
        """The local folder of ``resolved`` if ``filenames`` are there (no request), else None."""

    def discard(self, resolved: Resolved, filenames: Sequence[str]) -> None:
        """Delete the cached copy of ``filenames`` of ``resolved`` (bytes that failed a pin)."""
