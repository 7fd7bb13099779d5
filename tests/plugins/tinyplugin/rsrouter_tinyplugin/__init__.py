"""A tiny third-party architecture package: how a plugin extends rsrouter without forking it."""

from torch import nn


def tiny_mlp(num_classes: int, input_size):
    """Registered under the entry-point group ``rsrouter.architectures`` as ``tiny_mlp``."""
    c, h, w = input_size
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 32), nn.ReLU(),
                         nn.Linear(32, num_classes))
