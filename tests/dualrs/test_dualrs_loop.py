"""Dual RS rounds on digits: the whole loop (train across sigmas, label, estimator, fine-tune on
the estimator's sigmas, validation bench per round) in seconds, resumed between rounds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from rsrouter.cards.expert import read_card
from rsrouter.cards.router import read_router_card
from rsrouter.cli import main
from rsrouter.dualrs import export_round, parse_dualrs_config, train_dualrs
from rsrouter.errors import ConfigError, ResumeError
from rsrouter.results.tsv import read_tsv
from rsrouter.routing.load import load_routed

CONFIG = {
    "name": "digits-dualrs-test",
    "data": {"dataset": "digits"},
    "sigmas": [0.25, 0.5],
    "classifier": {"arch": "cnn_tiny", "epochs": 3, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "lr": 0.01, "assign_samples": 8},
    "estimator": {"router": {"arch": "cnn_tiny", "backbone": "classifier"},
                  "labels": {"n": 20, "alpha": 0.01, "subset": 300, "batch_size": 1000},
                  "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "class_weights": False}},
    "validation": {"inputs": {"first": 20},
                   "protocol": {"n0": 20, "n": 200, "alpha": 0.01, "batch_size": 1000},
                   "radii": [0.0, 0.25, 0.5]},
    "seed": 0,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Round 0 alone, then the same command with 2 rounds (resumes after round 0)."""
    out = tmp_path_factory.mktemp("dualrs") / "run"
    path = out.parent / "dualrs.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    args = ["dualrs", "train", "--config", str(path), "--out", str(out), "--no-progress"]
    assert main([*args, "--rounds", "1"]) == 0
    stamps = {p: p.stat().st_mtime_ns for p in (out / "round-0").rglob("*") if p.is_file()}
    assert main([*args, "--rounds", "2"]) == 0
    return out, path, stamps


