"""Import the checkpoints people already have (Cohen et al., SmoothAdv, plain state dicts).

Legacy checkpoints are pickles: they are read with ``torch.load(weights_only=True)`` only, here and
nowhere else, and written out as an expert folder (safetensors + card).

* ``cohen``: ``{"arch", "state_dict", ...}`` of ``Sequential(NormalizeLayer, classifier)``: keys
  ``1.<layer>`` (CIFAR) or ``1.module.<layer>`` (ImageNet, DataParallel inside).
* ``smoothadv``: the same architectures, often saved with DataParallel around the whole
  ``Sequential`` (``module.1.<layer>``) and possibly with the normalization's ``0.means``/``0.sds``
  (or ``0.mu``/``0.sigma``) stored as tensors.
* ``state_dict``: the bare network's state dict (optionally under ``"state_dict"`` and/or with a
  ``module.`` prefix).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cards.expert import ExpertCard
from ..cards.header import ResizeSpec
from ..data import dataset_info
from ..errors import CardError
from ..models import architecture_source, create_model
from .weights import check_state_dict, save_expert

FORMATS = ("cohen", "smoothadv", "state_dict")
# Cohen et al.'s / SmoothAdv's architecture names -> rsrouter / timm names
ARCH_ALIASES = {"cifar_resnet20": "cifar_resnet20", "cifar_resnet110": "cifar_resnet110",
                "resnet50": "resnet50", "imagenet_resnet50": "resnet50"}
_NORM_KEYS = (("means", "sds"), ("mu", "sigma"), ("mean", "std"))


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def split_state_dict(raw: dict[str, torch.Tensor], fmt: str) -> tuple[dict, dict]:
    """Split a checkpoint's state dict into (network weights, normalization tensors)."""
    net, norm = {}, {}
    for key, value in raw.items():
        key = _strip(key, "module.")
        if fmt in ("cohen", "smoothadv"):
            if key.startswith("0."):
                norm[key[2:]] = value
                continue
            if not key.startswith("1."):
                raise CardError(f"checkpoint key {key!r} is not under module 1 of "
                                "Sequential(normalize, classifier); is --format right?")
            key = _strip(key[2:], "module.")
        net[key] = value
    return net, norm


def read_checkpoint(path: str | os.PathLike) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, no code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure gets the same advice
        raise CardError(f"{path}: cannot be read as a weights-only checkpoint ({e}); rsrouter "
                        "never unpickles arbitrary objects. Re-save it as a state dict "
                        "(torch.save(model.state_dict(), ...)) and use --format state_dict") from e


def import_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str,
    sigma: float,
    dataset: str,
    arch: str | None = None,
    name: str = "",
    resize: ResizeSpec | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Path:
    """Convert a legacy checkpoint into an expert folder at ``out``; returns ``out``.

    ``resize``: the network was trained at another resolution (e.g. a 224-pixel ViT on 32-pixel
    CIFAR-10); the card resizes the (noisy) dataset images to it before the normalization. The
    noise, sigma and certificate stay in the dataset's pixels.
    ``mean``/``std``: the network's input normalization (default: stored in the checkpoint,
    else the dataset's).

    Raises:
        CardError: unknown format, missing architecture, keys or shapes that do not fit.
    """
    if fmt not in FORMATS:
        raise CardError(f"unknown checkpoint format {fmt!r}; use one of {FORMATS}")
    obj = read_checkpoint(checkpoint)
    raw = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(raw, dict) or not all(torch.is_tensor(v) for v in raw.values()):
        raise CardError(f"{checkpoint}: no state dict of tensors found (keys: "
                        f"{list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__})")
    arch = arch or ARCH_ALIASES.get(str(obj.get("arch", "")))
    if not arch:
        raise CardError(f"{checkpoint}: architecture unknown (checkpoint arch "
                        f"{obj.get('arch')!r}); pass --arch")
    arch = ARCH_ALIASES.get(arch, arch)
    info = dataset_info(dataset)
    net_sd, norm = split_state_dict(raw, fmt)
    if (mean is None) != (std is None):
        raise CardError("give both --mean and --std (one value per channel), or neither")
    if mean is None:  # the user's, else the checkpoint's, else the dataset's
        mean, std = info.mean, info.std
        for m_key, s_key in _NORM_KEYS:
            if m_key in norm and s_key in norm:
                mean = tuple(float(v) for v in norm[m_key].flatten())
                std = tuple(float(v) for v in norm[s_key].flatten())
    mean, std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
    num_classes = _num_classes(net_sd, info.num_classes)
    card = ExpertCard(architecture=arch, num_classes=num_classes, input_size=info.input_size,
                      mean=mean, std=std, sigma=float(sigma), dataset=info.name,
                      label_names=list(info.label_names) if num_classes == info.num_classes else [],
                      arch_source=architecture_source(arch), name=name,
                      training={"imported_from": Path(checkpoint).name, "format": fmt,
                                "checkpoint_arch": str(obj.get("arch", "")),
                                "checkpoint_epoch": obj.get("epoch")},
                      resize=resize)
    card.validate("imported card")
    # arch is the user's --arch or an alias from ARCH_ALIASES: never a name read from the file
    net = create_model(arch, num_classes, card.model_input_size, trust_code=True)
    check_state_dict(net, net_sd, card.header, str(checkpoint))
    net.load_state_dict(net_sd, strict=True)
    return save_expert(out, net, card)


def _num_classes(state_dict: dict[str, torch.Tensor], default: int) -> int:
    for key in ("fc.weight", "linear.weight", "head.fc.weight", "head.weight",
                "classifier.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return default
