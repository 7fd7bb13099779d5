"""Sequential looks (torch-free): the looks, their shares of alpha and the stopping rule.

The counting loop that applies them is :func:`rsrouter.certify.smoothing.sequential_counts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from .bounds import lower_bounds, lower_confidence_bound, radii_from_bounds, upper_bounds


@dataclass(frozen=True)
class Sequential:
    """Looks at growing sample sizes ``looks`` (the last is n), the error budget split over them:
    ``final_share`` of alpha at the last look, the rest evenly over the earlier ones. An input
    stops once every radius of the grid is decided (certified, or out of reach even at the last
    look); its certificate is the one of the look where it stopped, at that look's share."""

    looks: tuple[int, ...]
    final_share: float = 0.5

    def shares(self) -> list[float]:
        if len(self.looks) == 1:
            return [1.0]
        early = (1 - self.final_share) / (len(self.looks) - 1)
        return [early] * (len(self.looks) - 1) + [self.final_share]

    def check(self, n: int) -> None:
        looks = list(self.looks)
        if not looks or looks != sorted(set(looks)) or looks[0] < 1 or looks[-1] != n:
            raise ValueError(f"sequential looks must increase strictly from >= 1 to n = {n}, "
                             f"got {looks}")
        if not 0 < self.final_share <= 1 or (len(looks) == 1 and self.final_share != 1):
            raise ValueError(f"final_share must be in (0, 1] (1 with a single look), got "
                             f"{self.final_share}")

    def best_radius(self, alpha: float, sigma: float) -> float:
        """The largest radius the last look can certify (every draw on the class, at its share
        of ``alpha``): a grid radius beyond it is out of reach."""
        final = self.looks[-1]
        return sigma * ndtri(lower_confidence_bound(final, final, alpha * self.shares()[-1]))


def decided(n_a: np.ndarray, look: int, level: float, sigma: float, cap: float,
            radii: Sequence[float]) -> np.ndarray:
    """Which inputs (``n_a`` draws on their class out of ``look``) may stop at this look, at
    ``level``: for every grid radius r, either the lower-bound radius reaches r (certified) or r
    is out of reach (above the upper-bound radius, or above ``cap``, the last look's best)."""
    grid = np.asarray(radii, dtype=float)
    r_low = radii_from_bounds(lower_bounds(n_a, look, level), sigma, -np.inf)
    r_high = radii_from_bounds(upper_bounds(n_a, look, level), sigma, -np.inf)
    reach = np.minimum(r_high, cap)
    return ((r_low[:, None] >= grid[None, :]) | (reach[:, None] < grid[None, :])).all(1)
