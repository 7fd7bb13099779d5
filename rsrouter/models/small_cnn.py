"""Small CNNs for 8x8 and 28x28 inputs (digits, Fashion-MNIST): cheap enough to certify on a CPU."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class SmallCNN(nn.Module):
    """Strided 3x3 convolutions (each halves the resolution) with batch norm, then an MLP head.

    Args:
        num_classes: output logits.
        input_size: ``(C, H, W)`` of the inputs.
        widths: channels of the conv stages.
        hidden: width of the hidden linear layer.
    """

    def __init__(self, num_classes: int = 10, input_size: Sequence[int] = (1, 28, 28),
                 widths: Sequence[int] = (32, 64, 128), hidden: int = 128) -> None:
        super().__init__()
        c, h, w = input_size
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            c, h, w = width, (h + 1) // 2, (w + 1) // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))
