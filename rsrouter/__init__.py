"""rsrouter: certified robustness by randomized smoothing beyond one global noise level.

The names below are imported on first use (PEP 562), so that ``import rsrouter`` and the
command line start without loading torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

from ._moved import MOVED as _MOVED  # noqa: E402
from ._moved import install as _install_moved  # noqa: E402
from .errors import (  # noqa: E402
    CardError,
    ConfigError,
    CountsError,
    DatasetNotFoundError,
    HubError,
    IntegrityError,
    LockedError,
    RegistryError,
    ResultsError,
    ResumeError,
    RsrouterError,
    UnknownArchitectureError,
    UnknownExpertError,
    UntrustedCodeError,
)

_install_moved()  # old module paths (rsrouter.smoothing, ...) import with a DeprecationWarning

_LAZY = {
    "DatasetInfo": "data", "load_dataset": "data",
    "Expert": "registry.expert", "load_expert_folder": "registry.expert",
    "Registry": "registry.core", "load_expert": "registry.core",
    "RoutedCertificate": "certify.routed", "RoutedClassifier": "routing.routed",
    "SmoothedRouter": "routing.router", "load_routed": "routing.load",
    "load_router": "routing.load",
    "ABSTAIN": "certify.bounds", "Certificate": "certify.bounds",
    "Smooth": "certify.smoothing",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if f"{__name__}.{name}" in _MOVED:  # rsrouter.config.load_config, as docs for 0.2 wrote it
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'rsrouter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "ABSTAIN", "CardError", "Certificate", "ConfigError", "CountsError", "DatasetInfo",
    "DatasetNotFoundError", "Expert", "HubError", "IntegrityError", "LockedError", "Registry",
    "RegistryError", "ResultsError", "ResumeError", "RsrouterError", "Smooth",
    "UnknownArchitectureError", "UnknownExpertError", "UntrustedCodeError", "__version__",
    "load_dataset", "load_expert", "load_expert_folder", "RoutedCertificate", "RoutedClassifier",
    "SmoothedRouter", "load_routed", "load_router",
]
