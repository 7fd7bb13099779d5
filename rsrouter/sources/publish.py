"""Publish an expert (or router) folder: to the Hugging Face Hub, or to a git remote.

Only regular files are published: a folder holding a symbolic link (which could point at any
file of the publisher's machine) is refused, and what is uploaded is a copy of the listed files.
The Hub path is a thin wrapper over :func:`.hub.push_folder`. The git path commits the
folder's files to branch ``main`` of any git remote (a path or URL), which is what a Hub mirror
such as olah serves; it is how publishing is tested without the Hub. A branch is updated by
compare-and-swap (:func:`update_branch`): concurrent publishers never lose each other's commits.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import HubError
from . import hub

_REJECTED = ("[rejected]", "fetch first", "non-fast-forward", "stale info",
             "cannot lock ref", "failed to update ref")


def _env() -> dict[str, str]:
    # no prompt for a password; English messages (a refused push is recognised by them)
    return {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"}


def _git(cwd: Path, *args: str) -> str:
    env = _env()
    # no remote helper may run a command (ext::), whatever the user's git config says
    ident = ["-c", "user.name=rsrouter", "-c", "user.email=rsrouter@localhost",
             "-c", "protocol.ext.allow=never"]
    try:
        out = subprocess.run(["git", *ident, *args], cwd=cwd, env=env, check=True,
                             capture_output=True, text=True)
    except FileNotFoundError as e:
        raise HubError("git is not installed; it is needed for --git-remote") from e
    except subprocess.CalledProcessError as e:
        raise HubError(f"git {' '.join(args)} failed: {e.stderr.strip()}") from e
    return out.stdout.strip()


def check_remote(remote: str) -> str:
    """``remote`` as git will be given it (after ``--``: never an option); a local path is made
    absolute. Raises HubError for a remote that starts with ``-``."""
    if not remote or remote.startswith("-"):
        raise HubError(f"git remote {remote!r}: a remote is a path or a URL and cannot start "
                       "with '-'")
    return str(Path(remote).resolve()) if Path(remote).exists() else remote


def update_branch(remote: str, fill: Callable[[Path], None], *, branch: str = "main",
                  message: str = "Upload with rsrouter", allow_empty: bool = True,
                  attempts: int = 8) -> str:
    """Replace the tree of ``branch`` on ``remote`` by what ``fill(work)`` leaves in a checkout
    of it; returns the commit sha.

    The branch is fetched (none yet: an empty checkout; any other failure aborts), ``fill``
    edits the checkout, and the commit is pushed without force: if another publisher moved the
    branch in between, the push is refused and the whole step is redone on
    their commit (compare-and-swap), so nothing either published is lost. With
    ``allow_empty=False`` an unchanged tree adds no commit.

    Raises:
        HubError: git is missing, the remote cannot be read or refuses the push, or it kept
            moving for ``attempts`` tries.
    """
    remote = check_remote(remote)
    with tempfile.TemporaryDirectory(prefix="rsrouter-push-") as tmp:
        for attempt in range(attempts):
            work = Path(tmp) / f"repo{attempt}"
            work.mkdir()
            _git(work, "init", "-q", "-b", branch)
            existed = bool(_git(work, "ls-remote", "--heads", "--", remote,
                                f"refs/heads/{branch}"))
            if existed:
                _git(work, "fetch", "-q", "--depth", "1", "--", remote, f"refs/heads/{branch}")
                _git(work, "reset", "-q", "--hard", "FETCH_HEAD")
            fill(work)
            _git(work, "add", "-A")
            if not allow_empty and existed and subprocess.run(
                    ["git", "diff", "--cached", "--quiet"], cwd=work).returncode == 0:
                return _git(work, "rev-parse", "HEAD")  # the same tree: nothing to add
            _git(work, "commit", "-q", "--allow-empty", "-m", message)
            pushed = subprocess.run(
                ["git", "-c", "protocol.ext.allow=never", "push", "-q", "--", remote,
                 f"HEAD:refs/heads/{branch}"], cwd=work, capture_output=True, text=True,
                env=_env())
            if pushed.returncode == 0:
                return _git(work, "rev-parse", "HEAD")
            if not any(sign in pushed.stderr for sign in _REJECTED):
                raise HubError(f"git push to {remote} failed: {pushed.stderr.strip()}")
    raise HubError(f"{remote}: branch {branch} kept moving under {attempts} tries to publish; "
                   "try again")


def publishable_files(folder: str | os.PathLike) -> list[str]:
    """The files of ``folder`` that publishing uploads: every regular file, dot-files and
    dot-folders left out, as sorted relative paths.

    Raises:
        HubError: ``folder`` is not a folder, or holds a symbolic link or a special file
            (named): a link could make a push upload any file of this machine.
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise HubError(f"push: {folder} is not a folder")
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in [*dirs, *names]:
            path = Path(root) / name
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise HubError(f"push: {path} is a symbolic link or a special file; a published "
                               "folder holds regular files only (copy the file in instead)")
        files += [(Path(root) / f).relative_to(folder).as_posix() for f in names
                  if not f.startswith(".")]
    return sorted(files)


def copy_files(folder: str | os.PathLike, files: list[str], target: Path) -> None:
    """Copy ``files`` (relative paths) of ``folder`` into ``target``, never through a link."""
    for rel in files:
        out = target / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(folder) / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)


def push_to_git(folder: str | os.PathLike, remote: str, *, branch: str = "main",
                message: str = "Upload with rsrouter", allow_empty: bool = True) -> str:
    """Commit ``folder``'s files (:func:`publishable_files`) as the whole tree of ``branch`` on
    ``remote``; returns the sha.

    With ``allow_empty=False`` a folder identical to the branch's tree adds no commit (the
    branch's sha is returned).

    Raises:
        HubError: git is missing or refuses (unreachable remote, rejected push, ...), or the
            folder holds a link.
    """
    files = publishable_files(folder)

    def fill(work: Path) -> None:
        for item in work.iterdir():  # the old tree goes (a link in it: the link itself)
            if item.name != ".git":
                (shutil.rmtree if item.is_dir() and not item.is_symlink() else Path.unlink)(item)
        copy_files(folder, files, work)

    return update_branch(remote, fill, branch=branch, message=message, allow_empty=allow_empty)


def push_expert(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                git_remote: str | None = None, endpoint: str | None = None) -> str:
    """Publish ``folder`` as ``repo_id``; returns the commit sha to pin (``hf://repo@sha``).

    Raises:
        HubError: the folder holds a link or a special file, or the push fails.
    """
    message = f"Upload {Path(folder).name} with rsrouter"
    if git_remote:
        return push_to_git(folder, git_remote, message=message)
    files = publishable_files(folder)
    with tempfile.TemporaryDirectory(prefix="rsrouter-push-") as tmp:
        copy_files(folder, files, Path(tmp))  # what is uploaded is what was checked
        return hub.push_folder(tmp, repo_id, private=private, endpoint=endpoint,
                               commit_message=message)
