"""Experts on a git remote (`git+URL@rev`): push -> register -> load, pinned, cached, offline."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

from rsrouter.cli import main
from rsrouter.errors import HubError, IntegrityError, UnknownExpertError
from rsrouter.registry.core import Registry
from rsrouter.sources import git as gitremote
from rsrouter.sources.git import git_uri_for, parse_git_uri


@pytest.mark.parametrize("uri, url, revision", [
    ("git+file:///srv/experts/a.git@abc", "file:///srv/experts/a.git", "abc"),
    ("git+file:///srv/experts/a.git", "file:///srv/experts/a.git", None),
    ("git+https://host/org/a.git@v1", "https://host/org/a.git", "v1"),
    ("git+ssh://git@host/org/a.git", "ssh://git@host/org/a.git", None),
    ("git+ssh://git@host/org/a.git@main", "ssh://git@host/org/a.git", "main"),
])
def test_parse_git_uri(uri, url, revision):
    assert parse_git_uri(uri) == gitremote.GitRef(url, revision)


def test_bad_git_uris_and_remote_forms(tmp_path):
    with pytest.raises(ValueError, match="must start with"):
        parse_git_uri("git+/srv/a.git@abc")
    assert git_uri_for(str(tmp_path)) == f"git+{tmp_path.as_uri()}"
    # git's user@host:path is relative to the home folder: ssh://user@host/~/path says the same
    assert git_uri_for("git@host:org/x.git") == "git+ssh://git@host/~/org/x.git"
    assert git_uri_for("git@host:/srv/x.git") == "git+ssh://git@host/srv/x.git"
    assert parse_git_uri("git+https://h/a.git@feature/x").revision == "feature/x"
    assert git_uri_for("https://h/x.git") == "git+https://h/x.git"


@pytest.fixture
def remote(tmp_path):
    path = tmp_path / "experts.git"
    subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
    return path


def test_push_register_certify_round_trip(digits_expert, remote, tmp_path, capsys, monkeypatch):
    assert main(["experts", "push", digits_expert, "--git-remote", str(remote)]) == 0  # no --repo
    out = capsys.readouterr().out
    command = out.split("register it with: ")[1].split("\n")[0]
    sha = command.split("@")[-1].split()[0]
    assert command == f"rsrouter experts register git+{remote.as_uri()}@{sha} --name digits-tiny"
    assert main(command.split()[1:]) == 0
    tsv = tmp_path / "c.tsv"
    certify = ["certify", "--model", "digits-tiny", "--dataset", "digits", "--n0", "20", "--n",
               "200", "--max", "30", "--skip", "10", "--out", str(tsv), "--no-progress"]
    assert main(certify) == 0
    # offline, with the remote gone: served from rsrouter's cache
    shutil.move(remote, tmp_path / "gone.git")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main([*certify[:-3], "--out", str(tmp_path / "offline.tsv"), "--no-progress"]) == 0
    entry = Registry().get("digits-tiny")
    assert entry.source == f"git+{remote.as_uri()}" and entry.revision == sha
    # a cached byte that changes is refused and the cached copy deleted
    folder = gitremote.cached_folder(entry.source[4:], sha)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="deleted") as e:
        Registry().load("digits-tiny")
    assert hashlib.sha256(bytes(data)).hexdigest() in str(e.value)
    assert not folder.exists()
    with pytest.raises(HubError, match="does not appear to be a git repository"):
        Registry().load("digits-tiny")  # offline, a file:// remote is fetched again: it is gone


def test_a_router_record_mismatch_keeps_a_valid_cache(digits_expert, remote):
    from rsrouter.cards.pins import Pin
    from rsrouter.sources.publish import push_to_git

    sha = push_to_git(digits_expert, str(remote))
    registry = Registry()
    expert = registry.load(f"git+{remote.as_uri()}@{sha}")
    folder = gitremote.cached_folder(remote.as_uri(), sha)
    stale = Pin("0" * 64, expert.pin.config_sha256, "router R")
    with pytest.raises(IntegrityError, match="recorded by router R"):
        registry.load(f"git+{remote.as_uri()}@{sha}", pin=stale)
    assert (folder / "model.safetensors").is_file()  # the cached bytes were right


def test_push_suggests_a_free_name(digits_expert, remote, capsys):
    assert main(["experts", "register", digits_expert, "--name", "digits-tiny"]) == 0
    assert main(["experts", "push", digits_expert, "--git-remote", str(remote)]) == 0
    command = capsys.readouterr().out.split("register it with: ")[1].split("\n")[0]
    sha = command.split("@")[-1].split()[0]
    assert command.endswith(f"--name digits-tiny-{sha[:7]}")
    assert main(command.split()[1:]) == 0


def test_a_branch_resolves_to_its_commit_and_a_bare_path_gets_a_hint(digits_expert, remote):
    sha = subprocess.run(["git", "ls-remote", str(remote)], capture_output=True, text=True)
    assert sha.stdout == ""
    from rsrouter.sources.publish import push_to_git

    first = push_to_git(digits_expert, str(remote))
    registry = Registry()
    assert registry.register(f"git+{remote.as_uri()}@main", "by-branch").revision == first
    assert registry.register(f"git+{remote.as_uri()}", "by-head").revision == first
    with pytest.raises(UnknownExpertError, match=r"git repository.*register git\+file://"):
        registry.register(str(remote), "bare")
    with pytest.raises(HubError, match="not found"):
        registry.register(f"git+{remote.as_uri()}@no-such-branch", "nope")
    with pytest.raises(HubError, match="offline"):
        Registry(offline=True).register("git+https://example.invalid/x.git@main", "offline")


def test_push_needs_a_destination(digits_expert, capsys):
    assert main(["experts", "push", digits_expert]) == 2
    assert "--repo ORG/NAME" in capsys.readouterr().err


def test_offline_mode_does_not_block_a_file_url(digits_expert, remote, monkeypatch, capsys):
    """A git+file:// source needs no network: it registers offline by sha and by branch; a
    network remote offline is still refused, naming the fix."""
    from rsrouter.sources.publish import push_to_git

    sha = push_to_git(digits_expert, str(remote))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["experts", "register", f"git+{remote.as_uri()}@{sha}", "--name", "by-sha"]) == 0
    assert main(["experts", "register", f"git+{remote.as_uri()}@main", "--name", "by-branch"]) == 0
    assert Registry().get("by-branch").revision == sha
    assert main(["experts", "register", f"git+{remote.as_uri()}@main", "--name", "flag",
                 "--offline"]) == 0
    capsys.readouterr()
    for source, message in (("git+https://example.invalid/x.git@main", "cannot resolve.*offline"),
                            (f"git+https://example.invalid/x.git@{sha}", "offline mode is on")):
        assert main(["experts", "register", source, "--name", "net"]) != 0
        assert re.search(message, capsys.readouterr().err)
