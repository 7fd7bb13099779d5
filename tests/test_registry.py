"""The registry against a real Hub-compatible server (olah on 127.0.0.1 serving git mirrors)."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import pytest
import untrusted
import yaml
from hubserver import make_git_repo

from rsrouter.cli import main
from rsrouter.errors import (
    CardError,
    HubError,
    IntegrityError,
    RegistryError,
    UnknownExpertError,
)
from rsrouter.registry.core import Registry
from rsrouter.results.tsv import read_tsv
from rsrouter.sources import hub


def _files(folder: str | Path, **config_changes) -> dict[str, bytes]:
    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in config_changes.items():
        if key in config:
            config[key] = value
        else:
            config["rs_expert"][key] = value
    return {"config.json": json.dumps(config).encode(),
            "model.safetensors": (folder / "model.safetensors").read_bytes(),
            "README.md": (folder / "README.md").read_bytes()}


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory, digits_expert):
    """org/good: main (2 commits, tag v1 on the first); org/lying-card; org/wrong-classes;
    org/truncated; org/tampered (its weights blob is altered in the mirror after the commit)."""
    root = tmp_path_factory.mktemp("mirrors")
    good = _files(digits_expert)
    second = _files(digits_expert, sigma=0.5)  # another commit: same weights, other card
    shas = {"good": make_git_repo(root / "models/org/good", [good, second], tags={"v1": 0})}
    make_git_repo(root / "models/org/lying-card", [_files(digits_expert,
                                                          weights_sha256="a" * 64)])
    make_git_repo(root / "models/org/wrong-classes", [_files(digits_expert, num_classes=7,
                                                             label_names=[])])
    truncated = dict(good)
    truncated["model.safetensors"] = good["model.safetensors"][:4000]
    truncated["config.json"] = _files(
        digits_expert, weights_sha256=hashlib.sha256(truncated["model.safetensors"]).hexdigest()
    )["config.json"]
    make_git_repo(root / "models/org/truncated", [truncated])
    shas["tampered"] = make_git_repo(root / "models/org/tampered", [good])
    make_git_repo(root / "models/org/evil", [_files(digits_expert, architecture="evilmod:factory")])
    return root, shas, good


@pytest.fixture
def registry(tmp_path, server) -> Registry:
    return Registry(tmp_path / "project.yaml", tmp_path / "user.yaml", endpoint=server.endpoint)


def test_register_by_sha_tag_and_main(registry, mirrors):
    _, shas, _ = mirrors
    first, second = shas["good"]
    assert registry.register("hf://org/good@v1", "by-tag").revision == first
    assert registry.register("hf://org/good", "by-main").revision == second
    assert registry.register(f"hf://org/good@{first}", "by-sha").revision == first
    assert registry.load("by-tag").sigma == 0.25
    assert registry.load("by-main").sigma == 0.5  # the second commit's card
    saved = yaml.safe_load(registry.user_file.read_text())["experts"]
    assert saved["by-tag"]["revision"] == first and saved["by-tag"]["source"] == "hf://org/good"


def test_second_load_makes_no_request_and_offline_uses_cache(registry, server, tmp_path,
                                                             monkeypatch):
    registry.register("hf://org/good@v1", "e")
    registry.load("e")
    before = server.request_count()
    expert = registry.load("e")
    assert server.request_count() == before, server.requests()[before:]
    assert expert.name == "e" and expert.source.startswith("hf://org/good@")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert registry.load("e").sigma == 0.25
    assert server.request_count() == before


def test_offline_and_not_cached_is_a_clear_error(registry, tmp_path, monkeypatch):
    registry.register("hf://org/good@v1", "e")
    entry = registry.get("e")
    fresh = Registry(registry.project_file, registry.user_file, endpoint=registry.endpoint,
                     cache_dir=tmp_path / "empty-cache", offline=True)
    assert not fresh.is_cached(entry)
    with pytest.raises(HubError, match="offline.*rsrouter experts pull"):
        fresh.load("e")
    with pytest.raises(HubError, match="offline"):  # a tag cannot be resolved offline
        fresh.pull("hf://org/good@v1")


def test_card_that_disagrees_with_its_weights_is_refused_at_registration(registry):
    with pytest.raises(IntegrityError, match="a{64}"):
        registry.register("hf://org/lying-card", "liar")
    assert "liar" not in registry.entries()


def test_class_count_mismatch_is_refused(registry):
    with pytest.raises(CardError, match="class-count mismatch"):
        registry.register("hf://org/wrong-classes", "wrong")


def test_truncated_weights_are_refused(registry):
    with pytest.raises(IntegrityError, match="truncated or corrupt"):
        registry.register("hf://org/truncated", "cut")


def _tamper_blob(repo: Path, data: bytes) -> bytes:
    """Replace the loose git object of ``data`` with other bytes of the same length, as a
    compromised mirror would serve them under the same commit."""
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    path = repo / ".git" / "objects" / oid[:2] / oid[2:]
    bad = bytes([data[0] ^ 0xFF]) + data[1:-1] + bytes([data[-1] ^ 0xFF])
    os.chmod(path, 0o644)
    path.write_bytes(zlib.compress(b"blob %d\0" % len(bad) + bad))
    return bad


def test_served_file_differing_from_the_pinned_hash(registry, mirrors, tmp_path):
    root, shas, good = mirrors
    entry = registry.register("hf://org/tampered", "t")
    bad = _tamper_blob(root / "models/org/tampered", good["model.safetensors"])
    fresh = Registry(registry.project_file, registry.user_file, endpoint=registry.endpoint,
                     cache_dir=tmp_path / "fresh-cache")
    with pytest.raises(IntegrityError) as e:
        fresh.load("t")
    message = str(e.value)
    assert entry.weights_sha256 in message and hashlib.sha256(bad).hexdigest() in message
    assert "model.safetensors" in message and "deleted" in message
    assert not hub.is_cached("org/tampered", shas["tampered"][0], ["model.safetensors"],
                             cache_dir=tmp_path / "fresh-cache")


def test_local_folder_registry_and_conflicts(registry, digits_expert, tmp_path):
    entry = registry.register(digits_expert, "local")
    assert entry.revision is None and registry.is_cached(entry)
    assert registry.verify("local").sigma == 0.25
    assert registry.register(digits_expert, "local") == entry  # the same pins: no error
    registry.project_file.write_text(yaml.safe_dump({"experts": {"local": entry.to_yaml()}}))
    with pytest.raises(RegistryError, match="both"):
        registry.entries()
    registry.project_file.unlink()
    registry.remove("local")
    with pytest.raises(UnknownExpertError, match="unknown expert 'local'"):
        registry.get("local")


def test_register_again_same_pins_is_a_no_op_other_pins_need_replace(registry, digits_expert,
                                                                     tmp_path, monkeypatch):
    """Same pins (sha256 of both files): no error, the entry follows the new folder; other
    pins: refused unless replace; an entry of the other registry file is never changed."""
    import shutil

    first = registry.register(digits_expert, "mine")
    text = registry.user_file.read_text()
    assert registry.register(digits_expert, "mine") == first
    assert registry.user_file.read_text() == text  # nothing written
    moved = tmp_path / "rebuilt"  # the same bytes elsewhere (a rerun in a new folder)
    shutil.copytree(digits_expert, moved)
    again = registry.register(str(moved), "mine")
    assert (again.weights_sha256, again.config_sha256) == (first.weights_sha256,
                                                           first.config_sha256)
    assert registry.get("mine").folder() == moved.resolve()
    other = tmp_path / "other"
    shutil.copytree(digits_expert, other)
    config = json.loads((other / "config.json").read_text())
    config["rs_expert"]["sigma"] = 0.5
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(RegistryError, match=r"already registered.*other pins.*--replace"):
        registry.register(str(other), "mine")
    assert registry.get("mine").folder() == moved.resolve()
    replaced = registry.register(str(other), "mine", replace=True)
    assert replaced.sigma == 0.5 and registry.load("mine").sigma == 0.5
    # in the project's file: the same pins are no error, other pins are refused even with replace
    project = registry.register(digits_expert, "zoo", project=True)
    assert registry.register(str(moved), "zoo") == project
    with pytest.raises(RegistryError, match=r"registered in .*project.yaml.*remove .*--project"):
        registry.register(str(other), "zoo", replace=True)
    assert "zoo" not in registry.user_file.read_text()
    # a folder named like a registered name is that folder (register reads no names)
    shutil.copytree(other, tmp_path / "mine")
    monkeypatch.chdir(tmp_path)
    assert registry.register("mine", "mine").folder() == (tmp_path / "mine").resolve()
    assert registry.register("mine", "named-folder").sigma == 0.5
    with pytest.raises(RegistryError, match="registered name, not a folder"):
        registry.register("zoo", "x")


def test_cli_register_says_what_it_did(digits_expert, tmp_path, capsys):
    import shutil

    register = ["experts", "register", digits_expert, "--name", "mine"]
    assert main(register) == 0
    assert main(register) == 0
    assert "mine is already registered with the same pins:" in capsys.readouterr().out
    shutil.copytree(digits_expert, tmp_path / "moved")
    assert main(["experts", "register", str(tmp_path / "moved"), "--name", "mine"]) == 0
    assert f"it now points at {tmp_path / 'moved'} (was " in capsys.readouterr().out
    config = json.loads((tmp_path / "moved" / "config.json").read_text())
    config["rs_expert"]["sigma"] = 0.5
    (tmp_path / "moved" / "config.json").write_text(json.dumps(config))
    assert main(["experts", "register", str(tmp_path / "moved"), "--name", "mine"]) == 2
    assert "--replace" in capsys.readouterr().err
    assert main(["experts", "register", str(tmp_path / "moved"), "--name", "mine",
                 "--replace"]) == 0
    assert capsys.readouterr().out.startswith("replaced mine (was ")


def test_registered_local_folder_whose_weights_change(registry, digits_expert, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(digits_expert, folder)
    registry.register(str(folder), "mine")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        registry.load("mine")


def test_train_push_register_certify_round_trip(digits_expert, server, mirrors, tmp_path,
                                                capsys):
    """experts train (the fixture) -> push to a git remote the mirror serves -> register hf://
    -> certify, all through the command line."""
    import subprocess

    remote = mirrors[0] / "models" / "org" / "pushed"
    remote.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "-C", str(remote), "config", "receive.denyCurrentBranch",
                    "updateInstead"], check=True)
    assert main(["experts", "push", digits_expert, "--repo", "org/pushed",
                 "--git-remote", str(remote)]) == 0
    out = capsys.readouterr().out
    sha = out.split("at commit ")[1].split()[0]
    assert f"hf://org/pushed@{sha}" in out
    assert main(["experts", "register", f"hf://org/pushed@{sha}", "--name", "pushed",
                 "--endpoint", server.endpoint]) == 0
    assert main(["experts", "list", "--endpoint", server.endpoint]) == 0
    listing = capsys.readouterr().out
    assert "pushed" in listing and sha[:12] in listing and "yes" in listing
    tsv = tmp_path / "cert.tsv"
    assert main(["certify", "--model", "pushed", "--dataset", "digits", "--n0", "20", "--n", "200",
                 "--alpha", "0.01", "--max", "50", "--skip", "10", "--batch-size", "500",
                 "--out", str(tsv), "--no-progress", "--endpoint", server.endpoint]) == 0
    df = read_tsv(tsv)
    assert len(df) == 5 and (df["sigma"] == 0.25).all()
    assert main(["experts", "verify", "pushed", "--endpoint", server.endpoint]) == 0
    assert main(["experts", "remove", "pushed"]) == 0
    assert main(["experts", "show", "pushed"]) == 2
    assert "unknown expert" in capsys.readouterr().err


def test_a_hub_card_naming_code_imports_nothing_without_the_opt_in(server, tmp_path):
    """`python -m rsrouter` puts the current folder on sys.path: a card naming `evilmod:factory`
    must not import the evilmod.py found there unless the user opts in."""
    marker = untrusted.plant(tmp_path)
    hub_args = ("--endpoint", server.endpoint)
    refused = untrusted.rsrouter("experts", "register", "hf://org/evil", "--name", "evil",
                                 *hub_args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "evilmod:factory" in refused.stderr and "--trust-code" in refused.stderr
    assert "trusted_modules" in refused.stderr
    assert not marker.exists()
    assert untrusted.rsrouter("experts", "pull", "hf://org/evil", *hub_args,
                              cwd=tmp_path).returncode == 2
    assert not marker.exists()
    ok = untrusted.rsrouter("experts", "register", "hf://org/evil", "--name", "evil",
                            "--trust-code", *hub_args, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert marker.exists()
    marker.unlink()
    # a registered expert still needs the opt-in at every load; trusted_modules gives it for good
    assert untrusted.rsrouter("experts", "verify", "evil", *hub_args, cwd=tmp_path).returncode == 2
    assert not marker.exists()
    user_file = Path(os.environ["RSROUTER_CONFIG_DIR"]) / "registry.yaml"
    doc = yaml.safe_load(user_file.read_text())
    user_file.write_text(yaml.safe_dump({**doc, "trusted_modules": ["evilmod"]}))
    verified = untrusted.rsrouter("experts", "verify", "evil", *hub_args, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert marker.exists()


def test_registration_pins_the_config_and_a_later_edit_is_refused(registry, digits_expert,
                                                                   tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(digits_expert, folder)
    entry = registry.register(str(folder), "mine")
    assert entry.config_sha256 == hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()
    config = json.loads((folder / "config.json").read_text())
    config["rs_expert"]["sigma"] = 0.5  # a card edited after registration
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="config.json.*recorded by the registration of "
                                             "'mine'.*card.*was edited"):
        registry.load("mine")
    with pytest.raises(IntegrityError, match="config.json"):
        registry.verify("mine")


def test_an_empty_hash_is_refused_at_registration_and_in_the_registry(registry, digits_expert,
                                                                      tmp_path):
    import shutil

    folder = tmp_path / "blank"
    shutil.copytree(digits_expert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["rs_expert"]["weights_sha256"] = ""
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(IntegrityError, match="weights_sha256: missing"):
        registry.register(str(folder), "blank")
    assert "blank" not in registry.entries()
    entry = registry.register(digits_expert, "good").to_yaml()
    for key in ("config_sha256", "weights_sha256"):
        registry.user_file.write_text(yaml.safe_dump({"experts": {"old": {**entry, key: ""}}}))
        with pytest.raises(RegistryError, match=f"no {key}.*Re-register it"):
            registry.load("old")


def test_a_registered_name_wins_over_a_folder_of_that_name(registry, digits_expert, tmp_path,
                                                           monkeypatch):
    import shutil

    registry.register(digits_expert, "mine")
    shutil.copytree(digits_expert, tmp_path / "digits-sigma0.25")  # a folder named like the zoo
    config = json.loads((tmp_path / "digits-sigma0.25/config.json").read_text())
    monkeypatch.chdir(tmp_path)
    zoo = Registry(endpoint=registry.endpoint)  # the project's zoo lists digits-sigma0.25
    assert zoo.load("digits-sigma0.25").card.architecture == "cnn_small"  # the registered one
    assert zoo.load("./digits-sigma0.25").card.architecture == config["architecture"]


def test_a_router_on_a_hub_expert_pins_its_commit(server, mirrors, digits_expert,
                                                  digits_expert_wide, tmp_path, monkeypatch):
    """Router training resolves `hf://org/moving` (main) to a commit sha and records it; the
    router still loads that commit after main moves, and offline from the cache alone."""
    import shutil
    import subprocess

    from rsrouter.routing.load import load_routed
    from rsrouter.sources.publish import push_to_git

    remote = mirrors[0] / "models" / "org" / "moving"
    remote.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "-C", str(remote), "config", "receive.denyCurrentBranch",
                    "updateInstead"], check=True)
    first = push_to_git(digits_expert, str(remote))
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    config = {"experts": ["hf://org/moving", digits_expert_wide], "router": {"arch": "cnn_tiny"},
              "labels": {"n": 30, "alpha": 0.01, "subset": 100},
              "train": {"epochs": 1, "batch_size": 64}, "data": {"dataset": "digits"}}
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "router"
    assert main(["router", "train", "--config", str(tmp_path / "router.yaml"), "--out", str(out),
                 "--no-progress"]) == 0
    ref = json.loads((out / "config.json").read_text())["rs_router"]["experts"][0]
    assert ref["source"] == "hf://org/moving" and ref["revision"] == first
    moved = tmp_path / "moved"
    shutil.copytree(digits_expert, moved)
    card = json.loads((moved / "config.json").read_text())
    card["rs_expert"]["sigma"] = 0.5
    (moved / "config.json").write_text(json.dumps(card))
    assert push_to_git(moved, str(remote)) != first  # main moves to a sigma 0.5 card
    assert load_routed(out).experts[0].sigma == 0.25
    before = server.request_count()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    routed = load_routed(out)
    assert routed.experts[0].uri == f"hf://org/moving@{first}"
    assert server.request_count() == before
