"""Architecture factories: one registry, small functions, no magic.

An architecture name resolves, in this order, to
1. an rsrouter factory (``cnn_small``, ``cnn_tiny``, ``cifar_resnet20``, ``cifar_resnet110``);
2. a ``module:factory`` string (any importable callable);
3. a factory an installed package registers under the entry-point group ``rsrouter.architectures``;
4. a timm model name (``resnet50``, ``vit_tiny_patch16_224``, ...).

Every factory is called as ``factory(num_classes=..., input_size=(C, H, W))`` and returns the bare
network; :func:`create_classifier` puts the :class:`Normalize` layer in front of it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

import timm
from torch import nn

from ..errors import UnknownArchitectureError
from .cifar_resnet import CifarResNet
from .normalize import Normalize, NormalizedModel
from .small_cnn import SmallCNN

Factory = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "rsrouter.architectures"
_FACTORIES: dict[str, Factory] = {}


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(num_classes, input_size)`` under ``name``."""

    def wrap(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        return factory

    return wrap


@register_model("cnn_small")
def cnn_small(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """Expert CNN for 28x28 / 8x8 inputs: strided convs 32-64-128, MLP 128 (~0.36M params)."""
    return SmallCNN(num_classes, input_size, widths=(32, 64, 128), hidden=128)


@register_model("cnn_tiny")
def cnn_tiny(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """Router CNN: strided convs 8-16-32, MLP 64 (about a fifth of cnn_small's forward cost)."""
    return SmallCNN(num_classes, input_size, widths=(8, 16, 32), hidden=64)


@register_model("cifar_resnet20")
def cifar_resnet20(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """CIFAR ResNet-20 (Cohen et al.'s module names)."""
    return CifarResNet(20, num_classes, in_chans=input_size[0])


@register_model("cifar_resnet110")
def cifar_resnet110(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """CIFAR ResNet-110, the architecture of Cohen et al.'s CIFAR-10 experts."""
    return CifarResNet(110, num_classes, in_chans=input_size[0])


def _plugin_factory(arch: str) -> Factory | None:
    if ":" in arch:
        module_name, _, attr = arch.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise UnknownArchitectureError(
                f"architecture {arch!r}: cannot import {attr!r} from module {module_name!r} ({e}); "
                "a 'module:factory' architecture must name an importable callable"
            ) from e
        return factory
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == arch:
            return ep.load()
    return None


def architecture_source(arch: str) -> str:
    """Where ``arch`` comes from: "rsrouter", "plugin" or "timm" (raises if from nowhere)."""
    resolve_architecture(arch)
    if arch in _FACTORIES:
        return "rsrouter"
    if ":" in arch or any(ep.name == arch for ep in entry_points(group=ENTRY_POINT_GROUP)):
        return "plugin"
    return "timm"


def resolve_architecture(arch: str) -> Factory:
    """The factory for ``arch``.

    Raises:
        UnknownArchitectureError: if no source knows the name.
    """
    if arch in _FACTORIES:
        return _FACTORIES[arch]
    plugin = _plugin_factory(arch)
    if plugin is not None:
        return plugin
    name = arch.removeprefix("timm/")
    if timm.is_model(name):
        return lambda num_classes, input_size: timm.create_model(
            name, pretrained=False, num_classes=num_classes, in_chans=input_size[0]
        )
    raise UnknownArchitectureError(
        f"unknown architecture {arch!r}: not an rsrouter model ({', '.join(sorted(_FACTORIES))}), "
        f"not a 'module:factory' string, not registered under the entry-point group "
        f"{ENTRY_POINT_GROUP!r}, and not a timm model (see timm.list_models())"
    )


def create_model(arch: str, num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """The bare network ``arch`` for ``num_classes`` classes and inputs of ``input_size``."""
    return resolve_architecture(arch)(num_classes=num_classes, input_size=tuple(input_size))


def create_classifier(arch: str, num_classes: int, input_size: Sequence[int],
                      mean: Sequence[float], std: Sequence[float]) -> NormalizedModel:
    """``Normalize(mean, std)`` followed by ``create_model(arch, ...)``: takes pixels in [0, 1]."""
    return NormalizedModel(create_model(arch, num_classes, input_size), mean, std)


def list_models() -> list[str]:
    """rsrouter's own architecture names."""
    return sorted(_FACTORIES)


__all__ = [
    "CifarResNet", "Normalize", "NormalizedModel", "SmallCNN", "architecture_source",
    "create_classifier", "create_model", "list_models", "register_model", "resolve_architecture",
]
