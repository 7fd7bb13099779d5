"""Toy base classifiers whose smoothed versions are known in closed form."""

from __future__ import annotations

import torch
from torch import nn


class Halfspace(nn.Module):
    """Class 1 iff x[coord] > t (below t when flipped): under N(0, s^2) noise
    P(class 1) = Phi((x[coord] - t) / s), so the smoothed classifier's true l2 radius is
    |x[coord] - t| exactly. ``calls`` counts the inputs it has classified."""

    def __init__(self, coord: int, t: float = 0.0, flip: bool = False) -> None:
        super().__init__()
        self.coord, self.t, self.sign = coord, t, -1.0 if flip else 1.0
        self.calls = 0

    def forward(self, x):
        self.calls += len(x)
        s = self.sign * (x.flatten(1)[:, self.coord] - self.t)
        return torch.stack([-s, s], dim=1)


class Bands(nn.Module):
    """A router on coordinate 0: expert 0 below 0.35, expert 2 above 0.65, expert 1 between."""

    def forward(self, x):
        v = x.flatten(1)[:, 0]
        return nn.functional.one_hot((v > 0.35).long() + (v > 0.65).long(), 3).float()


class Interval3(nn.Module):
    """Three classes on x[coord]: 0 below ``a``, 1 in [a, b), 2 from ``b``. Under N(0, s^2)
    noise P(0) = Phi((a - x) / s), P(2) = Phi((x - b) / s), P(1) the rest; with b - a small
    against s no class has more than half near the middle (an undecided smoothed classifier)."""

    def __init__(self, coord: int, a: float, b: float) -> None:
        super().__init__()
        self.coord, self.a, self.b = coord, a, b

    def forward(self, x):
        v = x.flatten(1)[:, self.coord]
        return nn.functional.one_hot((v >= self.a).long() + (v >= self.b).long(), 3).float()
