"""Weights: build a network from verified bytes (safetensors only), check shapes, save."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..cards.card import WEIGHTS_FILE, ArtifactFiles
from ..errors import CardError
from ..files import save_tensors, sha256_file, tensors_from_bytes
from ..models import Trust
from ..models.normalize import NormalizedModel


def build_network(card, files: ArtifactFiles, trust_code: Trust = False) -> NormalizedModel:
    """The card's architecture (normalization in front) with the weights from ``files.weights``.

    The weights are parsed from the bytes that were hashed, never re-read from disk.

    Raises:
        UntrustedCodeError: a ``module:factory`` architecture without the opt-in.
        CardError: an unknown architecture, or weights that do not fit it.
        IntegrityError: bytes that are not a safetensors file.
    """
    where = str(files.folder / WEIGHTS_FILE)
    model = card.build_model(trust_code, str(files.folder / "config.json"))
    tensors, _ = tensors_from_bytes(files.weights, where)
    check_state_dict(model.net, tensors, card, where)
    model.net.load_state_dict(tensors, strict=True)
    return model


def check_state_dict(net: nn.Module, tensors: dict[str, torch.Tensor], card, where: str) -> None:
    """Raise :class:`CardError` when ``tensors`` do not fit ``net`` built from ``card``."""
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CardError(f"{where}: weights do not match architecture {card.architecture!r}: "
                        f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            if value.dim() >= 1 and tensors[key].dim() >= 1 and value.shape[0] == card.num_classes:
                hint = (f" (class-count mismatch: the card says num_classes={card.num_classes}, "
                        f"the weights have {tensors[key].shape[0]} outputs)")
            else:
                size = list(getattr(card, "model_input_size", card.input_size))
                hint = (f" (does the network's input size {size} - the card's input_size, "
                        "or rs_expert.resize when set - match the weights?)")
            raise CardError(f"{where}: weight {key} has shape {list(tensors[key].shape)} but "
                            f"the card's architecture expects {list(value.shape)}{hint}")


def save_weights(folder: str | os.PathLike, net: nn.Module) -> str:
    """Write ``net``'s state dict to ``folder/model.safetensors``; returns its sha256."""
    save_tensors(Path(folder) / WEIGHTS_FILE, net.state_dict())
    return sha256_file(Path(folder) / WEIGHTS_FILE)
