"""The one Protocol: what it refuses, what counts depend on, what a result records."""

from __future__ import annotations

import pytest

from rsrouter.certify.sequential import Sequential
from rsrouter.protocol import RADII, Protocol


@pytest.mark.parametrize("values, message", [
    ({"n0": 0}, "n0"), ({"n": 0}, "n"), ({"batch_size": 0}, "batch_size"),
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"),
    ({"radii": ()}, "radii"), ({"radii": (0.5, 0.25)}, "radii"), ({"radii": (-0.1, 0.5)}, "radii"),
    ({"radii": (0.5, 0.5)}, "radii"),
    ({"n": 100, "sequential": Sequential((10, 50))}, "looks"),
])
def test_an_impossible_protocol_is_refused(values, message):
    with pytest.raises(ValueError, match=message):
        Protocol(**values)


def test_counts_depend_on_samples_and_seed_not_on_alpha_unless_sequential():
    a, b = Protocol(alpha=0.001), Protocol(alpha=0.01, batch_size=7)
    assert a.counts_key() == b.counts_key() == {"n0": 100, "n": 10_000, "seed": 0}
    seq = Protocol(n=100, sequential=Sequential((10, 100)))
    assert seq.counts_key()["sequential"] == {"looks": [10, 100], "final_share": 0.5,
                                              "alpha": 0.001, "radii": list(RADII)}
    assert a.record() == {"n0": 100, "n": 10_000, "alpha": 0.001, "seed": 0}
