"""The Hugging Face Hub: rsrouter's only module that talks to it, through huggingface_hub.

Everything is pinned to commit shas: ``resolve_revision`` turns a branch or tag into a sha once
(online), and ``download_files`` fetches the files of that sha into the standard Hub cache,
where a later call finds them without any request. Failures are raised as ``HubError``.

The endpoint is the ``endpoint`` argument, else ``HF_ENDPOINT``, else huggingface.co; the cache
is the ``cache_dir`` argument, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
huggingface_hub's default. Both, like ``HF_HUB_OFFLINE``, are read at each call (huggingface_hub
itself reads them once, at import, which happens on the first call that needs it).
:class:`HubSource` puts these functions behind the :class:`~rsrouter.sources.base.Source`
interface.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..cards.pins import ARTIFACT_FILES
from ..cards.pins import COMMIT_SHA as _SHA
from ..cards.refs import HF_PREFIX, HUB_REPO_ID
from ..errors import HubError, UnknownExpertError
from ..paths import offline_mode as is_offline
from .base import Resolved

_PULL_HINT = "run once online (without HF_HUB_OFFLINE / --offline) or `rsrouter experts pull {uri}`"


def _hf():
    """huggingface_hub, imported by the first call that talks to the Hub or reads its cache (it
    takes 0.2 s: commands that never touch the Hub do not pay for it)."""
    import huggingface_hub
    import huggingface_hub.file_download
    import huggingface_hub.utils

    return huggingface_hub


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and an optional revision (branch, tag or commit sha)."""

    repo_id: str
    revision: str | None = None

    @property
    def uri(self) -> str:
        """``hf://org/name`` or ``hf://org/name@revision``."""
        return f"{HF_PREFIX}{self.repo_id}" + (f"@{self.revision}" if self.revision else "")


def parse_hf_uri(uri: str) -> HubRef:
    """Parse ``hf://org/name[@revision]``; raises ValueError saying what is wrong."""
    if not isinstance(uri, str) or not uri.startswith(HF_PREFIX):
        raise ValueError(f"not a Hub URI: {uri!r} (expected {HF_PREFIX}org/name[@revision])")
    repo_id, at, revision = uri[len(HF_PREFIX):].partition("@")
    if not HUB_REPO_ID.fullmatch(repo_id):
        raise ValueError(
            f"bad repo id in {uri!r}: expected {HF_PREFIX}org/name[@revision], "
            "letters, digits, '.', '_' and '-' only"
        )
    try:
        _hf().utils.validate_repo_id(repo_id)
    except _hf().utils.HFValidationError as error:
        raise ValueError(f"bad repo id in {uri!r}: {error}") from None
    if at and (not revision or any(c.isspace() for c in revision)):
        raise ValueError(f"bad revision in {uri!r}: give a branch, tag or commit sha after '@'")
    return HubRef(repo_id, revision or None)



def _endpoint(endpoint: str | None) -> str | None:
    found = endpoint or os.environ.get("HF_ENDPOINT") or None
    return found.rstrip("/") if found else None


def _shown(endpoint: str | None) -> str:
    return endpoint or _hf().constants.ENDPOINT


def _cache_dir(cache_dir: str | os.PathLike[str] | None) -> str:
    if cache_dir is not None:
        return str(Path(cache_dir).expanduser())
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return str(Path(env).expanduser())
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]).expanduser() / "hub")
    return str(_hf().constants.HF_HUB_CACHE)


def _network_errors() -> tuple[type[BaseException], ...]:
    """OSError (HfHubHTTPError, requests' errors) and the HTTP client's own error base class."""
    found: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):  # whichever client huggingface_hub has imported
        base = getattr(sys.modules.get(name), "HTTPError", None)
        if isinstance(base, type) and issubclass(base, BaseException):
            found.append(base)
    return tuple(found)


def _drop_connections() -> None:
    """After a server error the pooled keep-alive connection may be dead: start afresh."""
    close = getattr(_hf(), "close_session", None)
    if callable(close):
        close()


