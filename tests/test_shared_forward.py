"""A router that is a head on an expert's frozen features (router.frozen): trained without
touching those features, loaded on the very module of the expert, counted in one forward pass
for both, with counts equal to separate passes; its bench cost counts that pass once."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from rsrouter.bench.methods import routed_frame
from rsrouter.certify.smoothing import shared_counts
from rsrouter.cli import main
from rsrouter.errors import ConfigError, IntegrityError
from rsrouter.results.tsv import read_tsv
from rsrouter.routing.config import parse_config
from rsrouter.routing.load import load_routed


@pytest.fixture
def head_router(tmp_path, digits_expert, digits_expert_wide):
    """A head on d050's features (cnn_tiny, sigma 0.5), choosing between d025 and d050."""
    for folder, name in ((digits_expert, "d025"), (digits_expert_wide, "d050")):
        assert main(["experts", "register", folder, "--name", name]) == 0
    config = tmp_path / "router.yaml"
    config.write_text(yaml.safe_dump({
        "experts": ["d025", "d050"],
        "router": {"arch": "cnn_tiny", "sigma": 0.5, "backbone": "d050", "frozen": True},
        "labels": {"n": 30, "alpha": 0.01, "subset": 200},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01}, "data": {"dataset": "digits"}}))
    assert main(["router", "train", "--config", str(config), "--out",
                 str(tmp_path / "router"), "--no-progress"]) == 0
    return tmp_path / "router", digits_expert_wide


def test_frozen_needs_a_backbone():
    with pytest.raises(ConfigError, match="router.frozen"):
        parse_config({"experts": ["a", "b"], "router": {"arch": "cnn_tiny", "frozen": True},
                      "data": {"dataset": "digits"}})


def test_the_head_trains_on_untouched_features_and_loads_on_the_experts_module(head_router):
    router_dir, expert_dir = head_router
    card = json.loads((router_dir / "config.json").read_text())["rs_router"]
    assert card["shares_forward_with"] == "d050"
    mine, theirs = (load_file(f"{d}/model.safetensors") for d in (router_dir, expert_dir))
    features = [k for k in theirs if k.startswith("features.")]
    assert features and all(torch.equal(mine[k], theirs[k]) for k in features)  # BN stats too
    assert not torch.equal(mine["head.3.weight"][:2], theirs["head.3.weight"][:2])
    routed = load_routed(router_dir)
    router, expert = routed.router, routed.experts[1]
    assert router.trunk_owner is expert
    assert router.model.net.features is expert.model.net.features


