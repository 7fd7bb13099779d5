"""The evaluation protocol: how many noise samples, at which error level, with which seed, over
which radius grid, with or without sequential looks. Torch-free: reading results never loads a
model.

``RADII`` is the standard radius grid (benchmarks, summaries, leaderboards, the default of a
:class:`Protocol`); ``CARD_RADII`` the shorter grid of the certified-accuracy table an expert card
records (``rsrouter experts certify-card``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .certify.bounds import check_settings
from .certify.sequential import Sequential

RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
CARD_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


@dataclass(frozen=True)
class Protocol:
    """The statistical protocol of an evaluation, one frozen object.

    Counts depend on ``n0``, ``n`` and ``seed`` (not on ``alpha``: bounds are recomputed from
    stored counts at any alpha), and in sequential mode on the looks, the grid and alpha (they
    decide where each input stops); ``batch_size`` changes nothing but speed. ``radii`` is the
    grid certified accuracy is reported on.
    """

    n0: int = 100
    n: int = 10_000
    alpha: float = 0.001
    seed: int = 0
    batch_size: int = 1000
    radii: tuple[float, ...] = RADII
    sequential: Sequential | None = None

    def __post_init__(self) -> None:
        """Raises ValueError for an impossible protocol: ``n0``, ``n`` or ``batch_size`` below 1,
        ``alpha`` outside (0, 1), a grid that is not increasing radii >= 0, looks that do not end
        at ``n``."""
        check_settings(self.n0, self.n, self.alpha, self.batch_size)
        radii = list(self.radii)
        if not radii or min(radii) < 0 or radii != sorted(set(radii)):
            raise ValueError(f"radii must be a non-empty increasing list of numbers >= 0, got "
                             f"{radii}")
        if self.sequential is not None:
            self.sequential.check(self.n)

    def counts_key(self) -> dict:
        """What stored counts depend on (the count store's settings)."""
        key = {"n0": self.n0, "n": self.n, "seed": self.seed}
        if self.sequential is not None:
            key["sequential"] = {"looks": list(self.sequential.looks),
                                 "final_share": self.sequential.final_share,
                                 "alpha": self.alpha, "radii": list(self.radii)}
        return key

    def record(self) -> dict:
        """What a result records of its protocol: ``n0``, ``n``, ``alpha`` and ``seed``."""
        return {"n0": self.n0, "n": self.n, "alpha": self.alpha, "seed": self.seed}
