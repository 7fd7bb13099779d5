"""Old public module paths (rsrouter 0.2's flat layout) kept importable, with a DeprecationWarning.

``MOVED`` maps each old module to the modules its names now live in, searched in order. An old
module that no longer exists (``rsrouter.smoothing``) is served by a finder placed last on
``sys.meta_path``, so it never shadows a real module: it builds an alias module whose attributes
are looked up in the new modules. An old module that is now a package (``rsrouter.registry``)
offers the old names through the package's own ``__getattr__`` (``moved_attribute``). Either way a
name is looked up only when used, and each use warns with the name's new home.

This module imports nothing from rsrouter: the new modules are imported by name, on first use.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Any

MOVED: dict[str, tuple[str, ...]] = {
    "rsrouter.smoothing": ("rsrouter.certify.smoothing", "rsrouter.certify.bounds",
                           "rsrouter.certify.noise", "rsrouter.certify.sequential"),
    "rsrouter.set_certificate": ("rsrouter.certify.set_certificate", "rsrouter.certify.bounds"),
    "rsrouter.tree": ("rsrouter.certify.tree",),
    "rsrouter.card": ("rsrouter.cards.expert", "rsrouter.cards.pins", "rsrouter.cards.header",
                      "rsrouter.registry.weights"),
    "rsrouter.hub": ("rsrouter.sources.hub", "rsrouter.cards.refs", "rsrouter.cards.pins"),
    "rsrouter.gitremote": ("rsrouter.sources.git", "rsrouter.cards.refs", "rsrouter.cards.pins"),
    "rsrouter.publish": ("rsrouter.sources.publish",),
    "rsrouter.registry": ("rsrouter.registry.core", "rsrouter.registry.entries",
                          "rsrouter.cards.refs", "rsrouter.sources.base"),
    "rsrouter.expert": ("rsrouter.registry.expert", "rsrouter.cards.expert",
                        "rsrouter.registry.weights"),
    "rsrouter.weights": ("rsrouter.registry.weights",),
    "rsrouter.denoised": ("rsrouter.registry.denoised", "rsrouter.cards.denoiser",
                          "rsrouter.training.denoiser", "rsrouter.registry.denoised_card",
                          "rsrouter.training.fit"),
    "rsrouter.importers": ("rsrouter.registry.importers",),
    "rsrouter.diffusion_import": ("rsrouter.registry.diffusion",),
    "rsrouter.config": ("rsrouter.routing.config",),
    "rsrouter.labels": ("rsrouter.routing.labels",),
    "rsrouter.router": ("rsrouter.routing.router", "rsrouter.routing.routed",
                        "rsrouter.routing.load", "rsrouter.cards.router", "rsrouter.certify.routed",
                        "rsrouter.certify.set_certificate", "rsrouter.registry.weights"),
    "rsrouter.train": ("rsrouter.training.expert", "rsrouter.training.router",
                       "rsrouter.training.fit", "rsrouter.training.loss"),
    "rsrouter.results": ("rsrouter.results.tsv", "rsrouter.results.rows", "rsrouter.results.logs",
                         "rsrouter.results.curves", "rsrouter.protocol", "rsrouter.certify.checks",
                         "rsrouter.certify.routed", "rsrouter.certify.cascade",
                         "rsrouter.bench.counts"),
    "rsrouter.runs": ("rsrouter.results.runs", "rsrouter.results.rows"),
    "rsrouter.leaderboard": ("rsrouter.leaderboard.board", "rsrouter.leaderboard.entries",
                             "rsrouter.leaderboard.logs", "rsrouter.leaderboard.site",
                             "rsrouter.leaderboard.publishing", "rsrouter.leaderboard.views",
                             "rsrouter.leaderboard.plots"),
    "rsrouter.cli": ("rsrouter.cli.app", "rsrouter.cli.common", "rsrouter.cli.certify",
                     "rsrouter.cli.experts", "rsrouter.cli.experts_import",
                     "rsrouter.cli.experts_publish", "rsrouter.cli.router", "rsrouter.cli.bench",
                     "rsrouter.cli.leaderboard", "rsrouter.cli.dualrs"),
    "rsrouter.demo": ("rsrouter.bench.demo",),
    # modules that stayed, whose names moved on
    "rsrouter.bench.store": ("rsrouter.bench.counts",),
    "rsrouter.bench.methods": ("rsrouter.certify.cascade", "rsrouter.bench.accounting"),
    "rsrouter.bench.report": ("rsrouter.bench.readback",),
    "rsrouter.bench.config": ("rsrouter.protocol",),
    "rsrouter.dualrs.loop": ("rsrouter.dualrs.rounds",),
}

# names that moved under another name: (old module, old name) -> (new module, new name)
RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("rsrouter.card", "STANDARD_RADII"): ("rsrouter.protocol", "CARD_RADII"),
    ("rsrouter.bench.config", "DEFAULT_RADII"): ("rsrouter.protocol", "RADII"),
    ("rsrouter.hub", "EXPERT_FILES"): ("rsrouter.cards.pins", "ARTIFACT_FILES"),
    ("rsrouter.gitremote", "EXPERT_FILES"): ("rsrouter.cards.pins", "ARTIFACT_FILES"),
}


def moved_attribute(old: str, name: str) -> Any:
    """``old.name`` looked up in the modules ``old`` moved to (warns with the new home).

    Raises AttributeError if none has it, or if ``name`` is a submodule of the package ``old``
    (so that ``from rsrouter.registry import core`` imports the submodule)."""
    if (old, name) in RENAMED:
        new, new_name = RENAMED[old, name]
        _warn(f"{old}.{name} has moved: import {new_name} from {new}")
        return getattr(importlib.import_module(new), new_name)
    if not (name.startswith("__") and name.endswith("__")) and not _is_submodule(old, name):
        for new in MOVED[old]:
            module = importlib.import_module(new)
            if hasattr(module, name):
                _warn(f"{old}.{name} has moved: import {name} from {new}")
                return getattr(module, name)
    raise AttributeError(f"module {old!r} has no attribute {name!r}")


def getattr_for(package: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a package that replaced the old module of the same name, or of
    a module some of whose names moved on."""
    def __getattr__(name: str) -> Any:
        return moved_attribute(package, name)
    return __getattr__


def _is_submodule(old: str, name: str) -> bool:
    module = sys.modules.get(old)
    return hasattr(module, "__path__") and importlib.util.find_spec(f"{old}.{name}") is not None


def _warn(message: str) -> None:
    """A DeprecationWarning attributed to the code that used the old name: the frames of this
    module are counted off; warnings itself skips the import machinery's."""
    frame, level = sys._getframe(0), 1
    while frame is not None and (frame.f_globals.get("__name__") == __name__
                                 or frame.f_code.co_filename.startswith("<frozen importlib")):
        level += frame.f_globals.get("__name__") == __name__
        frame = frame.f_back
    warnings.warn(message, DeprecationWarning, stacklevel=level)


class _AliasLoader(importlib.abc.Loader):
    """Makes an old module an empty module whose attributes are looked up in its new homes."""

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__doc__ = f"Moved: its names are in {', '.join(MOVED[module.__name__])}."
        module.__getattr__ = getattr_for(module.__name__)  # type: ignore[method-assign]


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds the old modules that no longer exist; placed last, it never shadows a real one."""

    def find_spec(self, fullname: str, path: Any = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader())


def install() -> None:
    """Append ``MovedFinder`` to ``sys.meta_path`` (once)."""
    if not any(type(finder).__name__ == "MovedFinder" for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
