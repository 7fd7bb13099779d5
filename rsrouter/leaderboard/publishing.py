"""Publishing a built leaderboard: its entries merged into what a folder, a git remote or a Hub
dataset repo already has (publishing the same entries twice adds nothing).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import LockedError, ResultsError
from ..files import FileLock
from ..sources.publish import update_branch
from .board import build_site, read_board


def _site_entries(site: Path) -> list[dict]:
    path = site / "leaderboard.json"
    if not path.is_file():
        raise ResultsError(f"{site} is not a built leaderboard (no leaderboard.json); run "
                           "`rsrouter leaderboard build` first")
    return read_board(path)


def publish(site: str | os.PathLike, *, to: str | os.PathLike | None = None,
            git_remote: str | None = None, hub: str | None = None,
            endpoint: str | None = None, replace: bool = False) -> str:
    """Merge the site's entries into what the destination already has
    (:func:`rsrouter.leaderboard.board.merge`: the destination's first, an added entry that
    collides with one of them is refused unless ``replace``) and write the merged site there;
    returns the folder, the commit sha, or the Hub commit.

    Each destination is updated atomically with respect to other publishers: a folder under a
    lock, a git branch or a Hub repo by compare-and-swap on its head commit. A destination that
    cannot be read aborts the publish (nothing is written over a board that was not read).

    Raises:
        ResultsError: a collision, or a destination that holds no readable leaderboard.
        HubError, LockedError: the destination cannot be read or updated.
    """
    entries = _site_entries(Path(site))
    if to is not None:
        target = Path(to)
        try:
            lock = FileLock(Path(os.path.realpath(target)) / ".leaderboard.lock",
                            str(target)).acquire()
        except LockedError:
            raise LockedError(f"{target}: another `leaderboard publish` is writing it; try again "
                              "when it has finished") from None
        try:
            old = _site_entries(target) if (target / "leaderboard.json").exists() else []
            build_site([], target, entries=[*old, *entries], replace=replace)
        finally:
            lock.release()
        return str(target)
    if git_remote is not None:
        return _publish_git(entries, git_remote, replace)
    if hub is not None:
        return _publish_hub(entries, hub, endpoint, replace)
    raise ValueError("publish: give to=, git_remote= or hub=")


def _publish_git(entries: list[dict], remote: str, replace: bool) -> str:
    def fill(work: Path) -> None:
        board = work / "leaderboard.json"
        if board.is_symlink() or (board.exists() and not board.is_file()):
            raise ResultsError(f"{remote}:main:leaderboard.json is not a regular file (a link "
                               "would read a file of this machine); fix the remote's tree")
        old = read_board(board, f"{remote}:main:leaderboard.json") if board.exists() else []
        build_site([], work, entries=[*old, *entries], replace=replace)

    return update_branch(remote, fill, message="Update the leaderboard", allow_empty=False)


def _publish_hub(entries: list[dict], uri: str, endpoint: str | None, replace: bool,
                 attempts: int = 5) -> str:
    """A Hub dataset repo ``hf://datasets/org/name`` (thin: huggingface_hub does the work; the
    upload names the commit it read as its parent, so a concurrent publish makes it retry)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    prefix = "hf://datasets/"
    if not uri.startswith(prefix):
        raise ValueError(f"--hub takes hf://datasets/org/name, got {uri!r}")
    repo_id = uri[len(prefix):]
    api = HfApi(endpoint=endpoint)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    for _ in range(attempts):
        head = api.repo_info(repo_id, repo_type="dataset").sha
        old = []
        if "leaderboard.json" in api.list_repo_files(repo_id, repo_type="dataset", revision=head):
            path = hf_hub_download(repo_id, "leaderboard.json", repo_type="dataset",
                                   revision=head, endpoint=endpoint)
            old = read_board(Path(path), uri)
        with tempfile.TemporaryDirectory(prefix="rsrouter-board-") as tmp:
            build_site([], tmp, entries=[*old, *entries], replace=replace)
            try:
                commit = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="dataset",
                                           commit_message="Update the leaderboard",
                                           parent_commit=head)
            except HfHubHTTPError as e:  # another publisher moved the head: read it again
                if getattr(e.response, "status_code", None) in (409, 412):
                    continue
                raise
        return str(commit.oid)
    raise ResultsError(f"{uri}: the repo kept moving under {attempts} tries to publish; try "
                       "again")
