"""The validation rule (`rsrouter bench choose`): ACR within the slack of the best expert, cost
within the cap, then the smallest max regret; never on a test benchmark."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import ROOT

from rsrouter.bench.choose import choose
from rsrouter.cli import main
from rsrouter.errors import ResultsError

VALIDATION = ROOT / "benchmarks" / "results" / "fashion-mnist-validation"


def _edit(folder, changes: dict) -> None:
    """Change rows of a copied report's summary.json: {method: {column: value}}."""
    path = folder / "summary.json"
    summary = json.loads(path.read_text())
    for row in summary["table"]:
        row.update(changes.get(row["method"], {}))
    path.write_text(json.dumps(summary))


def test_the_rule_on_the_published_validation_benchmark(tmp_path, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    for name in ("bench.json", "summary.json"):
        shutil.copy(VALIDATION / name, folder / name)
    got = choose(folder)
    assert got.best_expert == "fashion-mnist-sigma1.00" and got.chosen is None  # all cost >= 2x
    assert got.nearest == "bands"  # 2.00x: within the ACR floor, and cheapest among those
    by = {c["method"]: c for c in got.candidates}
    assert by["backbone-set"]["cost"] == pytest.approx(4.0) and "cost" in by["backbone-set"]["why"]
    assert "ACR below" in by["paper"]["why"]
    # without the cost cap the old rule's choice comes back: backbone-set (5.8 points)
    assert choose(folder, cost_cap=10).chosen == "backbone-set"
    # a cheap variant within the slack wins over a cheaper-regret but expensive one
    _edit(folder, {"bands": {"forwards/input": 12000, "max regret": 6.0}})
    assert choose(folder).chosen == "bands"
    _edit(folder, {"bands": {"ACR": 1.29}})  # 1.318 - 0.02 = 1.298: now below
    assert choose(folder).chosen is None
    assert main(["bench", "choose", str(folder), "--methods", "base-set", "bands",
                 "--cost-cap", "5"]) == 0
    out = capsys.readouterr().out
    assert "Chosen: base-set" in out and "| bands | 1.290" in out


def test_the_rule_refuses_test_benchmarks_and_unknown_methods(tmp_path):
    with pytest.raises(ResultsError, match="test split"):
        choose(ROOT / "benchmarks" / "results" / "fashion-mnist")
    with pytest.raises(ResultsError, match="no method"):
        choose(VALIDATION, ["nope"])
    with pytest.raises(ResultsError, match="no benchmark report"):
        choose(tmp_path)
