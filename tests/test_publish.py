"""Publishing an expert folder: regular files only, so a crafted folder cannot make a push
upload any other file of the publisher's machine."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from rsrouter.cli import main
from rsrouter.errors import HubError
from rsrouter.sources.publish import publishable_files, push_to_git


def _tree(remote) -> list[str]:
    done = subprocess.run(["git", "-C", str(remote), "ls-tree", "-r", "--name-only", "main"],
                          capture_output=True, text=True)
    return done.stdout.split() if done.returncode == 0 else []


@pytest.mark.parametrize("link", ["README.md", "extra", "notes/secret.txt"])
def test_push_refuses_a_folder_holding_a_link(digits_expert, tmp_path, capsys, link):
    secret = tmp_path / "id_rsa"
    secret.write_text("PRIVATE KEY")
    folder = tmp_path / "crafted"
    shutil.copytree(digits_expert, folder)
    target = folder / link
    target.parent.mkdir(exist_ok=True)
    if link == "README.md":
        target.unlink()
    target.symlink_to(secret if link != "extra" else tmp_path, target_is_directory=link == "extra")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    assert main(["experts", "push", str(folder), "--git-remote", str(remote)]) == 2
    assert "is a symbolic link" in capsys.readouterr().err
    assert _tree(remote) == []  # nothing was pushed
    with pytest.raises(HubError, match="symbolic link"):
        push_to_git(folder, str(remote))


def test_a_push_carries_the_regular_files_and_nothing_else(digits_expert, tmp_path):
    folder = tmp_path / "expert"
    shutil.copytree(digits_expert, folder)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("local")
    (folder / "notes").mkdir()
    (folder / "notes" / "a.txt").write_text("kept")
    assert publishable_files(folder) == ["README.md", "config.json", "model.safetensors",
                                         "notes/a.txt"]
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    push_to_git(folder, str(remote))
    assert _tree(remote) == publishable_files(folder)
    (folder / "notes" / "a.txt").unlink()
    push_to_git(folder, str(remote))  # the whole tree is replaced: a removed file goes
    assert "notes/a.txt" not in _tree(remote)
