"""The input-normalization layer: first layer of every rsrouter model (noise comes before it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..cards.header import RESIZE_MODES  # one list for the card and the module


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, for pixels in [0, 1]; mean and std are buffers."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"



class Resize(nn.Module):
    """Resample images to ``size`` (H, W) with ``mode`` (no parameters): a classifier trained at
    another resolution (a 224-pixel ViT on 32-pixel CIFAR-10) sees the noisy input resized, so
    the noise and the certificate stay in the input's own pixel space."""

    def __init__(self, size: Sequence[int], mode: str = "bicubic", antialias: bool = False) -> None:
        super().__init__()
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r}: one of {', '.join(RESIZE_MODES)}")
        if antialias and mode == "nearest":
            raise ValueError("resize antialias needs mode bilinear or bicubic")
        self.size, self.mode, self.antialias = tuple(int(v) for v in size), mode, bool(antialias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        if self.mode == "nearest":
            return torch.nn.functional.interpolate(x, size=self.size, mode="nearest")
        # antialias also changes upsampling: PyTorch then uses PIL's kernels (Carlini et al.'s
        # bicubic 32 -> 224 for the ViT)
        return torch.nn.functional.interpolate(x, size=self.size, mode=self.mode,
                                               align_corners=False, antialias=self.antialias)

    def extra_repr(self) -> str:
        return f"size={list(self.size)}, mode={self.mode}, antialias={self.antialias}"


class NormalizedModel(nn.Module):
    """A classifier on pixels in [0, 1]: ``net(normalize(x))``, or ``net(normalize(resize(x)))``
    with ``resize`` (a :class:`Resize`). Weights files hold ``net`` only."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 resize: Resize | None = None) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net
        self.resize = resize  # None: not a submodule, nothing in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x if self.resize is None else self.resize(x)))


def feature_split(model: NormalizedModel) -> tuple[nn.Module, nn.Module] | None:
    """``(trunk, head)`` with ``model(x) == head(trunk(x))``: the input layers and the network's
    ``features``, then its ``head``; None for a network without that split (cnn_small and
    cnn_tiny have it)."""
    net = model.net
    if not (isinstance(getattr(net, "features", None), nn.Module)
            and isinstance(getattr(net, "head", None), nn.Module)):
        return None
    front = [model.normalize] if model.resize is None else [model.resize, model.normalize]
    return nn.Sequential(*front, net.features), net.head