def test_training_passes_the_label_cost_and_the_shared_expert(head_router, tmp_path,
                                                               monkeypatch):
    """labels.cost reaches the training targets with the index of the expert whose pass the head
    shares (d050, the second), and the card records it. Same labels (the cache is copied)."""
    import shutil

    from rsrouter.routing.labels import RouterLabels

    seen, original = [], RouterLabels.soft_labels

    def spy(self, *args, **kwargs):
        seen.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(RouterLabels, "soft_labels", spy)
    router_dir, _ = head_router
    config = yaml.safe_load((tmp_path / "router.yaml").read_text())
    config["labels"]["cost"] = 2.0
    (tmp_path / "cost.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(router_dir / ".labels", tmp_path / "cost" / ".labels")
    assert main(["router", "train", "--config", str(tmp_path / "cost.yaml"), "--out",
                 str(tmp_path / "cost"), "--no-progress"]) == 0
    assert seen == [{"cost": 2.0, "shared": 1}]
    card = json.loads((tmp_path / "cost" / "config.json").read_text())["rs_router"]
    plain = json.loads((router_dir / "config.json").read_text())["rs_router"]
    assert card["labels"]["cost"] == 2.0 and "cost" not in plain["labels"]


def test_one_forward_pass_gives_both_votes_and_the_counts_of_separate_passes(head_router):
    router_dir, _ = head_router
    routed = load_routed(router_dir)
    router, expert = routed.router, routed.experts[1]
    rows = []
    expert.model.net.features.register_forward_hook(lambda m, i, o: rows.append(len(i[0])))
    xs = torch.rand(6, 1, 8, 8)
    mask = torch.tensor([True, False, True, True, False, True])
    kw = dict(batch_size=500, seed=2, indices=list(range(6)), stage="estimate")
    both = shared_counts([(router, None), (expert, mask)], xs, 300, **kw)
    assert sum(rows) == 6 * 300  # the trunk ran once per noisy copy, for both
    rows.clear()
    alone = [shared_counts([(m, k)], xs, 300, **kw)[0] for m, k in ((router, None),
                                                                    (expert, mask))]
    assert sum(rows) == 6 * 300 + 4 * 300
    assert all(torch.equal(a, b) for a, b in zip(both, alone))


def test_a_router_whose_features_were_changed_is_refused(head_router, tmp_path):
    from safetensors.torch import save_file

    from rsrouter.cards.router import RouterCard, write_router_card
    from rsrouter.files import sha256_file

    router_dir, _ = head_router
    tensors = load_file(router_dir / "model.safetensors")
    tensors["features.0.weight"] = tensors["features.0.weight"] * 1.001
    save_file(tensors, router_dir / "model.safetensors")
    raw = json.loads((router_dir / "config.json").read_text())
    card = RouterCard.from_config(raw, "config.json")
    card.weights_sha256 = sha256_file(router_dir / "model.safetensors")
    write_router_card(router_dir, card)
    with pytest.raises(IntegrityError, match="feature layers differ"):
        load_routed(router_dir)


def test_the_bench_counts_the_shared_pass_once(head_router, tmp_path):
    router_dir, _ = head_router
    config = {"name": "head", "data": {"dataset": "digits"}, "inputs": {"every": 40},
              "protocol": {"n0": 20, "n": 200, "alpha": 0.01, "seed": 3, "batch_size": 1000},
              "radii": [0.0, 0.25], "methods": [
                  {"type": "expert", "expert": "d025"}, {"type": "expert", "expert": "d050"},
                  {"type": "router", "router": str(router_dir), "name": "head",
                   "chosen_on": "train"},
                  {"type": "router", "router": str(router_dir), "name": "head-lazy",
                   "certificate": "lazy-set", "chosen_on": "train"},
                  {"type": "router", "router": str(router_dir), "name": "head-fallback",
                   "certificate": "lazy-set+cascade", "fallback_share": 0.2,
                   "chosen_on": "train"}]}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    pinned = read_tsv(out / "head.tsv")
    one = 20 + 200
    on_shared = (pinned["expert"] == "d050").to_numpy()
    assert on_shared.any()
    assert (pinned.loc[on_shared, "forwards"] == one).all()  # the router rode on d050's pass
    assert (pinned.loc[pinned["expert"] == "d025", "forwards"] == 2 * one).all()
    # without the shared pass the same rows cost a router pass more
    frames = {p.name.split("-")[0]: p for p in (out / "counts").glob("*.tsv")}
    from rsrouter.bench.counts import read_counts

    router_counts = read_counts(frames["head"])
    experts = [read_counts(frames[n]) for n in ("d025", "d050")]
    unshared = routed_frame(router_counts, experts, ["d025", "d050"], 0.01, 0.5, 0.5)
    assert (unshared["forwards"] - pinned["forwards"].to_numpy() >= 0).all()
    assert (unshared.loc[on_shared, "forwards"] == 2 * one).all()
    pd.testing.assert_series_equal(unshared["radius"], pinned["radius"], check_names=False)
    lazy = read_tsv(out / "head-lazy.tsv")
    assert (lazy["forwards"] >= 20 * 2).all() and (lazy["forwards"] <= 2 * one + 20).all()
    # router, then cascade: both experts' selection draws (the router rides on d050's), one
    # trunk pass of the estimation draws (router or d050), and d025's where it was evaluated
    fallback = read_tsv(out / "head-fallback.tsv")
    d025 = fallback["evaluated"].map(lambda v: v.split(",")[0] == "1").to_numpy()
    assert (fallback["forwards"].to_numpy() == 2 * 20 + 200 + 200 * d025).all()
    assert (fallback["fallback_share"] == 0.2).all()


def test_the_card_names_the_certificate_certify_and_bench_use(head_router, tmp_path, capsys):
    router_dir, _ = head_router
    assert main(["router", "certificate", str(router_dir), "--kind", "set", "--margin", "1",
                 "--chosen-on", "x"]) == 2
    assert "--margin applies to --kind lazy-set" in capsys.readouterr().err
    assert main(["router", "certificate", str(router_dir), "--kind", "lazy-set",
                 "--fallback-share", "0.2", "--chosen-on", "x"]) == 2
    assert "--fallback-share applies to --kind lazy-set+cascade only" in \
        capsys.readouterr().err
    assert main(["router", "certificate", str(router_dir), "--kind", "lazy-set", "--margin",
                 "0.2", "--alpha-split", "0.4", "--chosen-on", "validation run v"]) == 0
    card = json.loads((router_dir / "config.json").read_text())["rs_router"]["certificate"]
    assert card == {"kind": "lazy-set", "alpha_split": 0.4, "chosen_on": "validation run v",
                    "margin": 0.2}
    assert "## Certificate" in (router_dir / "README.md").read_text()
    args = ["--dataset", "digits", "--max", "3", "--n0", "20", "--n", "100", "--alpha", "0.01",
            "--no-progress"]
    assert main(["certify", "--router", str(router_dir), "--out", str(tmp_path / "c.tsv"),
                 *args]) == 0
    rows = read_tsv(tmp_path / "c.tsv")
    assert (rows["margin"] == 0.2).all() and "counted" in rows
    assert (rows["alpha_router"] <= 0.004 + 1e-12).all()  # 0.4 of alpha 0.01
    routed = load_routed(router_dir)
    certs = routed.certify_batch(torch.rand(2, 1, 8, 8), 20, 100, 0.01, batch_size=500)
    assert certs[0].margin == 0.2 and routed.alpha_split == 0.4
    pinned = routed.certify_batch(torch.rand(2, 1, 8, 8), 20, 100, 0.01, batch_size=500,
                                  certificate="pinned")
    assert not hasattr(pinned[0], "margin")


def test_the_live_pinned_path_runs_the_shared_trunk_once_per_draw(head_router):
    router_dir, _ = head_router
    routed = load_routed(router_dir)
    owner = routed.experts[1]
    rows = []
    owner.model.net.features.register_forward_hook(lambda m, i, o: rows.append(len(i[0])))
    xs = torch.rand(5, 1, 8, 8)
    certs = routed.certify_batch(xs, 20, 200, 0.01, batch_size=500, certificate="pinned")
    on_owner = sum(c.expert_name == "d050" for c in certs)
    assert on_owner == 5  # this router sends every input to the expert it rides on
    assert sum(rows) == 5 * (20 + 200)  # selection and estimation: one trunk pass per draw
    rows.clear()  # router, then cascade: the cascade finds d050's counts on the router's pass
    certs = routed.certify_batch(xs, 20, 200, 0.01, batch_size=500,
                                 certificate="lazy-set+cascade")
    assert sum(rows) == 5 * (20 + 200) and all(c.evaluated[1] for c in certs)
