"""`rsrouter bench report`'s figures: the cost plane (cost.png) beside the curves, drawn from
the summary's numbers, one point per certificate, the oracle and envelope as references only."""

from __future__ import annotations

import shutil

import pandas as pd
from helpers import ROOT
from PIL import Image

from rsrouter.bench import report
from rsrouter.cli import main
from rsrouter.results.figures import FIGURE_KEY

DIGITS = ROOT / "benchmarks" / "results" / "digits"


def test_a_report_draws_the_cost_plane_of_its_certificates(tmp_path, monkeypatch, capsys):
    bench = tmp_path / "digits"
    shutil.copytree(DIGITS, bench)
    (bench / "cost.png").unlink(missing_ok=True)
    drawn = []
    real = report.cost_figure

    def spy(points, **kw):
        drawn.append((points, kw))
        return real(points, **kw)

    monkeypatch.setattr(report, "cost_figure", spy)
    assert main(["bench", "report", str(bench)]) == 0
    summary = (bench / "summary.md").read_text()
    assert capsys.readouterr().out == summary + "\n"
    curves, cost = summary.index("![certified accuracy curves](curves.png)"), \
        summary.index("![cost plane](cost.png)")
    assert curves < cost and "each method would spend certifying alone" in summary
    with Image.open(bench / "cost.png") as png:
        assert png.size == (1200, 552) and png.text[FIGURE_KEY]
    [(points, kw)] = drawn
    rows = {row["method"]: row for row in pd.read_csv(bench / "summary.csv")
            .to_dict("records")}
    # certificates only: neither the oracle nor the envelope is a point
    assert [p.label for p in points] == ["digits-sigma0.25", "digits-sigma0.50",
                                         "digits-sigma1.00", "routed", "multiscale",
                                         "entropy-router"]
    for p in points:
        row = rows[p.label]
        assert abs(p.cost * 10_100 - row["forwards/input"]) <= 0.5  # in units of n0 + n
        assert (p.acr, p.acr_se, p.regret) == (row["ACR"], row["ACR se"], row["max regret"])
    assert kw["oracles"] == ((rows["oracle"]["ACR"], "0.3"),)  # a dashed line
