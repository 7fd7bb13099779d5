"""Experts on any git remote: ``git+<url>[@revision]``, pinned to a commit, cached, verified.

The git counterpart of :mod:`rsrouter.sources.hub` for experts published with ``experts push
--git-remote`` (a lab server, a bare repository on a shared disk, GitHub). ``resolve_revision``
turns a branch or tag into a commit sha once (``git ls-remote``); ``fetch_files`` fetches that
commit's files into rsrouter's cache (``$RSROUTER_CACHE``, default ``~/.cache/rsrouter``), where
later loads find them without touching the network. The URL forms are pip's:
``git+file:///srv/experts/name.git@<sha>``, ``git+https://host/org/name.git@v1``,
``git+ssh://git@host/org/name.git@main``. Offline mode (``--offline`` or ``HF_HUB_OFFLINE=1``)
uses the cache only, except for ``file://`` URLs: a repository on a local or mounted disk needs
no network, so its branches resolve and its commits are fetched offline too. :class:`GitSource`
puts these functions behind the :class:`~rsrouter.sources.base.Source` interface.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..cards.pins import ARTIFACT_FILES, is_commit_sha
from ..cards.refs import GIT_PREFIX
from ..errors import HubError, UnknownExpertError
from ..paths import cache_dir as rsrouter_cache
from ..paths import offline_mode as is_offline
from ..urls import public_url
from .base import Resolved

GIT_SCHEMES = ("file://", "https://", "http://", "ssh://", "git://")


@dataclass(frozen=True)
class GitRef:
    """A git remote URL and an optional revision (branch, tag or commit sha)."""

    url: str
    revision: str | None = None

    @property
    def uri(self) -> str:
        return f"{GIT_PREFIX}{self.url}" + (f"@{self.revision}" if self.revision else "")


def parse_git_uri(uri: str) -> GitRef:
    """Parse ``git+<url>[@revision]`` with pip's rule: the revision follows the last ``@`` of the
    URL's path (so ``user@host`` is not a revision, and a branch may contain ``/``); raises
    ValueError saying what is wrong."""
    if not uri.startswith(GIT_PREFIX):
        raise ValueError(f"not a git URI: {uri!r} (expected git+<url>[@revision])")
    url = uri[len(GIT_PREFIX):]
    if not url.startswith(GIT_SCHEMES):
        raise ValueError(f"bad git URI {uri!r}: the URL must start with one of "
                         f"{', '.join(GIT_SCHEMES)} (for a local repository: "
                         f"git+file:///absolute/path/name.git@<revision>)")
    parts = urlsplit(url)
    revision = None
    if "@" in parts.path:
        path, revision = parts.path.rsplit("@", 1)
        url = urlunsplit(parts._replace(path=path))
        if not revision or any(c.isspace() for c in revision):
            raise ValueError(f"bad revision in {uri!r}: give a branch, tag or commit sha after "
                             "'@'")
    return GitRef(url, revision)


def git_uri_for(remote: str) -> str:
    """The ``git+`` URL of a remote given as git accepts it (a path, a URL, ``user@host:path``)."""
    if remote.startswith(GIT_SCHEMES):
        return f"{GIT_PREFIX}{remote}"
    scp = re.fullmatch(r"([^/@:]+@)?([^/:]+):(.+)", remote)
    if scp and not Path(remote).exists():  # git's user@host:path is relative to the home folder
        path = scp.group(3) if scp.group(3).startswith("/") else f"/~/{scp.group(3)}"
        return f"{GIT_PREFIX}ssh://{scp.group(1) or ''}{scp.group(2)}{path}"
    return f"{GIT_PREFIX}{Path(remote).resolve().as_uri()}"


def _git(*args: str, cwd: str | os.PathLike | None = None) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True,
                              check=True)
    except FileNotFoundError as e:
        raise HubError("git is not installed; it is needed for git+ expert sources") from e
    except subprocess.CalledProcessError as e:
        raise HubError(f"git {' '.join(args[:2])} failed: {e.stderr.strip()}") from e
    return done.stdout


def resolve_revision(url: str, revision: str | None = None, *,
                     offline: bool | None = None) -> str:
    """The commit sha of ``revision`` (a branch, a tag, or a sha; default: the remote's HEAD).

    A full sha is returned as given (the fetch checks it exists). Raises HubError when a branch
    or tag of a network remote is asked for offline (a ``file://`` URL needs no network), or the
    remote or revision cannot be found.
    """
    if revision and is_commit_sha(revision.lower()):
        return revision.lower()
    if is_offline(offline) and not is_local(url):
        raise HubError(f"cannot resolve {GitRef(url, revision).uri} offline: a branch or tag "
                       "needs the remote; pin a full commit sha (git+URL@<40-hex sha>)")
    refs = {}
    for line in _git("ls-remote", url).splitlines():
        sha, _, ref = line.partition("\t")
        refs[ref] = sha
    # the remote's HEAD, else main (a bare repository's HEAD may name a branch never pushed)
    wanted = [revision] if revision else ["HEAD", "main", "master"]
    for name in wanted:
        for ref in (f"refs/tags/{name}^{{}}", f"refs/tags/{name}", f"refs/heads/{name}", name):
            if ref in refs:
                return refs[ref]
    hint = ""
    if revision and re.fullmatch(r"[0-9a-fA-F]{4,39}", revision):
        hint = "; a short sha cannot be resolved on a remote: give all 40 hex digits"
    raise HubError(f"revision {wanted[0]!r} not found on {url} (no such branch or tag){hint}")


def is_local(url: str) -> bool:
    """Whether ``url`` is a ``file://`` URL, which offline mode allows (it needs no network)."""
    return url.startswith("file://")


def _folder(url: str, sha: str, cache: str | os.PathLike | None) -> Path:
    # keyed by the URL without credentials: a record that leaves them out finds the same copy
    key = hashlib.sha256(public_url(url).encode()).hexdigest()[:16]
    return Path(cache or rsrouter_cache()) / "git" / key / sha


def is_cached(url: str, sha: str, filenames: Sequence[str] = ARTIFACT_FILES,
              cache_dir: str | os.PathLike | None = None) -> bool:
    folder = _folder(url, sha, cache_dir)
    return all((folder / f).is_file() for f in filenames)


def cached_folder(url: str, sha: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return _folder(url, sha, cache_dir)


_EXPERT_FILES = ("an expert repository holds config.json, model.safetensors and README.md; a "
                 "denoised expert's also the denoiser folder its card names")


def fetch_files(url: str, sha: str, filenames: Sequence[str] = ARTIFACT_FILES, *,
                cache_dir: str | os.PathLike | None = None,
                offline: bool | None = None, expected: str = _EXPERT_FILES) -> Path:
    """The files of commit ``sha`` of ``url``, in rsrouter's cache; returns their folder.

    ``filenames`` are paths in the commit's tree (``denoiser/unet/config.json``: nested paths
    are found in the whole tree). Cached files are used without any network access; otherwise
    the commit is fetched (depth 1) and each file written into the cache atomically, beside the
    files of that commit already there. Raises HubError offline when not cached (but a
    ``file://`` URL, which needs no network, is fetched), and when the commit or a file is
    missing (``expected``: what the commit should hold, for the message).
    """
    if not is_commit_sha(sha):
        raise HubError(f"{url}@{sha}: a full commit sha is needed here")
    folder = _folder(url, sha, cache_dir)
    if is_cached(url, sha, filenames, cache_dir):
        return folder
    uri = GitRef(url, sha).uri
    if is_offline(offline) and not is_local(url):
        raise HubError(f"{uri}: not in rsrouter's cache ({folder.parent.parent}) and offline "
                       f"mode is on; run once online or `rsrouter experts pull {uri}`")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".fetch-") as tmp:
        repo = Path(tmp) / "repo"
        _git("init", "-q", "--bare", str(repo))
        _git("fetch", "-q", "--depth", "1", url, sha, cwd=repo)
        names = set(_git("ls-tree", "-r", "-z", "--name-only", sha, cwd=repo).split("\0"))
        missing = [f for f in filenames if f not in names]
        if missing:
            raise HubError(f"{uri}: {', '.join(missing)} not in that commit ({expected})")
        out = Path(tmp) / "files"
        for name in filenames:
            blob = subprocess.run(["git", "cat-file", "blob", f"{sha}:{name}"], cwd=repo,
                                  capture_output=True, check=True).stdout
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_bytes(blob)
        for name in filenames:  # each file whole or not at all; the commit's others stay
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / name, folder / name)
    return folder


def discard_cached(url: str, sha: str, cache_dir: str | os.PathLike | None = None) -> None:
    """Delete the cached files of commit ``sha`` (after a hash mismatch)."""
    shutil.rmtree(_folder(url, sha, cache_dir), ignore_errors=True)


class GitSource:
    """``git+URL[@rev]`` references: any git remote, its commits cached in rsrouter's cache
    (``cache_dir``, default ``$RSROUTER_CACHE``); ``offline`` as HF_HUB_OFFLINE when None."""

    def __init__(self, offline: bool | None = None,
                 cache_dir: str | os.PathLike | None = None) -> None:
        self.offline, self.cache_dir = offline, cache_dir

    def resolve(self, ref: str) -> Resolved:
        """``ref`` at the commit sha of its revision (default: the remote's HEAD)."""
        try:
            git = parse_git_uri(ref)
        except ValueError as e:
            raise UnknownExpertError(str(e)) from None
        sha = resolve_revision(git.url, git.revision, offline=self.offline)
        return Resolved("", f"{GIT_PREFIX}{git.url}@{sha}", source=f"{GIT_PREFIX}{git.url}",
                        revision=sha)

    def fetch(self, resolved: Resolved, filenames: Sequence[str] = ARTIFACT_FILES) -> Path:
        return fetch_files(_url(resolved), resolved.revision, filenames,
                           cache_dir=self.cache_dir, offline=self.offline)

    def cached_folder(self, resolved: Resolved,
                      filenames: Sequence[str] = ARTIFACT_FILES) -> Path | None:
        if not is_cached(_url(resolved), resolved.revision, filenames, self.cache_dir):
            return None
        return cached_folder(_url(resolved), resolved.revision, self.cache_dir)

    def discard(self, resolved: Resolved, filenames: Sequence[str]) -> None:
        """Delete the whole cached commit (its files are fetched together)."""
        discard_cached(_url(resolved), resolved.revision, self.cache_dir)


def _url(resolved: Resolved) -> str:
    return resolved.source[len(GIT_PREFIX):]
