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
from ..sources.git import discard_cached, fetch_files
from .aces import sha256_list
from .logs import vendored


def read_manifest(manifest: Path) -> dict:
    """A sources manifest's YAML, with its repositories (``url``, ``commit``) listed.

    Raises:
        ResultsError: a file that is not a sources manifest (what is missing named).
    """
    try:
        raw = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ResultsError(f"{manifest}: not a sources manifest ({e})") from None
    repos = raw.get("repositories") if isinstance(raw, dict) else None
    if not isinstance(repos, dict) or not all(
            isinstance(r, dict) and {"url", "commit"} <= set(r) for r in repos.values()):
        raise ResultsError(f"{manifest}: a sources manifest lists `repositories`, each with "
                           "url and commit")
    return raw


def pinned_files(manifest: Path, raw: dict | None = None) -> dict[str, dict[str, str]]:
    """Every file a manifest pins, per repository: ``{repository: {path: sha256}}`` (its logs,
    and the files its ``aces`` block's vendored sha256 list names, that list checked first;
    ``raw``: the manifest already read by :func:`read_manifest`);
    every path checked to stay inside its vendored folder before anything is fetched.

    Raises:
        ResultsError: a manifest that is not one, a log of an unlisted repository, or a path
            that leaves its folder.
        IntegrityError: the ``aces`` sha256 list missing or not the bytes the manifest pins.
    """
    raw = read_manifest(manifest) if raw is None else raw
    files: dict[str, dict[str, str]] = {}
    for i, log in enumerate(raw.get("logs") or []):
        if not isinstance(log, dict) or log.get("repository") not in raw["repositories"] \
                or not {"path", "sha256"} <= set(log):
            raise ResultsError(f"{manifest}: logs[{i}] needs a listed repository, path and "
                               "sha256")
        vendored(manifest, log["repository"], log["path"], f"{manifest}: logs[{i}]")
        files.setdefault(log["repository"], {})[str(log["path"])] = str(log["sha256"])
    aces = raw.get("aces")
    if aces is not None:
        if not isinstance(aces, dict) or not {"repository", "sha256sums", "sha256"} <= set(aces):
            raise ResultsError(f"{manifest}: the `aces` block needs repository, sha256sums and "
                               "sha256")
        sums = vendored(manifest, aces["repository"], aces["sha256sums"], f"{manifest}: aces")
        if not sums.is_file() or hashlib.sha256(sums.read_bytes()).hexdigest() != aces["sha256"]:
            raise IntegrityError(f"{sums}: the ACES sha256 list is missing or not the bytes the "
                                 "manifest pins")
        files.setdefault(aces["repository"], {}).update(
            sha256_list(sums, manifest, aces["repository"]))
    return files


def fetch_sources(manifest: str | os.PathLike, into: str | os.PathLike | None = None, *,
                  offline: bool | None = None) -> list[Path]:
    """Fetch every file ``manifest`` pins from its repository at its pinned commit, check it
    against its sha256 and write it under ``into`` (default: the manifest's folder), at
    ``logs/OWNER-REPO/PATH``; returns the files written. With ``into`` elsewhere, the manifest
    (and the ACES sha256 list) are copied there too, so ``import-sources`` runs on the copy.
    A cached copy that is not the pinned bytes is fetched once more before it is refused.

    Raises:
        ResultsError: as :func:`pinned_files`.
        HubError: a repository or commit that cannot be fetched (offline and not cached).
        IntegrityError: a fetched file that is not the bytes the manifest pins (nothing of its
            repository is written then).
    """
    manifest = Path(manifest)
    raw = read_manifest(manifest)
    pins = pinned_files(manifest, raw)
    into = Path(into) if into is not None else manifest.parent
    target = into / manifest.name
    written = []
    for repository, files in pins.items():
        repo = raw["repositories"][repository]
        url, commit = str(repo["url"]), str(repo["commit"])
        folder, off = None, []
        for attempt in range(2):  # a cached copy that is not the pinned bytes: fetched again
            folder = fetch_files(url, commit, sorted(files), offline=offline,
                                 expected=f"the files {manifest.name} pins")
            off = [p for p, digest in files.items()
                   if hashlib.sha256((folder / p).read_bytes()).hexdigest() != digest]
            if not off or attempt:
                break
            discard_cached(url, commit)
        if off:
            raise IntegrityError(f"{repository}@{commit}/{off[0]}: not the published bytes "
                                 f"{manifest.name} pins ({len(off)} file(s) differ)")
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
