"""The source of each reference scheme: ``hf://`` the Hub, ``git+`` a git remote, else a folder."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..cards.refs import GIT_PREFIX, HF_PREFIX
from .base import Source
from .folder import FolderSource
from .git import GitSource
from .hub import HubSource


@dataclass(frozen=True)
class Sources:
    """The sources one registry reads from: the Hub at ``endpoint`` with its cache at
    ``cache_dir``, git remotes, local folders; ``offline`` (None: HF_HUB_OFFLINE) for all."""

    endpoint: str | None = None
    cache_dir: str | os.PathLike | None = None
    offline: bool | None = None

    def for_ref(self, ref: str) -> Source:
        """The source of ``ref`` (a reference, or a :class:`Resolved`'s ``source``), by scheme."""
        if ref.startswith(HF_PREFIX):
            return HubSource(self.endpoint, self.cache_dir, self.offline)
        if ref.startswith(GIT_PREFIX):
            return GitSource(self.offline)
        return FolderSource()
