"""Where rsrouter keeps things: the project's zoo, the user's config, caches (light imports)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_REGISTRY = PROJECT_ROOT / "experts" / "registry.yaml"


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
