"""The embedded default: the bundled zoo and router load (hashes match) and the demo runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rsrouter.bench.demo import DEMO_PROTOCOL, HEAD_FALLBACK, ROUTER, run_demo
from rsrouter.registry.core import Registry
from rsrouter.results.tsv import read_tsv
from rsrouter.routing.load import load_routed


def test_bundled_zoo_is_registered_and_verifies():
    reg = Registry()
    names = set(reg.entries())
    expected = {f"{d}-sigma{s}" for d in ("fashion-mnist", "digits") for s in ("0.25", "0.50",
                                                                                 "1.00")}
    assert expected <= names
    for name in expected:
        card = reg.verify(name)
        assert card.certified["n"] == 10_000 and card.certified["num_inputs"] == 500
        assert (reg.get(name).folder() / "model.safetensors").stat().st_size <= 2_000_000


def test_bundled_router_loads_with_its_experts():
    routed = load_routed(ROUTER)
    assert [e.sigma for e in routed.experts] == [0.25, 0.5, 1.0]
    # the card's folder sources resolve inside the repository (not via the registry fallback)
    zoo = (ROUTER / ".." / "..").resolve()
    for folder in (ROUTER, ROUTER.parent / "digits", HEAD_FALLBACK):
        experts = load_routed(folder).experts
        assert all(Path(e.uri).is_relative_to(zoo) and Path(e.uri).is_dir() for e in experts)
    assert routed.router.sigma == 1.0


def test_demo_runs_on_a_small_subset(tmp_path, capsys):
    out = run_demo(tmp_path, num=6, protocol=replace(DEMO_PROTOCOL, n=100), progress=False)
    printed = capsys.readouterr().out
    for name in ("routed", "oracle (not a certificate)", "envelope (not a classifier)",
                 "multiscale", "max regret", "ACR"):
        assert name in printed
    assert "choices made on the test inputs" not in printed  # chosen on validation
    assert "choices made on: validation" in printed and "set certificate" in printed
    assert (out / "curves.png").is_file() and (out / "summary.md").is_file()
    routed = read_tsv(out / "routed.tsv")
    assert len(routed) == 6 and {"expert", "binding", "router_counts"} <= set(routed)
    fallback = read_tsv(out / "routed-head-fallback.tsv")  # the card's certificate
    assert len(fallback) == 6 and {"path", "evaluated", "class_counts"} <= set(fallback)
    assert "router, then cascade" in printed
    assert len(list((out / "entries").glob("*.json"))) == 8
