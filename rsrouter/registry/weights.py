"""Weights: build a card's network from verified bytes (safetensors only), check its shapes first
(on the meta device), and write weights with their card.

Every card kind (expert, router) names its network by a
:class:`~rsrouter.cards.header.Header`; :func:`build_model` is the one place a header becomes a
network.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..cards.expert import ExpertCard, write_card
from ..cards.header import Header
from ..cards.pins import CONFIG_FILE, WEIGHTS_FILE, ArtifactFiles, safetensors_shapes
from ..cards.router import RouterCard, write_router_card
from ..errors import CardError, UnknownArchitectureError
from ..files import save_tensors, sha256_file, tensors_from_bytes
from ..models import Trust, create_model, known_layers
from ..models.normalize import NormalizedModel, Resize

Card = ExpertCard | RouterCard


def build_model(header: Header, trust_code: Trust = False,
                where: str = CONFIG_FILE) -> NormalizedModel:
    """A freshly initialized network of ``header``: ``Normalize(mean, std)`` + the architecture
    (built for ``header.resize`` when given, with a :class:`~rsrouter.models.Resize` in front).

    Raises:
        UntrustedCodeError: a ``module:factory`` architecture without the opt-in.
        CardError: an architecture that no source knows (``where`` names the card).
    """
    resize = header.resize
    try:
        net = create_model(header.architecture, header.num_classes, header.model_input_size,
                           trust_code=trust_code)
    except UnknownArchitectureError as e:
        raise CardError(f"{where}: architecture: {e}") from e
    return NormalizedModel(net, header.mean, header.std,
                           Resize(resize.size, resize.mode, resize.antialias) if resize else None)


def build_network(card: Card, files: ArtifactFiles, trust_code: Trust = False) -> NormalizedModel:
    """The card's architecture (normalization in front) with the weights from ``files.weights``.

    The weights are parsed from the bytes that were hashed, never re-read from disk.

    Raises:
        UntrustedCodeError: a ``module:factory`` architecture without the opt-in.
        CardError: an unknown architecture, or weights that do not fit it.
        IntegrityError: bytes that are not a safetensors file.
    """
    where = str(files.folder / WEIGHTS_FILE)
    model = build_model(card.header, trust_code, str(files.folder / CONFIG_FILE))
    tensors, _ = tensors_from_bytes(files.weights, where)
    check_state_dict(model.net, tensors, card.header, where)
    model.net.load_state_dict(tensors, strict=True)
    return model


def check_weight_sizes(card: Card, files: ArtifactFiles, trust_code: Trust = False) -> None:
    """Refuse a card whose sizes do not fit its weights before any network is built.

    The weights' shapes come from their safetensors header. The classifier head must have
    ``num_classes`` outputs and the first convolution ``input_size[0]`` input channels (for
    rsrouter's and timm's architectures, whose layer names are known); then the card's network
    is built on the meta device (no memory, no data) and every shape compared, so no card makes
    a network larger than its weights. A factory that cannot build on the meta device is left
    to the strict load after building; its weights must then have some layer of ``num_classes``
    outputs.

    Raises:
        CardError: naming the card's field and the weights' size.
        IntegrityError: the weights are not a safetensors file.
    """
    header = card.header
    config, weights = str(files.folder / CONFIG_FILE), str(files.folder / WEIGHTS_FILE)
    shapes = safetensors_shapes(files.weights, weights)
    heads, first_conv = known_layers(header.architecture)
    for head in heads:
        shape = shapes.get(f"{head}.weight", ())
        if len(shape) >= 2 and shape[0] != header.num_classes:
            raise CardError(f"{config}: class-count mismatch: the card says num_classes="
                            f"{header.num_classes}, the weights' classifier head {head}.weight "
                            f"has {shape[0]} outputs ({weights}); set num_classes to {shape[0]}, "
                            "or these weights are another model's")
    shape = shapes.get(f"{first_conv}.weight", ())
    if len(shape) == 4 and shape[1] != header.input_size[0]:
        raise CardError(f"{config}: pretrained_cfg.input_size has {header.input_size[0]} "
                        f"channels but the weights' first convolution {first_conv}.weight takes "
                        f"{shape[1]} ({weights}); set input_size[0] and mean/std to {shape[1]}")
    try:
        with torch.device("meta"):
            net = build_model(header, trust_code, config).net
    except (RuntimeError, NotImplementedError):  # no meta build: checked after the real one
        if not heads and not any(len(s) >= 2 and s[0] == header.num_classes
                                 for s in shapes.values()):
            raise CardError(f"{config}: num_classes is {header.num_classes} but no layer of the "
                            f"weights ({weights}) has that many outputs; set num_classes to "
                            "the outputs of their classifier head") from None
        return
    check_state_dict(net, {k: torch.empty(s, device="meta") for k, s in shapes.items()}, header,
                     weights)


def check_state_dict(net: nn.Module, tensors: dict[str, torch.Tensor], header: Header,
                     where: str) -> None:
    """Raise :class:`CardError` when ``tensors`` do not fit ``net`` built from ``header``."""
    own = net.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CardError(f"{where}: weights do not match architecture {header.architecture!r}: "
                        f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            if (value.dim() >= 1 and tensors[key].dim() >= 1
                    and value.shape[0] == header.num_classes):
                hint = (f" (class-count mismatch: the card says num_classes="
                        f"{header.num_classes}, the weights have {tensors[key].shape[0]} "
                        "outputs)")
            else:
                hint = (f" (does the network's input size {list(header.model_input_size)} - the "
                        "card's input_size, or rs_expert.resize when set - match the weights?)")
            raise CardError(f"{where}: weight {key} has shape {list(tensors[key].shape)} but "
                            f"the card's architecture expects {list(value.shape)}{hint}")


def save_weights(folder: str | os.PathLike, net: nn.Module) -> str:
    """Write ``net``'s state dict to ``folder/model.safetensors``; returns its sha256."""
    save_tensors(Path(folder) / WEIGHTS_FILE, net.state_dict())
    return sha256_file(Path(folder) / WEIGHTS_FILE)


def save_expert(folder: str | os.PathLike, net: nn.Module, card: ExpertCard) -> Path:
    """Write ``net``'s weights, config.json and README.md to ``folder``; returns the folder.

    ``card.weights_sha256`` is set from the written file.
    """
    card.weights_sha256 = save_weights(folder, net)
    write_card(folder, card)
    return Path(folder)


def save_router(folder: str | os.PathLike, net: nn.Module, card: RouterCard) -> Path:
    """Write model.safetensors, config.json and README.md; sets ``card.weights_sha256``."""
    card.weights_sha256 = save_weights(folder, net)
    write_router_card(folder, card)
    return Path(folder)
