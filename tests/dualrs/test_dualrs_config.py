"""The Dual RS config: every error names its key."""

from __future__ import annotations

import pytest
from helpers import ROOT, with_key
from test_dualrs_loop import CONFIG

from rsrouter.dualrs import load_dualrs_config, parse_dualrs_config
from rsrouter.errors import ConfigError


@pytest.mark.parametrize("path, value, message", [
    ("sigmas", KeyError, "sigmas: missing key"),
    ("sigmas", [0.5, 0.25], "sigmas: at least 2 increasing"),
    ("sigmas", [0.5], "sigmas: at least 2"),
    ("data.split", "validation", "data.split: Dual RS trains on the train split"),
    ("classifier.epochs", 0, "classifier.epochs"),
    ("classifier.sigma_weights", [1.0], "classifier.sigma_weights"),
    ("classifier.colour", 1, "classifier.colour: unknown key"),
    ("estimator.router.backbone", "sigma-0.5", "estimator.router.backbone"),
    ("estimator.router.sigma", 0.75, "must be a candidate sigma"),
    ("estimator.labels.n", 0, "estimator.labels.n"),
    ("validation.inputs", {"every": 0}, "validation: inputs.every"),
    ("validation.methods", [], "validation: a mapping of inputs, protocol and radii"),
    ("select", "luck", "select: one of acr, max_regret, claims"),
    ("certificate", "both", "certificate: one of pinned, set"),
    ("select", "claims", "select: claims needs validation.radii to include 0.5, 0.75 and 1"),
    ("estimator.labels.certify_n", 0, "estimator.labels.certify_n"),
    ("estimator.labels.cost", 1.0, "estimator.labels.cost: the Dual RS estimator shares no"),
    ("name", "a b", "name:"),
])
def test_errors_name_the_key(path, value, message):
    with pytest.raises(ConfigError, match=message):
        parse_dualrs_config(with_key(CONFIG, path, value))


@pytest.mark.parametrize("name", ["dualrs-fashion-mnist.yaml", "dualrs-fashion-mnist-claims.yaml",
                                  "dualrs-cifar10-paper.yaml"])
def test_the_shipped_configs_parse(name):
    path = ROOT / "benchmarks/configs" / name
    cfg = load_dualrs_config(path)
    assert cfg.sigmas == [0.25, 0.5, 1.0] and cfg.estimator.router.sigma == 1.0
    assert cfg.validation["protocol"]["alpha"] == 0.001


def test_claims_are_judged_on_the_grid_the_rounds_are_benchmarked_on():
    """Without validation.radii the rounds use the standard grid, which holds 0.5, 0.75 and 1:
    select: claims is accepted there, and refused on a grid without them."""
    validation = {k: v for k, v in CONFIG["validation"].items() if k != "radii"}
    cfg = parse_dualrs_config({**CONFIG, "select": "claims", "validation": validation})
    assert cfg.select == "claims"
    with pytest.raises(ConfigError, match="select: claims needs validation.radii"):
        parse_dualrs_config({**CONFIG, "select": "claims",
                             "validation": {**validation, "radii": [0.0, 0.5, 1.0]}})
