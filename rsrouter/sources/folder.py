"""Local folders: an expert or router folder on disk is its own source (nothing to fetch)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..cards.pins import ARTIFACT_FILES, CONFIG_FILE, WEIGHTS_FILE
from ..errors import UnknownExpertError
from .base import Resolved


def folder_path(ref: str, base: str | os.PathLike | None = None) -> Path:
    """The path ``ref`` names: ``~`` expanded, relative to ``base`` when given."""
    path = Path(ref).expanduser()
    return Path(base) / path if base is not None and not path.is_absolute() else path


class FolderSource:
    """Folder references: a path (``./name`` for a folder named like a registered expert)."""

    def resolve(self, ref: str) -> Resolved:
        """The folder ``ref``.

        Raises:
            UnknownExpertError: not a folder, or a git repository (whose commit must be named).
        """
        path = folder_path(ref)
        if not path.is_dir():
            raise UnknownExpertError(f"{ref!r} is not an expert folder")
        if not (path / CONFIG_FILE).is_file() and _is_git_repository(path):
            raise UnknownExpertError(
                f"{ref} is a git repository, not an expert folder; register the commit you "
                f"mean: rsrouter experts register git+{path.resolve().as_uri()}@<sha> "
                "--name NAME")
        return Resolved("", str(path), folder=path)

    def fetch(self, resolved: Resolved, filenames: Sequence[str] = ARTIFACT_FILES) -> Path:
        """The folder itself (its files are read, and checked, where they are)."""
        return resolved.folder

    def cached_folder(self, resolved: Resolved,
                      filenames: Sequence[str] = ARTIFACT_FILES) -> Path | None:
        """The folder if it holds weights (a folder source is always "cached")."""
        return resolved.folder if (resolved.folder / WEIGHTS_FILE).is_file() else None

    def discard(self, resolved: Resolved, filenames: Sequence[str]) -> None:
        """Nothing: a folder is the user's, never a cache."""


def _is_git_repository(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
