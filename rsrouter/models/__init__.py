"""Architecture factories: one registry, small functions, no magic.

An architecture name resolves, in this order, to
1. an rsrouter factory (``cnn_small``, ``cnn_tiny``, ``cifar_resnet20``, ``cifar_resnet110``);
2. a ``module:factory`` string (any importable callable), only with the caller's opt-in
   (``trust_code``): importing a module runs its code, so a name that comes from a card is never
   imported unless the user says so (``--trust-code``, ``trust_code=True``, ``trusted_modules``);
3. a factory an installed package registers under the entry-point group ``rsrouter.architectures``;
4. a timm model name (``resnet50``, ``vit_tiny_patch16_224``, ...).

Every factory is called as ``factory(num_classes=..., input_size=(C, H, W))`` and returns the bare
network; :func:`create_classifier` puts the :class:`Normalize` layer in front of it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from importlib.metadata import entry_points

from torch import nn

from ..cards.header import check_architecture_name, is_code_reference
from ..errors import UnknownArchitectureError, UntrustedCodeError
from ..paths import user_registry
from .cifar_resnet import CifarResNet
from .normalize import Normalize, NormalizedModel, Resize
from .small_cnn import SmallCNN

Factory = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "rsrouter.architectures"
_FACTORIES: dict[str, Factory] = {}
_LAYERS: dict[str, tuple[tuple[str, ...], str | None]] = {}


def register_model(name: str, *, head: str | Sequence[str] = (),
                   first_conv: str | None = None) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory(num_classes, input_size)`` under ``name``. ``head`` (the
    classifier layer's module name, or names) and ``first_conv`` let a card's ``num_classes``
    and input channels be checked against the weights before anything is built."""

    def wrap(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        _LAYERS[name] = ((head,) if isinstance(head, str) else tuple(head), first_conv)
        return factory

    return wrap


def known_layers(arch: str) -> tuple[tuple[str, ...], str | None]:
    """``(head module names, first convolution's module name)`` of ``arch`` where known without
    building it: rsrouter's factories declare them, timm's pretrained configs name them
    (``classifier``, ``first_conv``); ``((), None)`` for code and entry points (imports none)."""
    if arch in _FACTORIES:
        return _LAYERS.get(arch, ((), None))
    if is_code_reference(arch) or _entry_point(arch) is not None:
        return (), None
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch.removeprefix("timm/"))
    if cfg is None:
        return (), None
    head = cfg.classifier or ()
    first = cfg.first_conv
    return ((head,) if isinstance(head, str) else tuple(head),
            first if isinstance(first, str) else None)


@register_model("cnn_small", head="head.3", first_conv="features.0")
def cnn_small(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """Expert CNN for 28x28 / 8x8 inputs: strided convs 32-64-128, MLP 128 (~0.36M params)."""
    return SmallCNN(num_classes, input_size, widths=(32, 64, 128), hidden=128)


@register_model("cnn_tiny", head="head.3", first_conv="features.0")
def cnn_tiny(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """Router CNN: strided convs 8-16-32, MLP 64 (about a fifth of cnn_small's forward cost)."""
    return SmallCNN(num_classes, input_size, widths=(8, 16, 32), hidden=64)


@register_model("cifar_resnet20", head="fc", first_conv="conv1")
def cifar_resnet20(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """CIFAR ResNet-20 (Cohen et al.'s module names)."""
    return CifarResNet(20, num_classes, in_chans=input_size[0])


@register_model("cifar_resnet110", head="fc", first_conv="conv1")
def cifar_resnet110(num_classes: int, input_size: Sequence[int]) -> nn.Module:
    """CIFAR ResNet-110, the architecture of Cohen et al.'s CIFAR-10 experts."""
    return CifarResNet(110, num_classes, in_chans=input_size[0])


Trust = bool | Collection[str]


def is_trusted(arch: str, trust_code: Trust) -> bool:
    """Whether a ``module:factory`` architecture may be imported under ``trust_code``: True
    trusts everything, a collection trusts those modules and their submodules."""
    if isinstance(trust_code, bool):
        return trust_code
    if isinstance(trust_code, str):
        raise TypeError(f"trust_code must be True/False or a collection of module names, got "
                        f"the string {trust_code!r} (write [{trust_code!r}])")
    module = arch.partition(":")[0]
    return any(module == m or module.startswith(m + ".") for m in trust_code)


def _entry_point(arch: str):
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == arch:
            return ep
    return None


def architecture_source(arch: str) -> str:
    """Where ``arch`` would come from: "rsrouter", "plugin" or "timm" (imports nothing)."""
    if arch in _FACTORIES:
        return "rsrouter"
    if is_code_reference(arch) or _entry_point(arch) is not None:
        return "plugin"
    return "timm"


def resolve_architecture(arch: str, *, trust_code: Trust = False) -> Factory:
    """The factory for ``arch``.

    ``trust_code`` allows a ``module:factory`` name to be imported: True for any module, or a
    collection of trusted module names. Pass True only for names the user wrote (a plugin
    config, a command-line flag), never for names read from a card without the user's opt-in.

    Raises:
        UntrustedCodeError: ``arch`` is ``module:factory`` and ``trust_code`` does not allow it.
        UnknownArchitectureError: if no source knows the name.
    """
    if arch in _FACTORIES:
        return _FACTORIES[arch]
    if is_code_reference(arch):
        problem = check_architecture_name(arch)
        if problem:
            raise UnknownArchitectureError(f"architecture {problem}")
        if not is_trusted(arch, trust_code):
            module = arch.partition(":")[0]
            raise UntrustedCodeError(
                f"architecture {arch!r} names Python code: loading it would import module "
                f"{module!r} and run it. rsrouter never runs code named by a card without your "
                "opt-in. If you trust its author, pass --trust-code (CLI) or trust_code=True "
                f"(Python API), or list {module!r} under trusted_modules: in {user_registry()}; "
                "otherwise ask for a card with an "
                "rsrouter, timm or installed entry-point architecture")
        module_name, _, attr = arch.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise UnknownArchitectureError(
                f"architecture {arch!r}: cannot import {attr!r} from module {module_name!r} ({e}); "
                "a 'module:factory' architecture must name an importable callable"
            ) from e
    ep = _entry_point(arch)
    if ep is not None:
        return ep.load()
    import timm

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


def create_model(arch: str, num_classes: int, input_size: Sequence[int], *,
                 trust_code: Trust = False) -> nn.Module:
    """The bare network ``arch`` for ``num_classes`` classes and inputs of ``input_size``."""
    factory = resolve_architecture(arch, trust_code=trust_code)
    return factory(num_classes=num_classes, input_size=tuple(input_size))


def create_classifier(arch: str, num_classes: int, input_size: Sequence[int],
                      mean: Sequence[float], std: Sequence[float], *,
                      trust_code: Trust = False) -> NormalizedModel:
    """``Normalize(mean, std)`` followed by ``create_model(arch, ...)``: takes pixels in [0, 1]."""
    return NormalizedModel(create_model(arch, num_classes, input_size, trust_code=trust_code),
                           mean, std)


def list_models() -> list[str]:
    """rsrouter's own architecture names."""
    return sorted(_FACTORIES)


__all__ = [
    "RESIZE_MODES", "CifarResNet", "Normalize", "NormalizedModel", "Resize", "SmallCNN",
    "architecture_source", "check_architecture_name", "create_classifier", "create_model",
    "is_trusted", "known_layers", "list_models", "register_model", "resolve_architecture",
]
