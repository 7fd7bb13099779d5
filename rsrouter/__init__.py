"""rsrouter: certified robustness by randomized smoothing beyond one global noise level."""

__version__ = "0.1.0"

from .data import DatasetInfo, load_dataset  # noqa: E402
from .errors import (  # noqa: E402
    CardError,
    ConfigError,
    DatasetNotFoundError,
    HubError,
    IntegrityError,
    RegistryError,
    ResumeError,
    RsrouterError,
    UnknownArchitectureError,
    UnknownExpertError,
)
from .expert import Expert, load_expert_folder  # noqa: E402
from .registry import Registry, load_expert  # noqa: E402
from .router import (  # noqa: E402
    RoutedCertificate,
    RoutedClassifier,
    SmoothedRouter,
    load_routed,
    load_router,
)
from .smoothing import ABSTAIN, Certificate, Smooth  # noqa: E402

__all__ = [
    "ABSTAIN", "CardError", "Certificate", "ConfigError", "DatasetInfo", "DatasetNotFoundError",
    "Expert", "HubError", "IntegrityError", "Registry", "RegistryError", "ResumeError",
    "RsrouterError", "Smooth", "UnknownArchitectureError", "UnknownExpertError", "__version__",
    "load_dataset", "load_expert", "load_expert_folder", "RoutedCertificate", "RoutedClassifier",
    "SmoothedRouter", "load_routed", "load_router",
]