def _hub_error(what: str, repo_id: str, revision: str, endpoint: str | None,
               error: BaseException) -> HubError:
    where = f"{repo_id}@{revision} on {_shown(endpoint)}"
    errors = _hf().utils
    if isinstance(error, errors.RevisionNotFoundError):
        return HubError(f"{what}: revision {revision!r} not found in {repo_id} on "
                        f"{_shown(endpoint)}; check the branch, tag or sha")
    if isinstance(error, errors.RepositoryNotFoundError):
        return HubError(f"{what}: {where}: repository, revision or file not found (a private or "
                        "gated repo also needs a token: HF_TOKEN or `hf auth login`)")
    if (isinstance(error, errors.EntryNotFoundError)
            and not isinstance(error, errors.LocalEntryNotFoundError)):
        return HubError(f"{what}: {where}: file not found in that revision")
    status = getattr(getattr(error, "response", None), "status_code", None)
    if status is None or status >= 500:
        _drop_connections()
    if isinstance(error, errors.LocalEntryNotFoundError):
        return HubError(f"{what}: {where}: no answer from the Hub (unreachable or server error) "
                        "and the file is not cached")
    detail = f"HTTP {status}" if status is not None else type(error).__name__
    first_line = (str(error).splitlines() or [""])[0]
    return HubError(f"{what}: {where}: {detail}: {first_line}")


def resolve_revision(
    repo_id: str,
    revision: str | None = "main",
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
) -> str:
    """The full commit sha (40 lowercase hex) of a branch, tag or sha of a model repo.

    Online, asks the Hub (``model_info``), which also confirms that a given sha exists.
    Offline, a full sha is returned as-is and a branch or tag raises HubError (pin a sha).
    Raises HubError for a missing repo or revision and for network errors.
    """
    revision = revision or "main"
    sha = revision.lower() if _SHA.fullmatch(revision.lower()) else None
    if is_offline(offline):
        if sha is not None:
            return sha
        raise HubError(
            f"cannot resolve {HubRef(repo_id, revision).uri} offline: a branch or tag needs the "
            "Hub; pin a full commit sha (hf://org/name@<40-hex sha>) or go online"
        )
    endpoint = _endpoint(endpoint)
    try:
        info = _hf().HfApi(endpoint=endpoint, token=token).model_info(repo_id, revision=revision)
    except _hf().utils.HFValidationError as error:
        raise HubError(f"invalid repo id or revision {repo_id!r}@{revision!r}: {error}") from error
    except _network_errors() as error:
        raise _hub_error("resolve", repo_id, revision, endpoint, error) from error
    resolved = (info.sha or "").lower()
    if not _SHA.fullmatch(resolved) or (sha is not None and resolved != sha):
        raise HubError(f"resolve: {repo_id}@{revision} on {_shown(endpoint)} answered commit "
                       f"{info.sha!r}, not a {'match' if sha else 'full sha'}")
    return resolved


def _check_filename(filename: str) -> PurePosixPath:
    rel = PurePosixPath(filename)
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise HubError(f"bad file name {filename!r}: a relative path inside the repo is needed")
    return rel


def _cached_path(repo_id: str, sha: str, filename: str, cache: str) -> str | None:
    found = _hf().try_to_load_from_cache(repo_id, filename, cache_dir=cache, revision=sha)
    return found if isinstance(found, str) else None


