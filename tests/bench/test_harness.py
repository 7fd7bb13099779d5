"""`rsrouter bench run`: counts computed once, methods composed from them equal direct runs,
resume and growth, the report rebuilt from the TSVs alone, the digits config end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT, certificates

from rsrouter.bench.config import load_bench_config, parse_bench_config
from rsrouter.certify.bounds import radii_from_counts
from rsrouter.certify.smoothing import Smooth
from rsrouter.cli import main
from rsrouter.errors import ConfigError
from rsrouter.results.tsv import read_tsv

PROTOCOL = {"n0": 20, "n": 200, "alpha": 0.01, "seed": 3, "batch_size": 1000}


@pytest.fixture
def setup(tmp_path, digits_expert, digits_expert_wide):
    """Two registered digits experts, a router on them, a config with every method type."""
    for folder, name in ((digits_expert, "d025"), (digits_expert_wide, "d050")):
        assert main(["experts", "register", folder, "--name", name]) == 0
    router_cfg = tmp_path / "router.yaml"
    router_cfg.write_text(yaml.safe_dump({
        "experts": ["d025", "d050"], "router": {"arch": "cnn_tiny"},
        "labels": {"n": 30, "alpha": 0.01, "subset": 200},
        "train": {"epochs": 1, "batch_size": 64}, "data": {"dataset": "digits"}}))
    assert main(["router", "train", "--config", str(router_cfg), "--out",
                 str(tmp_path / "router"), "--no-progress"]) == 0
    config = {"name": "tiny", "data": {"dataset": "digits"}, "inputs": {"every": 25},
              "protocol": PROTOCOL, "radii": [0.0, 0.25, 0.5],
              "methods": [{"type": "expert", "expert": "d025"},
                          {"type": "expert", "expert": "d050"},
                          {"type": "router", "router": "router", "name": "routed",
                           "chosen_on": "train"},
                          {"type": "router", "router": "router", "name": "routed-set",
                           "certificate": "set", "chosen_on": "train"},
                          {"type": "router", "router": "router", "name": "routed-lazy",
                           "certificate": "lazy-set", "margin": 0.1, "chosen_on": "train"},
                          {"type": "router", "router": "router", "name": "routed-fallback",
                           "certificate": "lazy-set+cascade", "margin": 0.1,
                           "chosen_on": "train"},
                          {"type": "envelope"}, {"type": "oracle"},
                          {"type": "cascade", "name": "multiscale"},
                          {"type": "aces", "name": "entropy",
                           "fit": {"subset": 100, "n": 30, "copies": 4}}]}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def _spy(monkeypatch) -> list[tuple[str, int]]:
    """Record every count pass (stages, number of inputs): the passes themselves still run."""
    calls, real = [], Smooth.vote_batch

    def count_batch(self, xs, *args, **kw):
        calls.append((kw.get("stages", ("select", "estimate"))[0], len(xs)))
        return real(self, xs, *args, **kw)

    monkeypatch.setattr(Smooth, "vote_batch", count_batch)
    return calls


def test_counts_once_compose_all_and_equal_direct_runs(setup, tmp_path, monkeypatch, capsys):
    path, config = setup
    calls = _spy(monkeypatch)
    out = tmp_path / "out"
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    # K + R passes: 2 experts, the router and the entropy router, 20 inputs each, never more
    inputs = 20
    assert sum(n for _, n in calls) == 4 * inputs
    assert len(list((out / "counts").glob("*.tsv"))) == 4
    # composed certificates equal direct certifications with the same seeds
    args = ["--dataset", "digits", "--skip", "25", "--n0", "20", "--n", "200", "--alpha",
            "0.01", "--seed", "3", "--no-progress"]
    assert main(["certify", "--model", "d025", "--out", str(tmp_path / "d.tsv"), *args]) == 0
    assert main(["certify", "--router", str(tmp_path / "router"), "--out",
                 str(tmp_path / "r.tsv"), *args]) == 0
    assert main(["certify", "--router", str(tmp_path / "router"), "--certificate", "set",
                 "--out", str(tmp_path / "s.tsv"), *args]) == 0
    assert main(["certify", "--router", str(tmp_path / "router"), "--certificate", "lazy-set",
                 "--margin", "0.1", "--out", str(tmp_path / "l.tsv"), *args]) == 0
    assert main(["certify", "--router", str(tmp_path / "router"), "--certificate",
                 "lazy-set+cascade", "--margin", "0.1", "--out", str(tmp_path / "f.tsv"),
                 *args]) == 0
    cols = ["idx", "predict", "radius", "correct", "cA", "nA"]
    set_cols = ["idx", "predict", "radius", "correct", "expert", "binding", "router_counts",
                "expert_nA", "expert_alpha", "alpha"]
    lazy_cols = [*set_cols, "counted", "router_select", "expert_select_nA", "margin"]
    fallback_cols = [*lazy_cols, "path", "evaluated", "class_counts", "fallback_share"]
    for direct, composed in (("d.tsv", "d025.tsv"), ("r.tsv", "routed.tsv"),
                             ("s.tsv", "routed-set.tsv"), ("l.tsv", "routed-lazy.tsv"),
                             ("f.tsv", "routed-fallback.tsv")):
        cols = {"s.tsv": set_cols, "l.tsv": lazy_cols, "f.tsv": fallback_cols}.get(direct, cols)
        a = read_tsv(tmp_path / direct)[cols]
        b = read_tsv(out / composed)[cols]
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True),
                                      check_exact=False, rtol=1e-9)
    # the lazy set certificate pays for fewer experts than the set certificate, never more
    lazy, full = read_tsv(out / "routed-lazy.tsv"), read_tsv(out / "routed-set.tsv")
    assert (lazy["forwards"] <= full["forwards"]).all()
    assert (lazy["forwards"] < full["forwards"]).any()
    summary = (out / "summary.md").read_text()
    assert "the plan counts another expert on" in summary
    for name in ("d025", "routed", "envelope", "oracle", "multiscale", "entropy"):
        assert f"| {name}" in summary
    assert "not a certificate" in summary and "not a classifier" in summary
    assert "Count store: 17,600 noisy forward passes" in summary  # 4 passes x 20 x (20 + 200)
    saved = json.loads((out / "summary.json").read_text())["count_store"]
    assert saved["separately"] > saved["forward_passes"]
    entries = {json.loads(p.read_text())["method"]: json.loads(p.read_text())
               for p in (out / "entries").glob("*.json")}
    assert entries["envelope"]["chosen_on_test"] and entries["oracle"]["chosen_on_test"]
    assert not entries["routed"]["chosen_on_test"] and entries["entropy"]["chosen_on"] == "train"
    assert entries["d025"]["experts"][0]["weights_sha256"] == \
        entries["routed"]["experts"][0]["weights_sha256"]
    assert len(entries["d025"]["ci95"]) == 3 and entries["d025"]["max_regret"] >= 0
    # the report is rebuilt from the TSVs alone
    before = (out / "summary.csv").read_text()
    for name in ("summary.csv", "summary.md", "summary.json", "curves.png"):
        (out / name).unlink()
    shutil.rmtree(out / "entries")
    calls.clear()
    assert main(["bench", "report", str(out)]) == 0
    assert (out / "summary.csv").read_text() == before and not calls
    assert (out / "curves.png").stat().st_size > 10_000


def test_more_inputs_compute_only_the_new_ones_and_a_crash_loses_nothing(setup, tmp_path,
                                                                        monkeypatch):
    path, config = setup
    out = tmp_path / "out"
    calls = _spy(monkeypatch)
    small = {**config, "inputs": {"every": 25, "first": 8}}
    path.write_text(yaml.safe_dump(small))
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    assert sum(n for _, n in calls) == 4 * 8
    calls.clear()
    path.write_text(yaml.safe_dump(config))  # 20 inputs: 12 new ones per model
    real = Smooth.vote_batch

    def crash_once(self, xs, *args, **kw):  # dies in the middle of the third model's pass
        calls.append(len(xs))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, xs, *args, **kw)

    monkeypatch.setattr(Smooth, "vote_batch", crash_once)
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 130
    monkeypatch.setattr(Smooth, "vote_batch", real)
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    for counts in (out / "counts").glob("*.tsv"):
        df = pd.read_csv(counts, sep="\t")
        assert df["idx"].is_unique and len(df) == 20
    fresh = tmp_path / "fresh"
    assert main(["bench", "run", "--config", str(path), "--out", str(fresh),
                 "--no-progress"]) == 0
    for name in ("d025.tsv", "routed.tsv", "multiscale.tsv", "entropy.tsv"):
        a = certificates(out / name)
        b = certificates(fresh / name)
        pd.testing.assert_frame_equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("methods"), r"config\.methods: missing key"),
    (lambda c: c.update(protocol={"n": 0}), r"protocol\.n: must be an integer >= 1"),
    (lambda c: c.update(protocol={"alpha": 2}), r"protocol\.alpha: must be a number in \(0, 1\)"),
    (lambda c: c["methods"].append({"type": "magic"}), "type: 'magic' is not one of expert"),
    (lambda c: c["methods"].append({"type": "expert"}), r"methods\[2\]\.expert: missing key"),
    (lambda c: c["methods"].append({"type": "expert", "expert": "d025"}), "names must be unique"),
    (lambda c: c.update(radii=[0.5, 0.25]), "radii: must be a non-empty increasing list"),
    (lambda c: c.update(inputs={"every": 2, "indices": [1]}), "either indices, or every/first"),
    (lambda c: c["data"].update(dataset="mnist"), r"data\.dataset: 'mnist' is not one of"),
    (lambda c: c["methods"].append({"type": "cascade", "threshold": 0.3}),
     r"threshold: must be a number in \[0.5, 1\)"),
    (lambda c: c["methods"].append({"type": "aces", "fit": {"split": "test"}}),
     r"fit\.split: 'test' is not one of train, validation"),
    (lambda c: c["methods"].append({"type": "aces", "experts": ["d025"]}),
     r"\(aces\): needs at least 2 experts"),
    (lambda c: c.update(data={"dataset": "digits", "split": "train"}) or c["methods"].append(
        {"type": "aces"}), "fits its thresholds on data.split train itself"),
    (lambda c: c["methods"].append({"type": "envelope", "experts": ["digits-sigma0.25"]}),
     r"name expert methods of this config \(d025, d050\)"),
    (lambda c: c["methods"].append({"type": "router", "router": "r", "certificate": "set",
                                    "margin": 0.1}), "only the lazy-set certificates have a"),
    (lambda c: c["methods"].append({"type": "router", "router": "r", "certificate": "lazy-set",
                                    "fallback_share": 0.1}), "only the lazy-set\\+cascade"),
    (lambda c: c["methods"].append({"type": "router", "router": "r", "fallback_share": 1.5}),
     r"fallback_share: must be a number in \(0, 1\)"),
    (lambda c: c.update(colour="red"), r"config\.colour: unknown key; allowed: choices_made_on"),
    (lambda c: c.update(name="../../x"), r"name: '\.\./\.\./x' must not contain '/'"),
    (lambda c: c.update(name="a\nb"), r"name: 'a\\nb' must not contain"),
])
def test_config_errors_name_the_key(change, message):
    config = {"name": "x", "data": {"dataset": "digits"},
              "methods": [{"type": "expert", "expert": "d025"},
                          {"type": "expert", "expert": "d050"}]}
    change(config)
    with pytest.raises(ConfigError, match=message):
        parse_bench_config(config)


def test_inputs_selection():
    cfg = parse_bench_config({"name": "x", "data": {"dataset": "digits"},
                              "inputs": {"every": 20, "first": 3},
                              "methods": [{"type": "expert", "expert": "a"}]})
    assert cfg.inputs.select(500) == [0, 20, 40]
    listed = parse_bench_config({"name": "x", "data": {"dataset": "digits"},
                                 "inputs": {"indices": [5, 1, 5]},
                                 "methods": [{"type": "expert", "expert": "a"}]})
    assert listed.inputs.select(10) == [5, 1]
    with pytest.raises(ConfigError, match="outside"):
        listed.inputs.select(3)


def test_the_digits_benchmark_config_end_to_end(tmp_path):
    """benchmarks/configs/bench-digits.yaml as published, on fewer inputs and samples."""
    path = ROOT / "benchmarks" / "configs" / "bench-digits.yaml"
    config = yaml.safe_load(path.read_text())
    config["inputs"] = {"every": 50}
    config["protocol"].update(n=300, n0=30)
    for method in config["methods"]:
        if method["type"] == "aces":
            method["fit"].update(subset=150, n=30, copies=4)
    small = path.parent / "bench-digits-small.test.yaml"  # beside it: relative paths hold
    small.write_text(yaml.safe_dump(config))
    try:
        cfg = load_bench_config(small)
        assert [m.type for m in cfg.methods] == ["expert"] * 3 + ["router", "envelope", "oracle",
                                                                  "cascade", "aces"]
        assert main(["bench", "run", "--config", str(small), "--out", str(tmp_path / "out"),
                     "--no-progress"]) == 0
    finally:
        small.unlink()
    table = pd.read_csv(tmp_path / "out" / "summary.csv", index_col=0)
    assert len(table) == 8 and (table["max regret"].dropna() >= 0).all()
    assert table.loc["envelope", "max regret"] == 0


def test_renamed_experts_stale_files_and_unfinished_reruns(setup, tmp_path):
    """An envelope over renamed expert methods; a rerun without a method removes its files; a
    report refuses a folder where a rerun stopped half-way."""
    path, config = setup
    config = {**config, "methods": [{"type": "expert", "expert": "d025", "name": "small"},
                                     {"type": "expert", "expert": "d050", "name": "wide"},
                                     {"type": "envelope"}, {"type": "oracle"}]}
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    table = pd.read_csv(out / "summary.csv", index_col=0)
    assert table.loc["envelope", "max regret"] == 0 and table["max regret"].notna().all()
    config["methods"] = config["methods"][:2]
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    assert not (out / "oracle.tsv").exists() and not (out / "envelope.method.json").exists()
    assert sorted(p.name for p in (out / "entries").iterdir()) == ["tiny--small.json",
                                                                   "tiny--wide.json"]
    config["inputs"] = {"every": 30}
    config["methods"].append({"type": "expert", "expert": "no-such-expert"})
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 2
    assert (out / "small.tsv").exists()  # the failed rerun wrote nothing: the typo failed first
    assert main(["bench", "report", str(out)]) == 0


def test_entry_keys_do_not_depend_on_where_the_run_was(setup, tmp_path):
    path, config = setup
    config = {**config, "methods": config["methods"][:2]}
    path.write_text(yaml.safe_dump(config))
    assert main(["bench", "run", "--config", str(path), "--out", str(tmp_path / "a"),
                 "--no-progress"]) == 0
    assert main(["bench", "run", "--config", str(path), "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    for name in ("tiny--d025.json", "tiny--d050.json"):
        a = json.loads((tmp_path / "a" / "entries" / name).read_text())
        b = json.loads((tmp_path / "b" / "entries" / name).read_text())
        assert a["key"] == b["key"]
        assert "/" not in json.dumps(a["experts"]).replace("local folder", "")  # no local paths


def test_a_router_tree_runs_through_the_harness(setup, tmp_path):
    """The trained router as the root (its two experts pooled into one group) and as the child:
    rows read back (every radius recomputed), each input pays for the root, the child when the
    root certifies, and the expert reached; a child over an expert the root lacks is refused
    before any count pass."""
    path, config = setup
    tree = {"name": "tiny-tree", "data": {"dataset": "digits"}, "inputs": {"every": 25},
            "protocol": PROTOCOL, "radii": [0.0, 0.25],
            "methods": [{"type": "tree", "name": "tree", "router": "router",
                         "children": ["router"], "chosen_on": "train"}]}
    cfg = tmp_path / "tree.yaml"
    cfg.write_text(yaml.safe_dump(tree))
    out = tmp_path / "tree-out"
    assert main(["bench", "run", "--config", str(cfg), "--out", str(out), "--no-progress"]) == 0
    rows = read_tsv(out / "tree.tsv")
    assert len(rows) == 20 and set(rows["group"]) == {0} and (rows["child_n"] == 200).all()
    assert ((rows["alpha_root"] + rows["alpha_child"] + rows["alpha_expert"]) == 0.01).all()
    root_holds = rows["root_nA"] > 100  # all votes pooled in the one group
    assert root_holds.all()
    assert (rows["forwards"] == 3 * 220).all()  # root, child, expert
    meta = json.loads((out / "tree.method.json").read_text())
    assert meta["router"]["groups"] == [["d025", "d050"]] and meta["kind"] == "certificate"
    summary = (out / "summary.md").read_text()
    assert "100.0% of inputs go through a child router" in summary


@pytest.fixture
def two_experts(setup, tmp_path):
    """A finished benchmark of the two experts, their envelope and oracle."""
    path, config = setup
    config = {**config, "methods": [*config["methods"][:2], {"type": "envelope"},
                                     {"type": "oracle"}, {"type": "cascade"}]}
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    return path, out


@pytest.mark.parametrize("forge, message", [
    (lambda df: df.drop(columns=["cA", "nA", "n", "n0", "sigma", "alpha", "seed", "mode"])
     .assign(radius=df["radius"].where(df["correct"] == 0, 9.0)), "need the columns"),
    (lambda df: df.assign(alpha=0.4, radius=radii_from_counts(df["nA"], df["n"], 0.4,
                                                              df["sigma"])), "alpha 0.4"),
    (lambda df: df.assign(sigma=3.0, radius=radii_from_counts(df["nA"], df["n"], df["alpha"],
                                                              3.0)), "sigma [3.0]"),
    (lambda df: df.assign(n=10**9, nA=10**9, radius=radii_from_counts(10**9, 10**9, df["alpha"],
                                                                      df["sigma"])),
     "n 1000000000 (the protocol's is 200)"),
    (lambda df: df.assign(nA=df["n"], radius=radii_from_counts(df["n"], df["n"], df["alpha"],
                                                               df["sigma"])),
     "is not what the count store holds for it"),
])
def test_report_refuses_rows_that_are_no_certificate_of_this_benchmark(two_experts, capsys,
                                                                       forge, message):
    """Radii without their counts (or counts at another alpha or sigma) are never reported as
    a certificate: today dropping the count columns turns radius 9.0 into one."""
    _, out = two_experts
    tsv = out / "d025.tsv"
    forged = forge(pd.read_csv(tsv, sep="\t"))
    if "cA" in forged:  # a consistent forgery: the prediction follows from its counts
        forged["predict"] = forged["cA"].where(forged["radius"] > 0, -1)
    forged["radius"] = forged["radius"].where(forged["predict"] != -1, 0.0)
    forged["correct"] = ((forged["predict"] == forged["label"]) & (forged["predict"] != -1)) \
        .astype(int)
    forged.to_csv(tsv, sep="\t", index=False)
    capsys.readouterr()
    assert main(["bench", "report", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_report_refuses_a_cascade_at_another_level(two_experts, capsys):
    """A cascade's stage levels are its rule's (sound: alpha over the number of bounds)."""
    _, out = two_experts
    cascade = pd.read_csv(out / "cascade.tsv", sep="\t")
    cascade.assign(stage_alpha=0.004).to_csv(out / "cascade.tsv", sep="\t", index=False)
    read_tsv(out / "cascade.tsv")  # its own rows are consistent: a larger level only loosens
    assert main(["bench", "report", str(out)]) == 2
    assert "stage_alpha 0.004 (its rule allows at most 0.00333333)" in capsys.readouterr().err


def test_report_checks_each_count_against_the_store_for_its_role(setup, tmp_path, capsys):
    """A routed row whose chosen expert is given the other expert's sigma (its radius made to
    follow) passes the row's own checks, not the store's: that expert was counted at its own."""
    path, config = setup
    config = {**config, "methods": config["methods"][:3]}
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    assert main(["bench", "run", "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    df = pd.read_csv(out / "routed.tsv", sep="\t")
    chosen = df["expert"] != "-"
    assert chosen.any()
    df.loc[chosen, "sigma"] = np.where(df.loc[chosen, "expert"] == "d025", 0.5, 0.25)
    df["expert_radius"] = np.where(chosen, radii_from_counts(
        df["nA"], df["n"], df["alpha_expert"], df["sigma"]), df["expert_radius"])
    both = df["predict"] != -1
    df["radius"] = np.where(both, np.minimum(df["router_radius"], df["expert_radius"]), 0.0)
    df.to_csv(out / "routed.tsv", sep="\t", index=False)
    read_tsv(out / "routed.tsv")  # consistent in itself
    capsys.readouterr()
    assert main(["bench", "report", str(out)]) == 2
    assert "the chosen expert's cA, nA, n or sigma is not what the count store holds" in \
        capsys.readouterr().err


def test_report_recomputes_the_oracle(two_experts, capsys):
    _, out = two_experts
    oracle = pd.read_csv(out / "oracle.tsv", sep="\t")
    oracle.assign(radius=oracle["radius"] * 2).to_csv(out / "oracle.tsv", sep="\t", index=False)
    assert main(["bench", "report", str(out)]) == 2
    assert "does not follow from its experts' rows" in capsys.readouterr().err


def test_out_must_be_new_empty_or_a_results_folder(two_experts, tmp_path, capsys):
    """bench run refuses a folder of the user's instead of deleting what it does not know."""
    path, _ = two_experts
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "summary.md").write_text("my summary")
    (mine / "chapter.tex").write_text("my thesis")
    assert main(["bench", "run", "--config", str(path), "--out", str(mine), "--no-progress"]) == 2
    assert "not rsrouter results" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["chapter.tex", "summary.md"]
    assert (mine / "summary.md").read_text() == "my summary"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "run", "--config", str(path), "--out", str(empty), "--no-progress"]) == 0
    (empty / "notes.txt").write_text("kept")  # a results folder may hold the user's notes
    assert main(["bench", "run", "--config", str(path), "--out", str(empty), "--no-progress"]) == 0
    assert (empty / "notes.txt").read_text() == "kept"
    seeded = tmp_path / "seeded"  # count files copied from a folder with the same protocol
    shutil.copytree(empty / "counts", seeded / "counts")
    for count_file in (seeded / "counts").glob("*.tsv"):  # found by its settings, any name
        for f in (count_file, Path(f"{count_file}.json")):
            f.rename(f.with_name("other-method-" + f.name))
    assert main(["bench", "run", "--config", str(path), "--out", str(seeded), "--no-progress"]) == 0
    for count_file in (empty / "counts").glob("*.tsv"):  # reused as they were: no new pass
        assert not (seeded / "counts" / count_file.name).exists()
        assert (seeded / "counts" / ("other-method-" + count_file.name)).read_bytes() == \
            count_file.read_bytes()
    assert (seeded / "summary.md").read_text() == (empty / "summary.md").read_text()