def test_every_round_is_a_consistent_system_benchmarked_on_validation(run):
    out, _, _ = run
    doc = json.loads((out / "rounds.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [0, 1] and doc["split"] == "validation"
    assert doc["best_round"] in (0, 1) and (out / "rounds.md").is_file()
    assert (out / "rounds.png").stat().st_size > 1000
    for k in (0, 1):
        rdir = out / f"round-{k}"
        classifier = read_card(rdir / "classifier")
        assert classifier.sigmas == (0.25, 0.5)
        estimator = read_router_card(rdir / "estimator")
        # the estimator routes the classifier it was labelled on, one expert per sigma
        assert [e.sigma for e in estimator.experts] == [0.25, 0.5]
        assert {e.weights_sha256 for e in estimator.experts} == {classifier.weights_sha256}
        assert estimator.training["backbone"]["weights_sha256"] == classifier.weights_sha256
        bench = json.loads((rdir / "bench" / "bench.json").read_text())
        assert bench["config"]["split"] == "validation"
        for method in ("sigma-0.25", "sigma-0.5", "dualrs", "dualrs-set", "multiscale"):
            rows = read_tsv(rdir / "bench" / f"{method}.tsv")  # radii recomputed from counts
            assert len(rows) == 20
        routed = read_tsv(rdir / "bench" / "dualrs.tsv")
        ok = routed["predict"] >= 0
        assert (routed.loc[ok, "radius"] <= routed.loc[ok, "router_radius"] + 1e-12).all()
        assert doc["rounds"][k]["methods"]["dualrs"]["ACR"] >= 0


def test_round_one_fine_tunes_on_the_estimators_sigmas(run):
    out, _, _ = run
    card = read_card(out / "round-1" / "classifier")
    assert card.training["init"]["weights_sha256"] == read_card(
        out / "round-0" / "classifier").weights_sha256
    share = card.training["assigned_share"]
    assert set(share) == {"0.25", "0.5"} and abs(sum(share.values()) - 1) < 1e-3
    assert (out / "round-1" / "assigned.safetensors").is_file()


def test_a_finished_round_is_not_redone(run):
    out, _, stamps = run
    assert stamps and all(p.stat().st_mtime_ns == t for p, t in stamps.items()
                          if p.name != ".lock")


def test_another_config_is_refused_in_the_same_folder(run, tmp_path):
    out, _, _ = run
    other = parse_dualrs_config({**CONFIG, "seed": 1})
    with pytest.raises(ResumeError, match="another config"):
        train_dualrs(other, out, rounds=1, progress=False)


def test_export_bundles_a_loadable_pair(run, tmp_path):
    out, _, _ = run
    cls, est = export_round(out, 1, tmp_path / "bundle" / "classifier",
                            tmp_path / "routers" / "dualrs")
    routed = load_routed(est)
    assert [e.sigma for e in routed.experts] == [0.25, 0.5]
    assert Path(routed.experts[0].uri).resolve() == cls.resolve()
    assert routed.experts[0].base_model is routed.experts[1].base_model
    assert os.path.relpath(cls.resolve(), est.resolve()) == read_router_card(
        est).experts[0].source


def test_rounds_on_two_ranks_with_torchrun(tmp_path):
    """torchrun: the rounds run sharded (DDP training, sharded labels and count passes) and give
    every round's files; the bench TSVs pass the reader's recomputation."""
    from test_distributed import torchrun

    (tmp_path / "dualrs.yaml").write_text(yaml.safe_dump(CONFIG))
    done = torchrun("dualrs", "train", "--config", "dualrs.yaml", "--rounds", "2", "--out", "run",
                    "--no-progress", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best round on validation") == 1  # rank 0 speaks
    doc = json.loads((tmp_path / "run" / "rounds.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [0, 1]
    for k in (0, 1):
        assert len(read_tsv(tmp_path / "run" / f"round-{k}" / "bench" / "dualrs.tsv")) == 20
    assert not list((tmp_path / "run").rglob("*.part*"))  # every shard merged
    # the sharded assignment equals one process's on the same estimator
    from safetensors.torch import load_file

    from rsrouter.data import load_dataset
    from rsrouter.dualrs.loop import assign_sigmas
    from rsrouter.routing.load import load_router

    sharded = load_file(tmp_path / "run" / "round-1" / "assigned.safetensors")["assigned"]
    alone = assign_sigmas(load_router(tmp_path / "run" / "round-0" / "estimator"),
                          load_dataset("digits", "train"), CONFIG["finetune"]["assign_samples"],
                          seed=CONFIG["seed"], progress=False)
    assert (sharded >= 0).all() and (sharded == alone).all()


def test_a_round_interrupted_in_its_benchmark_finishes_on_rerun(tmp_path, monkeypatch):
    import rsrouter.dualrs.loop as loop

    cfg = parse_dualrs_config({**CONFIG, "classifier": {**CONFIG["classifier"], "epochs": 1}})
    real = loop.run_bench

    def crash(*a, **k):
        raise KeyboardInterrupt  # as a killed process: the round's models are saved, no bench

    monkeypatch.setattr(loop, "run_bench", crash)
    with pytest.raises(KeyboardInterrupt):
        train_dualrs(cfg, tmp_path / "run", rounds=1, progress=False)
    assert (tmp_path / "run/round-0/estimator/model.safetensors").is_file()
    assert not (tmp_path / "run/round-0/round.json").exists()
    stamp = (tmp_path / "run/round-0/estimator/model.safetensors").stat().st_mtime_ns
    monkeypatch.setattr(loop, "run_bench", real)
    (result,) = train_dualrs(cfg, tmp_path / "run", rounds=1, progress=False)
    assert (tmp_path / "run/round-0/estimator/model.safetensors").stat().st_mtime_ns == stamp
    assert result.rows["dualrs"]["ACR"] >= 0 and (tmp_path / "run/round-0/round.json").is_file()


def test_round_zero_from_a_pretrained_classifier_judged_by_the_claims(run, tmp_path):
    """classifier.pretrained: round 0 copies (and checks) the given card instead of training;
    select: claims on the set certificate picks the round by the paper's claims."""
    from rsrouter.dualrs.rounds import best_round, claims_margin

    out, _, _ = run
    src = out / "round-1" / "classifier"
    raw = {**CONFIG, "classifier": {**CONFIG["classifier"], "pretrained": "../src"},
           "select": "claims", "certificate": "set",
           "validation": {**CONFIG["validation"], "radii": [0.0, 0.25, 0.5, 0.75, 1.0]}}
    import shutil

    shutil.copytree(src, tmp_path / "src")
    (tmp_path / "cfg").mkdir()
    cfg = parse_dualrs_config(raw, str(tmp_path / "cfg" / "dualrs.yaml"))
    assert cfg.classifier.pretrained == "../src"  # as written: the run's sha is cwd-free
    (result,) = train_dualrs(cfg, tmp_path / "run", rounds=1, progress=False)
    assert not (tmp_path / "run/round-0/classifier.tmp").exists()
    copied = read_card(tmp_path / "run/round-0/classifier")
    assert copied.weights_sha256 == read_card(src).weights_sha256
    assert not (tmp_path / "run/round-0/classifier/.train").exists()  # nothing was trained
    assert copied.training == read_card(src).training  # the card is the source's, not retrained
    doc = json.loads((tmp_path / "run/rounds.json").read_text())
    assert doc["judged"] == "dualrs-set" and doc["best_round"] == 0
    assert doc["rounds"][0]["claims_margin"] == claims_margin(result, "dualrs-set")
    assert best_round(cfg, [result]) == 0

    # a pretrained card serving other sigmas, or tampered weights, is refused
    bad = parse_dualrs_config({**raw, "sigmas": [0.25, 0.5, 1.0]},
                              str(tmp_path / "cfg" / "dualrs.yaml"))
    with pytest.raises(ConfigError, match="serving sigmas"):
        train_dualrs(bad, tmp_path / "run-bad", rounds=1, progress=False)
    weights = tmp_path / "src" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    from rsrouter.errors import IntegrityError

    with pytest.raises(IntegrityError):
        train_dualrs(cfg, tmp_path / "run-tampered", rounds=1, progress=False)


def test_claims_margin_is_the_worst_of_the_two_claims():
    from rsrouter.dualrs.rounds import RoundResult, best_round, claims_margin

    def rows(dual, cascade):
        grid = ("r=0", "r=0.5", "r=0.75", "r=1", "r=2")
        table = {"sigma-0.25": [90, 70, 0, 0, 0], "sigma-1": [80, 70, 65, 60, 30],
                 "multiscale": cascade, "dualrs": dual, "dualrs-set": dual}
        return {name: {**dict(zip(grid, v)), "ACR": sum(v) / 100} for name, v in table.items()}

    good = RoundResult(0, Path("c"), Path("e"), Path("b"),
                       rows([84, 72, 66, 61, 30], [81, 70, 65, 60, 30]))
    # gains: over sigma 0.25 +66 at r=0.75 -> 64; over sigma 1 +4 at r=0 -> 2; cascade +2, +1, +1
    assert claims_margin(good) == 1.0
    bad = RoundResult(1, Path("c"), Path("e"), Path("b"),
                      rows([85, 75, 70, 59, 30], [81, 70, 65, 60, 30]))
    assert claims_margin(bad) == -1.0  # below the cascade at r = 1, though its ACR is larger
    cfg = parse_dualrs_config({**CONFIG, "select": "claims", "validation": {
        **CONFIG["validation"], "radii": [0.0, 0.5, 0.75, 1.0, 2.0]}})
    assert best_round(cfg, [good, bad]) == 0
    assert best_round(parse_dualrs_config({**CONFIG, "select": "acr"}), [good, bad]) == 1


def test_the_certificate_the_config_judges_picks_the_round():
    """certificate: set judges the dualrs-set row, pinned the dualrs row: with rounds where the
    two disagree, the two configs pick different rounds."""
    from rsrouter.dualrs.rounds import RoundResult, best_round, dualrs_method

    def rows(pinned, set_):
        grid = ("r=0", "r=0.5", "r=1")
        table = {"sigma-0.25": [90, 70, 0], "sigma-1": [80, 70, 60], "multiscale": [80, 70, 60],
                 "dualrs": pinned, "dualrs-set": set_}
        return {name: {**dict(zip(grid, v)), "ACR": sum(v) / 100} for name, v in table.items()}

    first = RoundResult(0, Path("c"), Path("e"), Path("b"), rows([85, 72, 61], [85, 72, 61]))
    second = RoundResult(1, Path("c"), Path("e"), Path("b"), rows([84, 70, 60], [86, 74, 63]))
    pinned = parse_dualrs_config({**CONFIG, "select": "acr", "certificate": "pinned"})
    set_ = parse_dualrs_config({**CONFIG, "select": "acr", "certificate": "set"})
    assert (dualrs_method(pinned), dualrs_method(set_)) == ("dualrs", "dualrs-set")
    assert best_round(pinned, [first, second]) == 0
    assert best_round(set_, [first, second]) == 1
