"""The benchmark harness: oracle, router statistics, composition from counts, the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rsrouter.bench import oracle_frame, report, routing_stats
from rsrouter.results import average_certified_radius, certified_accuracy, markdown_table


def _df(radius, correct, label=(1, 2, 3)):
    return pd.DataFrame({"idx": [0, 5, 10], "label": list(label),
                         "predict": [lab if c else -1 for lab, c in zip(label, correct)],
                         "radius": radius, "correct": correct, "time": 0.1})


def test_oracle_takes_the_largest_correct_radius_per_input():
    small = _df([0.5, 0.2, 0.0], [1, 1, 0])
    large = _df([1.5, 0.0, 0.0], [1, 0, 0])
    large.loc[2, "predict"] = 7  # wrong, not abstaining
    oracle = oracle_frame({"small": small, "large": large})
    # the abstain share counts abstentions only: input 10 is answered (wrongly) by one expert
    assert oracle["predict"].tolist() == [1, 2, 7]
    assert oracle_frame({"small": small, "large": _df([1.5, 0, 0], [1, 0, 0])})[
        "predict"].tolist() == [1, 2, -1]
    assert oracle["radius"].tolist() == [1.5, 0.2, 0.0]
    assert oracle["correct"].tolist() == [1, 1, 0]
    assert oracle["best_expert"].tolist() == ["large", "small", "-"]
    assert certified_accuracy(oracle, [0.0, 1.0]).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert average_certified_radius(oracle) == pytest.approx(1.7 / 3)
    with pytest.raises(ValueError, match="same inputs"):
        oracle_frame({"a": small, "b": large.assign(idx=[0, 5, 11])})


def test_routing_stats_and_report(tmp_path):
    routed = _df([0.4, 0.0, 0.0], [1, 0, 0]).assign(
        expert=["small", "-", "large"], router_radius=[0.9, 0.0, 1.2],
        expert_radius=[0.4, 0.0, 0.0])
    stats = routing_stats(routed)
    third = pytest.approx(1 / 3, abs=1e-4)  # rounded to 4 decimals for the report
    assert stats["router_abstain"] == third
    assert stats["router_mean_radius"] == pytest.approx(0.7)
    assert stats["choices"] == {"small": third, "-": third, "large": third}
    paths = {}
    for name, df in {"small": _df([0.5, 0.2, 0.0], [1, 1, 0]),
                     "large": _df([1.5, 0.0, 0.0], [1, 0, 0]), "my-router": routed}.items():
        paths[name] = tmp_path / f"{name}.tsv"
        df.to_csv(paths[name], sep="\t", index=False)
    experts = {k: paths[k] for k in ("small", "large")}
    table = report(experts, tmp_path, title="toy", radii=[0.0, 0.5, 1.0],
                   routed={"my-router": paths["my-router"]})  # any name: roles are arguments
    oracle = "oracle (per-input best expert; not a certificate)"
    assert list(table.index) == ["small", "large", "my-router", oracle]
    assert table.loc["my-router", "r=0"] == pytest.approx(100 / 3, abs=0.1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["routing"]["my-router"]["router_mean_radius"] == pytest.approx(0.7)
    assert summary["not_certificates"] == [oracle]
    md = (tmp_path / "summary.md").read_text()
    assert "| my-router |" in md and "not a certificate" in md
    assert (tmp_path / "certified_accuracy.png").stat().st_size > 10_000
    assert markdown_table(table).count("\n") == len(table) + 1


def test_composing_stored_counts_equals_a_routed_run():
    """An ablation over routers may reuse the experts' counts: composing them gives exactly the
    certificates an end-to-end routed run gives."""
    import numpy as np
    import torch
    from test_router import _routed

    from rsrouter.bench import compose_from_counts
    from rsrouter.router import ROUTER_STAGES

    routed = _routed()
    rng = np.random.default_rng(0)
    xs = torch.from_numpy(rng.uniform(0.1, 0.9, (40, 1, 1, 4))).float()
    labels = (xs[:, 0, 0, 1] > 0.5).long().tolist()
    idx = list(range(100, 140))
    kw = dict(batch_size=999, seed=7, indices=idx)
    end_to_end = routed.certify_batch(xs, 16, 200, 0.02, **kw)

    def frame(certs):
        return pd.DataFrame([{"idx": i, "label": y, "cA": c.cA, "nA": c.nA, "n": c.n,
                              "n0": c.n0, "sigma": c.sigma}
                             for i, y, c in zip(idx, labels, certs)])

    router_df = frame(routed.router.certify_batch(xs, 16, 200, 0.01, stages=ROUTER_STAGES, **kw))
    expert_dfs = [frame(e.certify_batch(xs, 16, 200, 0.01, **kw)) for e in routed.experts]
    composed = compose_from_counts(router_df, expert_dfs, ["expert0", "expert1"], 0.02)
    assert composed["predict"].tolist() == [c.prediction for c in end_to_end]
    assert composed["radius"].tolist() == [c.radius for c in end_to_end]
    assert composed["router_nA"].tolist() == [c.router.nA for c in end_to_end]
    assert (composed["predict"] != -1).sum() > 10
