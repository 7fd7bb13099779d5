"""The oracle, the router statistics, and routed certificates composed from stored counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rsrouter.bench.accounting import routing_stats
from rsrouter.bench.methods import oracle_frame, routed_frame
from rsrouter.results.curves import average_certified_radius, certified_accuracy


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


def test_routing_stats():
    routed = _df([0.4, 0.0, 0.0], [1, 0, 0]).assign(
        expert=["small", "-", "large"], router_radius=[0.9, 0.0, 1.2],
        expert_radius=[0.4, 0.0, 0.0])
    stats = routing_stats(routed)
    third = pytest.approx(1 / 3, abs=1e-4)  # rounded to 4 decimals for the report
    assert stats["router_abstain"] == third
    assert stats["router_mean_radius"] == pytest.approx(0.7)
    assert stats["choices"] == {"small": third, "-": third, "large": third}


def test_composing_stored_counts_equals_a_routed_run():
    """A routed run draws, for the chosen expert, exactly the samples of a standalone run of
    that expert: composing the counts gives exactly the end-to-end routed certificates."""
    import torch
    from test_router import _routed

    from rsrouter.routing.router import ROUTER_STAGES

    routed = _routed()
    rng = np.random.default_rng(0)
    xs = torch.from_numpy(rng.uniform(0.1, 0.9, (40, 1, 1, 4))).float()
    labels = (xs[:, 0, 0, 1] > 0.5).long().tolist()
    idx = list(range(100, 140))
    kw = dict(batch_size=999, seed=7, indices=idx)
    end_to_end = routed.certify_batch(xs, 16, 200, 0.02, **kw)

    def frame(model, stages=("select", "estimate")):
        c_a, counts = model.count_batch(xs, 16, 200, stages=stages, **kw)
        return pd.DataFrame([{"idx": i, "label": y, "cA": int(c), "nA": int(row[int(c)]),
                              "n": 200, "n0": 16, "sigma": model.sigma, "share": 1.0, "seed": 7,
                              "mode": "fp32", "time": 0.0}
                             for i, y, c, row in zip(idx, labels, c_a, counts)])

    composed = routed_frame(frame(routed.router, ROUTER_STAGES),
                            [frame(e) for e in routed.experts], ["expert0", "expert1"], 0.02,
                            0.5, routed.router.sigma)
    assert composed["predict"].tolist() == [c.prediction for c in end_to_end]
    assert composed["radius"].tolist() == pytest.approx([c.radius for c in end_to_end])
    assert composed["router_nA"].tolist() == [c.router.nA for c in end_to_end]
    assert (composed["predict"] != -1).sum() > 10
