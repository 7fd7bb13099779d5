"""rsrouter.sources.hub against a real Hub-compatible server (olah, 127.0.0.1)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hubserver import OlahServer, make_git_repo

from rsrouter.cards.pins import ARTIFACT_FILES
from rsrouter.errors import HubError
from rsrouter.sources import hub

REPO = "rsr-test/tiny-expert"
DEAD_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens


def _expert_files(version: int) -> dict[str, bytes]:
    weights = random.Random(version).randbytes(1_500_000)  # a real-size blob, plain git
    return {
        "config.json": b'{"name": "tiny", "version": %d}' % version,
        "model.safetensors": weights,
        "README.md": b"---\nlicense: apache-2.0\n---\n# tiny expert v%d\n" % version,
    }


COMMITS = [_expert_files(1), _expert_files(2)]


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory) -> tuple[Path, list[str]]:
    """The mirrors folder with REPO: two commits, tag v1 on the first."""
    root = tmp_path_factory.mktemp("mirrors")
    shas = make_git_repo(root / "models" / REPO, COMMITS, tags={"v1": 0})
    return root, shas


@pytest.fixture
def shas(mirrors) -> list[str]:
    return mirrors[1]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def test_parse_hf_uri():
    assert hub.parse_hf_uri("hf://org/name") == hub.HubRef("org/name", None)
    ref = hub.parse_hf_uri("hf://org/name.v2@refs/pr/1")
    assert (ref.repo_id, ref.revision) == ("org/name.v2", "refs/pr/1")
    assert ref.uri == "hf://org/name.v2@refs/pr/1"
    assert hub.parse_hf_uri("hf://a-b/c_d@" + "0" * 40).revision == "0" * 40


@pytest.mark.parametrize("bad", ["org/name", "hf://name", "hf://org/name/x", "hf://org/name@",
                                 "hf://org/na me", "hf://org/--x", "https://hf.co/org/name", ""])
def test_parse_hf_uri_rejects(bad):
    with pytest.raises(ValueError, match="hf://org/name|bad"):
        hub.parse_hf_uri(bad)


def test_is_offline_flag_then_env_read_per_call(monkeypatch):
    assert hub.is_offline() is False
    for value in ("1", "true", "YES", "on"):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.is_offline() is True
    assert hub.is_offline(False) is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert hub.is_offline() is False and hub.is_offline(True) is True


def test_resolve_branch_tag_and_sha(server, shas):
    assert hub.resolve_revision(REPO, "main", endpoint=server.endpoint) == shas[1]
    assert hub.resolve_revision(REPO, None, endpoint=server.endpoint) == shas[1]
    assert hub.resolve_revision(REPO, "v1", endpoint=server.endpoint) == shas[0]
    assert hub.resolve_revision(REPO, shas[0], endpoint=server.endpoint) == shas[0]
    assert hub.resolve_revision(REPO, shas[0].upper(), endpoint=server.endpoint) == shas[0]


def test_resolve_uses_hf_endpoint_env(server, shas, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    assert hub.resolve_revision(REPO, "v1") == shas[0]


@pytest.mark.parametrize("repo, revision", [(REPO, "no-such-branch"), ("rsr-test/missing", "main"),
                                            (REPO, "0123456789" * 4)])
def test_resolve_missing_repo_or_revision(server, shas, repo, revision):
    with pytest.raises(HubError) as caught:
        hub.resolve_revision(repo, revision, endpoint=server.endpoint)
    assert repo in str(caught.value) and server.endpoint in str(caught.value)
    # olah answers an unknown sha with a 500 and drops the connection: the next call still works
    assert hub.resolve_revision(REPO, "v1", endpoint=server.endpoint) == shas[0]


def test_resolve_unreachable_endpoint():
    with pytest.raises(HubError, match="127.0.0.1:9"):
        hub.resolve_revision(REPO, "main", endpoint=DEAD_ENDPOINT)


def test_resolve_offline_keeps_a_sha_and_refuses_a_branch(shas, monkeypatch):
    assert hub.resolve_revision(REPO, shas[0], endpoint=DEAD_ENDPOINT, offline=True) == shas[0]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve_revision(REPO, shas[1], endpoint=DEAD_ENDPOINT) == shas[1]
    with pytest.raises(HubError, match="offline.*pin a full commit sha"):
        hub.resolve_revision(REPO, "main", endpoint=DEAD_ENDPOINT)


def test_download_by_sha_gives_each_commits_files(server, shas, cache):
    for sha, files in zip(shas, COMMITS):
        folder = hub.download_files(REPO, sha, endpoint=server.endpoint, cache_dir=cache)
        assert folder.name == sha and folder.is_dir()
        for name, data in files.items():
            assert (folder / name).read_bytes() == data
        assert hub.is_cached(REPO, sha, cache_dir=cache)


def test_cached_sha_needs_no_request_nor_server(mirrors, tmp_path, cache, monkeypatch):
    sha = mirrors[1][0]
    with OlahServer(mirrors[0], tmp_path / "olah") as own:
        hub.download_files(REPO, sha, endpoint=own.endpoint, cache_dir=cache)
        after_first = own.request_count()
        assert after_first >= len(ARTIFACT_FILES)  # huggingface_hub 2.x: a HEAD and a GET each
        folder = hub.download_files(REPO, sha, endpoint=own.endpoint, cache_dir=cache)
        assert own.request_count() == after_first
        endpoint = own.endpoint
    assert not own.running
    for offline in (True, False, None):
        assert hub.download_files(REPO, sha, endpoint=endpoint, cache_dir=cache,
                                  offline=offline) == folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.download_files(REPO, sha, endpoint=endpoint, cache_dir=cache) == folder
    assert (folder / "config.json").read_bytes() == COMMITS[0]["config.json"]


def test_default_cache_follows_env(server, shas, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "env-cache"))
    folder = hub.download_files(REPO, shas[1], ["config.json"], endpoint=server.endpoint)
    assert folder.is_relative_to(tmp_path / "env-cache")
    assert hub.is_cached(REPO, shas[1], ["config.json"])


def test_offline_and_not_cached_says_how_to_fix(server, shas, cache, monkeypatch):
    count = server.request_count()
    with pytest.raises(HubError, match="offline.*rsrouter experts pull"):
        hub.download_files(REPO, shas[0], endpoint=server.endpoint, cache_dir=cache, offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="not in the Hub cache"):
        hub.download_files(REPO, shas[0], endpoint=server.endpoint, cache_dir=cache)
    assert server.request_count() == count


def test_missing_repo_or_file(server, shas, cache):
    with pytest.raises(HubError, match="rsr-test/missing"):
        hub.download_files("rsr-test/missing", shas[0], endpoint=server.endpoint, cache_dir=cache)
    with pytest.raises(HubError, match="download nope.bin: .*not found"):
        hub.download_files(REPO, shas[0], ["nope.bin"], endpoint=server.endpoint, cache_dir=cache)


def test_download_needs_a_full_sha(server, cache):
    with pytest.raises(HubError, match="full commit sha"):
        hub.download_files(REPO, "main", endpoint=server.endpoint, cache_dir=cache)


def test_discard_cached(server, shas, cache):
    folder = hub.download_files(REPO, shas[0], endpoint=server.endpoint, cache_dir=cache)
    blob = (folder / "model.safetensors").resolve()
    hub.discard_cached(REPO, shas[0], "model.safetensors", cache_dir=cache)
    assert not hub.is_cached(REPO, shas[0], cache_dir=cache)
    assert hub.is_cached(REPO, shas[0], ["config.json", "README.md"], cache_dir=cache)
    assert not (folder / "model.safetensors").exists() and not blob.exists()
    hub.discard_cached(REPO, shas[0], "model.safetensors", cache_dir=cache)  # no-op now
    hub.download_files(REPO, shas[0], endpoint=server.endpoint, cache_dir=cache)
    assert (folder / "model.safetensors").read_bytes() == COMMITS[0]["model.safetensors"]


def test_push_folder_creates_then_uploads(tmp_path, monkeypatch):
    calls = []

    class FakeApi:
        def __init__(self, endpoint=None, token=None):
            calls.append(("init", endpoint, token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload", kw))
            return type("CommitInfo", (), {"oid": "a" * 40})()

    import huggingface_hub  # rsrouter.sources.hub imports it on first use

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert hub.push_folder(tmp_path, "org/x", endpoint="http://127.0.0.1:1/", token="t") == "a" * 40
    assert calls[0] == ("init", "http://127.0.0.1:1", "t")
    assert calls[1] == ("create", "org/x", {"private": False, "repo_type": "model",
                                            "exist_ok": True})
    assert calls[2][1]["repo_id"] == "org/x" and calls[2][1]["folder_path"] == str(tmp_path)
    with pytest.raises(HubError, match="not a folder"):
        hub.push_folder(tmp_path / "missing", "org/x")