def snapshot_folder(repo_id: str, sha: str,
                    cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder that holds the files of commit ``sha`` (whether or not they are there)."""
    return _snapshot_dir(repo_id, sha, _cache_dir(cache_dir))


def _repo_folder(repo_id: str) -> str:
    return _hf().file_download.repo_folder_name(repo_id=repo_id, repo_type="model")


def _snapshot_dir(repo_id: str, sha: str, cache: str) -> Path:
    return Path(cache) / _repo_folder(repo_id) / "snapshots" / sha


def _require_sha(repo_id: str, sha: str) -> None:
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise HubError(f"{repo_id}@{sha}: a full commit sha (40 lowercase hex) is needed here; "
                       "resolve a branch or tag first (resolve_revision)")


def download_files(
    repo_id: str,
    sha: str,
    filenames: Sequence[str] = ARTIFACT_FILES,
    *,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool | None = None,
    token: str | bool | None = None,
) -> Path:
    """Fetch ``filenames`` of commit ``sha`` into the Hub cache; returns the snapshot folder.

    Files already cached are used without any request; the others are downloaded, unless
    offline (flag, else HF_HUB_OFFLINE), which raises HubError naming the fix. Raises HubError
    for a non-sha revision, a missing repo or file, and network errors.
    """
    _require_sha(repo_id, sha)
    for filename in filenames:
        _check_filename(filename)
    cache = _cache_dir(cache_dir)
    missing = [f for f in filenames if _cached_path(repo_id, sha, f, cache) is None]
    if missing and is_offline(offline):
        raise HubError(
            f"{HubRef(repo_id, sha).uri}: {', '.join(missing)} not in the Hub cache ({cache}) "
            "and offline mode is on; " + _PULL_HINT.format(uri=HubRef(repo_id, sha).uri)
        )
    endpoint = _endpoint(endpoint)
    for filename in missing:
        try:
            _hf().hf_hub_download(repo_id, filename, revision=sha, cache_dir=cache,
                                  endpoint=endpoint, token=token)
        except _hf().utils.HFValidationError as error:
            raise HubError(f"invalid repo id {repo_id!r}: {error}") from error
        except _network_errors() as error:
            raise _hub_error(f"download {filename}", repo_id, sha, endpoint, error) from error
    return _snapshot_dir(repo_id, sha, cache)


def is_cached(
    repo_id: str,
    sha: str,
    filenames: Sequence[str] = ARTIFACT_FILES,
    cache_dir: str | os.PathLike[str] | None = None,
) -> bool:
    """Whether every file of commit ``sha`` is in the Hub cache (no request made)."""
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        return False
    cache = _cache_dir(cache_dir)
    return all(_cached_path(repo_id, sha, f, cache) is not None for f in filenames)


def discard_cached(
    repo_id: str,
    sha: str,
    filename: str,
    cache_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Delete the cached copy of one file of commit ``sha``: its snapshot entry and its blob.

    Other snapshots of the repo that link to the same blob lose that link too, so the bad
    bytes are never reused. Nothing happens when the file is not cached.
    """
    _require_sha(repo_id, sha)
    rel = _check_filename(filename)
    storage = Path(_cache_dir(cache_dir)) / _repo_folder(repo_id)
    pointer = storage / "snapshots" / sha / Path(*rel.parts)
    blob: Path | None = None
    if pointer.is_symlink():
        target = Path(os.path.realpath(pointer))
        if target.parent == Path(os.path.realpath(storage / "blobs")):
            blob = target
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    if blob is None:
        return
    for link in (storage / "snapshots").rglob("*"):
        if link.is_symlink() and Path(os.path.realpath(link)) == blob:
            link.unlink()
    blob.unlink(missing_ok=True)


def push_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    endpoint: str | None = None,
    token: str | bool | None = None,
    commit_message: str = "Upload with rsrouter",
) -> str:
    """Create the model repo if needed and upload ``folder``; returns the new commit sha.

    Raises HubError if the folder is missing or the Hub refuses (no token, no rights, ...).
    """
    if not Path(folder).is_dir():
        raise HubError(f"push: {folder} is not a folder")
    endpoint = _endpoint(endpoint)
    api = _hf().HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                   commit_message=commit_message)
    except _hf().utils.HFValidationError as error:
        raise HubError(f"invalid repo id {repo_id!r}: {error}") from error
    except _network_errors() as error:
        raise _hub_error("push", repo_id, "main", endpoint, error) from error
    return str(commit.oid)


class HubSource:
    """``hf://org/name[@rev]`` references: the Hub at ``endpoint``, its cache at ``cache_dir``
    (both default as above), ``offline`` as HF_HUB_OFFLINE when None."""

    def __init__(self, endpoint: str | None = None,
                 cache_dir: str | os.PathLike[str] | None = None,
                 offline: bool | None = None) -> None:
        self.endpoint, self.cache_dir, self.offline = endpoint, cache_dir, offline

    def resolve(self, ref: str) -> Resolved:
        """``ref`` at the commit sha of its revision (default ``main``)."""
        try:
            hub = parse_hf_uri(ref)
        except ValueError as e:
            raise UnknownExpertError(str(e)) from None
        sha = resolve_revision(hub.repo_id, hub.revision or "main", endpoint=self.endpoint,
                               offline=self.offline)
        return self.pinned(f"{HF_PREFIX}{hub.repo_id}", sha)

    @staticmethod
    def pinned(source: str, sha: str) -> Resolved:
        """``hf://org/name`` at the commit ``sha`` (already resolved)."""
        return Resolved("", f"{source}@{sha}", source=source, revision=sha)

    def fetch(self, resolved: Resolved, filenames: Sequence[str] = ARTIFACT_FILES) -> Path:
        return download_files(_repo_id(resolved), resolved.revision, filenames,
                              endpoint=self.endpoint, cache_dir=self.cache_dir,
                              offline=self.offline)

    def cached_folder(self, resolved: Resolved,
                      filenames: Sequence[str] = ARTIFACT_FILES) -> Path | None:
        repo_id = _repo_id(resolved)
        if not is_cached(repo_id, resolved.revision, filenames, cache_dir=self.cache_dir):
            return None
        return snapshot_folder(repo_id, resolved.revision, cache_dir=self.cache_dir)

    def discard(self, resolved: Resolved, filenames: Sequence[str]) -> None:
        for filename in filenames:
            discard_cached(_repo_id(resolved), resolved.revision, filename,
                           cache_dir=self.cache_dir)


def _repo_id(resolved: Resolved) -> str:
    return resolved.source[len(HF_PREFIX):]
