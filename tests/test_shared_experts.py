"""Weights that serve several sigmas: one card, an expert per (weights, sigma), built once."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from rsrouter.cards.expert import read_card
from rsrouter.cards.header import ResizeSpec
from rsrouter.cards.refs import split_sigma
from rsrouter.cli import main
from rsrouter.errors import CardError, RegistryError, SigmaNotServedError, UnknownExpertError
from rsrouter.registry import expert as expert_module
from rsrouter.registry.core import Registry
from rsrouter.registry.expert import load_expert_folder
from rsrouter.routing.load import load_routed
from rsrouter.training.expert import TrainConfig, train_expert
from rsrouter.training.fit import CHECKPOINT


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "project.yaml", tmp_path / "user.yaml")


def test_the_card_serves_each_sigma_and_names_none_by_default(digits_shared):
    card = read_card(digits_shared)
    assert card.sigma is None and card.sigmas == (0.25, 0.5) and card.shared
    assert card.training["noise_sigma"] == [0.25, 0.5] and "drawn per example" in \
        card.training["method"]
    assert card.at_sigma(0.5).sigma == 0.5 and card.at_sigma(0.5).sigmas == (0.25, 0.5)
    with pytest.raises(SigmaNotServedError, match=r"REF#sigma=0.5"):
        card.at_sigma(None)
    with pytest.raises(SigmaNotServedError, match=r"not served.*\[0.25, 0.5\]"):
        card.at_sigma(1.0)
    with pytest.raises(SigmaNotServedError):
        load_expert_folder(digits_shared)  # which sigma? the load must say


@pytest.mark.parametrize("change, message", [
    (lambda rs: rs.update(sigmas=[0.5, 0.25]), "must increase strictly"),
    (lambda rs: rs.update(sigmas=[0.25, -1.0]), "positive numbers"),
    (lambda rs: rs.update(sigma=1.0), "not among rs_expert.sigmas"),
    (lambda rs: rs.pop("sigmas"), "missing field rs_expert.sigma"),
    (lambda rs: rs.update(kind="denoised"), "names its denoiser"),
    (lambda rs: rs.update(kind="diffusion"), "kind must be one of"),
])
def test_card_schema_of_several_sigmas(digits_shared, tmp_path, change, message):
    folder = tmp_path / "e"
    shutil.copytree(digits_shared, folder)
    config = json.loads((folder / "config.json").read_text())
    change(config["rs_expert"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CardError, match=message):
        read_card(folder)


def test_weights_are_built_once_for_every_sigma(digits_shared, registry, monkeypatch):
    built = []
    real = expert_module.build_network
    monkeypatch.setattr(expert_module, "build_network", lambda *a, **k: built.append(1) or
                        real(*a, **k))
    low = registry.load(f"{digits_shared}#sigma=0.25")
    high = registry.load(digits_shared, sigma=0.5)
    assert len(built) == 1  # the same bytes (by sha256): one network
    assert low.base_model is high.base_model
    assert (low.sigma, high.sigma) == (0.25, 0.5)
    assert low.name == "digits-shared-sigma0.25" and high.name == "digits-shared-sigma0.50"
    assert low.pin == high.pin
    x = torch.rand(4, 1, 8, 8)
    a = low.sample_counts(x, 200, batch_size=400, seed=0, indices=range(4), stage="estimate")
    b = high.sample_counts(x, 200, batch_size=400, seed=0, indices=range(4), stage="estimate")
    assert not torch.equal(a, b)  # the same network smoothed at two noise levels
    with pytest.raises(UnknownExpertError, match="give one"):
        registry.load(f"{digits_shared}#sigma=0.25", sigma=0.5)
    with pytest.raises(SigmaNotServedError):
        registry.load(f"{digits_shared}#sigma=1")


def test_reference_suffix():
    assert split_sigma("fm-dualrs#sigma=0.5") == ("fm-dualrs", 0.5)
    assert split_sigma("hf://org/name@v1#sigma=1") == ("hf://org/name@v1", 1.0)
    assert split_sigma("plain") == ("plain", None)
    with pytest.raises(UnknownExpertError, match="REF#sigma=0.5"):
        split_sigma("x#sigma=half")


def test_registering_records_every_sigma(digits_shared, registry):
    entry = registry.register(digits_shared, "dshared")
    assert entry.sigma is None and entry.sigmas == [0.25, 0.5]
    low, high = registry.load("dshared#sigma=0.25"), registry.load("dshared#sigma=0.5")
    assert (low.name, high.name) == ("dshared-sigma0.25", "dshared-sigma0.50")  # one per sigma
    assert high.sigma == 0.5
    assert registry.verify("dshared").sigmas == (0.25, 0.5)
    with pytest.raises(RegistryError, match="not one of their sigmas"):
        registry.register(f"{digits_shared}#sigma=0.5", "other")


def test_a_router_over_one_classifier_at_two_sigmas(digits_shared, tmp_path):
    from rsrouter.routing.config import parse_config
    from rsrouter.training.router import train_router

    refs = [f"{digits_shared}#sigma=0.25", f"{digits_shared}#sigma=0.5"]
    cfg = parse_config({"experts": refs, "data": {"dataset": "digits"},
                        "router": {"arch": "cnn_tiny"},
                        "labels": {"n": 20, "alpha": 0.01, "subset": 200},
                        "train": {"epochs": 1, "batch_size": 64, "class_weights": False}})
    out = train_router(cfg, tmp_path / "router", progress=False)
    routed = load_routed(out)
    a, b = routed.experts
    assert a.base_model is b.base_model and (a.sigma, b.sigma) == (0.25, 0.5)
    records = json.loads((out / "config.json").read_text())["rs_router"]["experts"]
    assert [r["sigma"] for r in records] == [0.25, 0.5]
    assert records[0]["weights_sha256"] == records[1]["weights_sha256"]
    cert = routed.certify(torch.rand(1, 8, 8), n0=20, n=200, alpha=0.01, batch_size=400)
    assert cert.abstained or cert.radius == min(cert.router_radius, cert.expert_radius)
    assert cert.expert_name in (a.name, b.name)


def test_training_across_sigmas_resumes_to_the_same_weights(tmp_path):
    cfg = TrainConfig("digits", "cnn_tiny", sigmas=(0.25, 0.5, 1.0), sigma_weights=(1, 1, 2),
                      noise_copies=2, consistency_lambda=1.0, consistency_eta=0.5, epochs=2,
                      batch_size=64)
    straight = train_expert(cfg, tmp_path / "straight", progress=False)
    resumed = tmp_path / "resumed"
    train_expert(cfg, resumed, progress=False, stop_after_epoch=1)
    assert (resumed / CHECKPOINT).is_file()
    train_expert(cfg, resumed, progress=False)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # per-example sigmas drawn from the seeds
    card = read_card(straight)
    assert card.sigmas == (0.25, 0.5, 1.0) and "consistency" in card.training["method"]
    assert card.training["settings"]["sigma_weights"] == [1, 1, 2]


def test_fine_tuning_on_assigned_sigmas(digits_shared, tmp_path):
    from rsrouter.data import load_dataset

    train = load_dataset("digits", "train")
    cfg = TrainConfig("digits", "cnn_tiny", sigmas=(0.25, 0.5), epochs=1, batch_size=64,
                      lr=0.01, init=digits_shared)
    with pytest.raises(ValueError, match="one sigma index"):
        train_expert(cfg, tmp_path / "bad", progress=False, assigned=torch.zeros(3).long())
    assigned = (torch.arange(len(train)) % 2).long()
    out = train_expert(cfg, tmp_path / "ft", progress=False, assigned=assigned, dataset=train)
    card = read_card(out)
    odd = len(train) % 2 / len(train)  # index 0 is even: sigma 0.25 gets the extra one
    assert card.training["assigned_share"] == {"0.25": round(0.5 + odd / 2, 4),
                                               "0.5": round(0.5 - odd / 2, 4)}
    assert card.training["init"]["weights_sha256"] == read_card(digits_shared).weights_sha256
    assert "estimator assigns" in card.training["method"]
    again = TrainConfig("digits", "cnn_tiny", sigmas=(0.25, 0.5), epochs=1, batch_size=64,
                        lr=0.01, init=digits_shared)
    from rsrouter.errors import ResumeError

    with pytest.raises(ResumeError):  # other assigned sigmas are other settings
        train_expert(again, out, progress=False, assigned=1 - assigned, dataset=train)


def test_cli_trains_across_sigmas_and_certifies_one(tmp_path, capsys):
    out = tmp_path / "cls"
    main(["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigmas",
          "0.25,0.5", "--epochs", "1", "--out", str(out), "--no-progress"])
    assert read_card(out).sigmas == (0.25, 0.5)
    tsv = tmp_path / "c.tsv"
    main(["certify", "--dataset", "digits", "--model", str(out), "--sigma", "0.5", "--n0", "10",
          "--n", "50", "--max-index", "3", "--out", str(tsv), "--no-progress"])
    lines = tsv.read_text().splitlines()
    assert len(lines) == 4 and all(line.split("\t")[lines[0].split("\t").index("sigma")] == "0.5"
                                   for line in lines[1:])
    assert main(["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigma",
                 "0.5", "--sigmas", "0.25,0.5", "--out", str(tmp_path / "x")]) == 2
    assert main(["experts", "train", "--dataset", "digits", "--arch", "cnn_tiny", "--sigmas",
                 "0.5,0.25", "--out", str(tmp_path / "x")]) == 2  # not increasing
    assert "increase strictly" in capsys.readouterr().err
    assert main(["experts", "certify-card", str(out), "--out", str(tmp_path / "cc.tsv")]) == 2
    assert "serves several sigmas" in capsys.readouterr().err


def test_training_from_a_card_keeps_its_normalization_and_resize(tmp_path):
    """--init from a card whose network takes resized, differently normalized inputs: the new
    card keeps both (a timm ViT at 224 would not even run without the resize)."""
    from rsrouter.models import create_model
    from rsrouter.registry.importers import import_checkpoint

    torch.manual_seed(0)
    torch.save(create_model("cnn_tiny", 10, (1, 16, 16)).state_dict(), tmp_path / "net.pt")
    base = import_checkpoint(tmp_path / "net.pt", tmp_path / "base", fmt="state_dict",
                             sigma=0.25, dataset="digits", arch="cnn_tiny",
                             resize=ResizeSpec((16, 16), "bilinear", True), mean=(0.4,),
                             std=(0.3,))
    cfg = TrainConfig("digits", "cnn_tiny", sigmas=(0.25, 0.5), epochs=1, batch_size=64,
                      lr=0.01, init=str(base), train_size=128)
    card = read_card(train_expert(cfg, tmp_path / "ft", progress=False))
    assert (card.mean, card.std) == ((0.4,), (0.3,))
    assert card.resize == ResizeSpec((16, 16), "bilinear", True)
    expert = load_expert_folder(tmp_path / "ft", sigma=0.5)
    assert expert.model.resize.antialias and expert.model.resize.size == (16, 16)
