"""The router plugin config: errors name the key and the allowed values; plugins plug in."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from helpers import ROOT, with_key

from rsrouter.errors import ConfigError
from rsrouter.models import architecture_source, create_model
from rsrouter.routing.config import load_config, parse_config

BASE = {"experts": ["a", "b"], "data": {"dataset": "digits"}}


def test_defaults_follow_the_paper():
    cfg = parse_config(BASE)
    assert cfg.labels.n == 100 and cfg.labels.temperature == 1.0
    assert cfg.router.sigma is None  # -> the largest expert sigma
    assert cfg.train.optimizer == "adamw" and cfg.train.lr == 0.01
    assert cfg.train.weight_decay == 0.01 and cfg.train.epochs == 90
    assert cfg.train.schedule.milestones == [30, 60] and cfg.train.schedule.gamma == 0.5
    assert cfg.train.class_weights is True and cfg.train.noise_copies == 2
    assert cfg.to_dict()["train"]["consistency"] == {"lambda": 0.0, "eta": 0.0}


@pytest.mark.parametrize("raw, message", [
    ({"data": {"dataset": "digits"}}, "experts: missing key"),
    ({"experts": ["a", "b"]}, "data: missing key"),
    (with_key(BASE, "experts", ["a"]), "at least 2"),
    (with_key(BASE, "experts", ["a", "a"]), "duplicates"),
    (with_key(BASE, "router.sigma", 0), "router.sigma: must be > 0"),
    (with_key(BASE, "router.sigma", -1.0), "router.sigma: must be > 0"),
    (with_key(BASE, "router.arch", "no_such_net"), "router.arch: unknown architecture"),
    (with_key(BASE, "router.colour", "red"),
     r"router.colour: unknown key; allowed: arch, backbone, frozen, sigma"),
    (with_key(BASE, "router.backbone", "c"), r"router.backbone: 'c' must be one of experts"),
    (with_key(BASE, "labels.n", 0), "labels.n: must be an integer >= 1"),
    (with_key(BASE, "labels.n", "many"), "labels.n: must be an integer"),
    (with_key(BASE, "labels.alpha", 2), r"labels.alpha: must be in \(0, 1\)"),
    (with_key(BASE, "train.optimizer", "lion"), "train.optimizer: 'lion' is not one of"),
    (with_key(BASE, "train.schedule.type", "cyclic"), "train.schedule.type"),
    (with_key(BASE, "train.consistency.lambda", -1), "train.consistency.lambda"),
    (with_key(BASE, "train.consistency", {"lambda": 1.0, "eta": 0.5, "beta": 2}),
     "allowed: eta, lambda"),
    (with_key(BASE, "train.class_weights", "yes"), "train.class_weights: must be true or false"),
    (with_key(BASE, "data.split", "val"), "data.split"),
    (with_key(BASE, "data.split", "validation"), "data.split: a router learns on train"),
    ({**BASE, "sed": 1}, "sed: unknown key"),
])
def test_config_errors_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_consistency_needs_two_copies():
    raw = with_key(BASE, "train.consistency", {"lambda": 1.0})
    raw["train"]["noise_copies"] = 1
    with pytest.raises(ConfigError, match="noise_copies"):
        parse_config(raw)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("experts: [a, b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump(with_key(BASE, "labels.n", 0)))
    with pytest.raises(ConfigError, match=r"wrong.yaml: labels.n"):
        load_config(tmp_path / "wrong.yaml")


def test_shipped_example_configs_are_valid():
    from rsrouter.bench.config import load_bench_config

    configs = sorted((ROOT / "benchmarks" / "configs").glob("*.yaml"))
    names = {p.name for p in configs}
    assert {"fashion-mnist.yaml", "digits.yaml", "cifar10-cohen-resnet110.yaml",
            "bench-fashion-mnist.yaml", "bench-digits.yaml"} <= names
    for path in configs:
        if path.name.startswith("bench-"):
            assert len(load_bench_config(path).methods) >= 2
        elif path.name.startswith("dualrs-"):
            from rsrouter.dualrs import load_dualrs_config

            assert len(load_dualrs_config(path).sigmas) >= 2
        else:
            assert len(load_config(path).experts) >= 2


PLUGIN = Path(__file__).parent / "plugins" / "tinyplugin"


def test_entry_point_plugin_and_module_factory(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(PLUGIN))  # as if `pip install tests/plugins/tinyplugin`
    net = create_model("tiny_mlp", 3, (1, 8, 8))
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    assert architecture_source("tiny_mlp") == "plugin"
    assert parse_config(with_key(BASE, "router.arch", "tiny_mlp")).router.arch == "tiny_mlp"
    spec = "rsrouter_tinyplugin:tiny_mlp"
    assert create_model(spec, 4, (1, 8, 8), trust_code=True)(torch.rand(1, 1, 8, 8)).shape == \
        (1, 4)
    # the user's own config
    assert parse_config(with_key(BASE, "router.arch", spec)).router.arch == spec
    # the same resolution serves expert cards: an expert of a plugin architecture round-trips
    from rsrouter.cards.expert import ExpertCard
    from rsrouter.registry.expert import load_expert_folder
    from rsrouter.registry.weights import save_expert

    card = ExpertCard("tiny_mlp", 10, (1, 8, 8), (0.3,), (0.4,), 0.25, "digits",
                      arch_source="plugin")
    save_expert(tmp_path / "e", create_model("tiny_mlp", 10, (1, 8, 8)), card)
    expert = load_expert_folder(tmp_path / "e")
    assert expert.card.architecture == "tiny_mlp"
    assert expert.certify(torch.rand(1, 8, 8), 10, 20, 0.1).n == 20
