"""Credentials typed into a source URL never reach a card, a results file or a leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsrouter.bench.config import parse_bench_config
from rsrouter.bench.harness import expert_record
from rsrouter.cards.router import ExpertRef
from rsrouter.leaderboard.logs import import_tsv
from rsrouter.registry.core import Registry
from rsrouter.urls import public_url, scrub_text

SHA = "a" * 40


@pytest.mark.parametrize("uri, public", [
    (f"git+https://user:ghp_token@host/org/e.git@{SHA}", f"git+https://host/org/e.git@{SHA}"),
    ("git+https://ghp_token@host/org/e.git", "git+https://host/org/e.git"),
    ("https://host/e.git?private_token=xyz", "https://host/e.git"),
    ("git+ssh://git:pw@host/org/e.git@main", "git+ssh://git@host/org/e.git@main"),
    ("git+ssh://git@host/org/e.git@main", "git+ssh://git@host/org/e.git@main"),
    (f"git+file:///srv/e.git@{SHA}", f"git+file:///srv/e.git@{SHA}"),
    ("hf://org/name@v1", "hf://org/name@v1"),
    ("relative/folder", "relative/folder"),
])
def test_public_url(uri, public):
    assert public_url(uri) == public
    assert public_url(public) == public


def test_no_record_keeps_a_credential(digits_expert, tmp_path):
    """The places a source is recorded: a router card's expert records, a benchmark's expert
    records and its config in bench.json, a leaderboard entry's source note."""
    expert = Registry().load(digits_expert)
    expert.uri = f"git+https://user:ghp_token@host/org/e.git@{SHA}"
    ref = ExpertRef.of(expert, tmp_path)
    assert (ref.source, ref.revision) == ("git+https://host/org/e.git", SHA)
    assert expert_record(expert)["source"] == f"git+https://host/org/e.git@{SHA}"
    cfg = parse_bench_config({"name": "b", "data": {"dataset": "digits"}, "methods": [
        {"type": "expert", "expert": expert.uri, "name": "e"},
        {"type": "cascade", "experts": [expert.uri, "x"]}]})
    assert "ghp_token" not in json.dumps(cfg.to_dict())
    log = tmp_path / "log.tsv"
    log.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n0\t1\t-1\t0.0\t0\t0.1\n")
    entry = import_tsv(log, dataset="digits", method="m", out=tmp_path / "e", n=100,
                       alpha=0.001, sigma=0.5,
                       source="Lab logs, https://bot:ghp_token@host/org/logs.git, table 2")
    assert "ghp_token" not in entry.read_text()
    assert scrub_text("see https://u:p@h/x") == "see https://h/x"
    assert scrub_text("https://openreview.net/forum?id=Sk4jFoA9K7, https://h/x?id=3&"
                      "private_token=abc") == "https://openreview.net/forum?id=Sk4jFoA9K7, "\
        "https://h/x?id=3"


def test_a_router_config_records_its_experts_without_credentials():
    """A router card stores its config (rs_router.training.settings, the README): its expert
    sources go through public_url like every other record."""
    from rsrouter.routing.config import parse_config

    token = f"git+https://bot:ghp_token@host/org/e.git@{SHA}"
    cfg = parse_config({"experts": [token, "other"], "data": {"dataset": "digits"},
                        "router": {"arch": "cnn_tiny", "backbone": token}})
    assert "ghp_token" not in json.dumps(cfg.to_dict())


def _seed_git_cache(digits_expert, url: str) -> None:
    """What fetching ``url`` at SHA leaves in rsrouter's cache (no git server needed)."""
    from rsrouter.sources import git as gitremote

    folder = gitremote.cached_folder(url, SHA)
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "README.md"):
        (folder / name).write_bytes((Path(digits_expert) / name).read_bytes())


def test_an_expert_fetched_with_credentials_is_found_by_its_public_record(digits_expert,
                                                                          tmp_path):
    """A router records its experts without credentials; the copy fetched with them is found
    under that record (the cache is keyed by the public URL), offline, and a registration in
    the project's (shared) file keeps no credentials either."""
    secret = "https://bot:ghp_token@example.com/org/e.git"
    _seed_git_cache(digits_expert, secret)
    registry = Registry(offline=True)
    registry.register(f"git+{secret}@{SHA}", "private")
    expert = registry.load(f"git+https://example.com/org/e.git@{SHA}")
    assert expert.pin.weights_sha256 == registry.get("private").weights_sha256
    project = tmp_path / "registry.yaml"
    Registry(project, offline=True).register(f"git+{secret}@{SHA}", "shared", project=True)
    assert "ghp_token" not in project.read_text() and "example.com" in project.read_text()
