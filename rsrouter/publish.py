"""Publish an expert (or router) folder: to the Hugging Face Hub, or to a git remote.

The Hub path is a thin wrapper over :func:`rsrouter.hub.push_folder`. The git path commits the
folder's files to branch ``main`` of any git remote (a path or URL), which is what a Hub mirror
such as olah serves; it is how publishing is tested without the Hub.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import hub
from .errors import HubError


def _git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    ident = ["-c", "user.name=rsrouter", "-c", "user.email=rsrouter@localhost"]
    try:
        out = subprocess.run(["git", *ident, *args], cwd=cwd, env=env, check=True,
                             capture_output=True, text=True)
    except FileNotFoundError as e:
        raise HubError("git is not installed; it is needed for --git-remote") from e
    except subprocess.CalledProcessError as e:
        raise HubError(f"git {' '.join(args)} failed: {e.stderr.strip()}") from e
    return out.stdout.strip()


def push_to_git(folder: str | os.PathLike, remote: str, *, branch: str = "main",
                message: str = "Upload with rsrouter", allow_empty: bool = True) -> str:
    """Commit ``folder``'s files as the whole tree of ``branch`` on ``remote``; returns the sha.

    With ``allow_empty=False`` a folder identical to the branch's tree adds no commit (the
    branch's sha is returned).

    Raises:
        HubError: git is missing or refuses (unreachable remote, rejected push, ...).
    """
    folder = Path(folder)
    if Path(remote).exists():  # a local path: git runs in a temporary folder, make it absolute
        remote = str(Path(remote).resolve())
    with tempfile.TemporaryDirectory(prefix="rsrouter-push-") as tmp:
        work = Path(tmp) / "repo"
        work.mkdir()
        _git(work, "init", "-q", "-b", branch)
        _git(work, "remote", "add", "origin", str(remote))
        if _git(work, "ls-remote", "--heads", "origin", branch):
            _git(work, "fetch", "-q", "origin", branch)
            _git(work, "reset", "-q", "--soft", "FETCH_HEAD")
        for item in folder.iterdir():
            if item.name.startswith("."):
                continue
            target = work / item.name
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, target)
        _git(work, "add", "-A")
        has_head = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=work,
                                  capture_output=True).returncode == 0
        if not allow_empty and has_head and subprocess.run(
                ["git", "diff", "--cached", "--quiet"], cwd=work).returncode == 0:
            return _git(work, "rev-parse", "HEAD")  # the same tree: nothing to add
        _git(work, "commit", "-q", "--allow-empty", "-m", message)
        _git(work, "push", "-q", "origin", f"HEAD:refs/heads/{branch}")
        return _git(work, "rev-parse", "HEAD")


def push_expert(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                git_remote: str | None = None, endpoint: str | None = None) -> str:
    """Publish ``folder`` as ``repo_id``; returns the commit sha to pin (``hf://repo@sha``)."""
    message = f"Upload {Path(folder).name} with rsrouter"
    if git_remote:
        return push_to_git(folder, git_remote, message=message)
    return hub.push_folder(folder, repo_id, private=private, endpoint=endpoint,
                           commit_message=message)
