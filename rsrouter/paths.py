"""Where rsrouter keeps things: the project's zoo, the user's config, caches (light imports)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def _bundled_zoo() -> Path:
    """The bundled zoo's folder: ``rsrouter/zoo`` of an installed wheel (package data), else the
    ``experts/`` folder of the checkout this package is imported from."""
    installed = resources.files(__package__) / "zoo"
    if isinstance(installed, Path) and (installed / "registry.yaml").is_file():
        return installed
    return Path(__file__).resolve().parents[1] / "experts"


ZOO = _bundled_zoo()
ZOO_INSTALLED = ZOO.name == "zoo"  # package data of an installed wheel: a reinstall replaces it
PROJECT_REGISTRY = ZOO / "registry.yaml"


def user_config_dir() -> Path:
    """``$RSROUTER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/rsrouter``, else ``~/.config/rsrouter``."""
    if os.environ.get("RSROUTER_CONFIG_DIR"):
        return Path(os.environ["RSROUTER_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "rsrouter"


def user_registry() -> Path:
    """The user's registry file (experts and ``trusted_modules``)."""
    return user_config_dir() / "registry.yaml"


def cache_dir() -> Path:
    """``$RSROUTER_CACHE``, else ``$XDG_CACHE_HOME/rsrouter``, else ``~/.cache/rsrouter``."""
    if os.environ.get("RSROUTER_CACHE"):
        return Path(os.environ["RSROUTER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rsrouter"


def offline_mode(offline: bool | None = None) -> bool:
    """The explicit flag if given, else ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``), read
    now: one switch for the Hub cache and rsrouter's cache of git remotes."""
    if offline is not None:
        return bool(offline)
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in {"1", "true", "yes", "on"}
