"""The field's logs fetched from their repositories at the pinned commits (``rsrouter
leaderboard fetch-sources``), as experts on git remotes are fetched (:mod:`rsrouter.sources.git`:
rsrouter's cache, offline once cached), each file checked against the sha256 its manifest pins
and placed where ``import-sources`` reads it (``logs/OWNER-REPO/PATH`` beside the manifest, or
under another folder). The published leaderboard needs none of this: its logs are vendored.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import yaml

from ..errors import IntegrityError, ResultsError
from ..files import atomic_write_bytes
from ..sources.git import fetch_files
from .sources import vendored


def pinned_files(manifest: Path) -> dict[str, dict[str, str]]:
    """Every file a manifest pins, per repository: ``{repository: {path: sha256}}`` (its logs,
    and the files its ``aces`` block's vendored sha256 list names, that list checked first).

    Raises:
        ResultsError: a manifest that is not one, or a log of an unlisted repository.
        IntegrityError: the ``aces`` sha256 list missing or not the bytes the manifest pins.
    """
    try:
        raw = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ResultsError(f"{manifest}: not a sources manifest ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("repositories"), dict):
        raise ResultsError(f"{manifest}: a sources manifest has `repositories` and `logs`")
    files: dict[str, dict[str, str]] = {}
    for i, log in enumerate(raw.get("logs") or []):
        if not isinstance(log, dict) or log.get("repository") not in raw["repositories"]:
            raise ResultsError(f"{manifest}: logs[{i}] names no listed repository")
        files.setdefault(log["repository"], {})[str(log["path"])] = str(log["sha256"])
    aces = raw.get("aces")
    if isinstance(aces, dict):
        sums = vendored(manifest, aces["repository"], aces["sha256sums"], f"{manifest}: aces")
        if not sums.is_file() or hashlib.sha256(sums.read_bytes()).hexdigest() != aces["sha256"]:
            raise IntegrityError(f"{sums}: the ACES sha256 list is missing or not the bytes the "
                                 "manifest pins")
        for line in sums.read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            files.setdefault(aces["repository"], {})[name] = digest
    return files


def fetch_sources(manifest: str | os.PathLike, into: str | os.PathLike | None = None, *,
                  offline: bool | None = None) -> list[Path]:
    """Fetch every file ``manifest`` pins from its repository at its pinned commit, check it
    against its sha256 and write it under ``into`` (default: the manifest's folder), at
    ``logs/OWNER-REPO/PATH``; returns the files written. With ``into`` elsewhere, the manifest
    (and the ACES sha256 list) are copied there too, so ``import-sources`` runs on the copy.

    Raises:
        ResultsError: as :func:`pinned_files`.
        HubError: a repository or commit that cannot be fetched (offline and not cached).
        IntegrityError: a fetched file that is not the bytes the manifest pins (nothing of its
            repository is written then).
    """
    manifest = Path(manifest)
    raw = yaml.safe_load(manifest.read_text())
    into = Path(into) if into is not None else manifest.parent
    target = into / manifest.name
    written = []
    for repository, files in pinned_files(manifest).items():
        repo = raw["repositories"][repository]
        folder = fetch_files(str(repo["url"]), str(repo["commit"]), sorted(files),
                             offline=offline, expected=f"the files {manifest.name} pins")
        for path, digest in files.items():  # every file checked before any is placed
            got = hashlib.sha256((folder / path).read_bytes()).hexdigest()
            if got != digest:
                raise IntegrityError(f"{repository}@{repo['commit']}/{path}: sha256 {got}, "
                                     f"{manifest.name} pins {digest}: not the published bytes")
        for path in files:
            dest = vendored(target, repository, path, str(manifest))
            atomic_write_bytes(dest, (folder / path).read_bytes())
            written.append(dest)
    if target.resolve() != manifest.resolve():
        shutil.copyfile(manifest, target)
        aces = raw.get("aces")
        if isinstance(aces, dict):
            src = vendored(manifest, aces["repository"], aces["sha256sums"], str(manifest))
            dest = vendored(target, aces["repository"], aces["sha256sums"], str(manifest))
            atomic_write_bytes(dest, src.read_bytes())
    return written
