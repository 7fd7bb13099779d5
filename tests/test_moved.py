"""Old public module paths (rsrouter 0.2's flat layout) still import, warn with the name's new
home, and give the very objects of the new modules."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import subprocess
import sys
import warnings

import pytest

import rsrouter
from rsrouter._moved import MOVED


def _defined_names(module_name: str) -> list[str]:
    """The public functions and classes defined in a module (not those it imports)."""
    module = importlib.import_module(module_name)
    return [name for name, value in vars(module).items() if not name.startswith("_")
            and (inspect.isfunction(value) or inspect.isclass(value))
            and value.__module__ == module_name]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_name_of_the_new_homes_answers_to_the_old_path(old):
    module = importlib.import_module(old)
    package = hasattr(module, "__path__")  # a package replaced the old module
    for new in MOVED[old]:
        for name in _defined_names(new):
            if name in vars(module) or (package and importlib.util.find_spec(f"{old}.{name}")):
                continue  # the module holds the name itself (rsrouter.cli.main, the entry
                # point as in 0.2; bench.store's imports), or its submodule of that name wins
            with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} has moved") as caught:
                value = getattr(module, name)
            home = next(m for m in MOVED[old] if hasattr(importlib.import_module(m), name))
            assert value is getattr(importlib.import_module(home), name)
            assert caught[0].filename == __file__  # attributed to the code that used it


def test_old_import_statements_work_and_warn():
    with pytest.warns(DeprecationWarning, match="import Smooth from rsrouter.certify.smoothing"):
        from rsrouter.smoothing import Smooth
    with pytest.warns(DeprecationWarning, match="import Registry from rsrouter.registry.core"):
        from rsrouter.registry import Registry
    with pytest.warns(DeprecationWarning, match="import read_tsv from rsrouter.results.tsv"):
        from rsrouter.results import read_tsv
    with pytest.warns(DeprecationWarning, match="import build_site from rsrouter.leaderboard"):
        from rsrouter.leaderboard import build_site
    with pytest.warns(DeprecationWarning, match="import train_router from rsrouter.training"):
        import rsrouter.train
        train_router = rsrouter.train.train_router
    from rsrouter.certify.smoothing import Smooth as new_smooth
    from rsrouter.leaderboard.board import build_site as new_build_site
    from rsrouter.registry.core import Registry as new_registry
    from rsrouter.results.tsv import read_tsv as new_read_tsv
    from rsrouter.training.router import train_router as new_train_router
    assert (Smooth, Registry, read_tsv, build_site, train_router) == (
        new_smooth, new_registry, new_read_tsv, new_build_site, new_train_router)


def test_old_modules_answer_as_attributes_of_the_package():
    with pytest.warns(DeprecationWarning, match="import load_config from rsrouter.routing.config"):
        load_config = rsrouter.config.load_config
    assert load_config is importlib.import_module("rsrouter.routing.config").load_config


def test_submodules_of_the_new_packages_are_not_shadowed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from rsrouter.registry import core
        from rsrouter.results import runs
    assert core.__name__ == "rsrouter.registry.core" and runs.__name__ == "rsrouter.results.runs"


def test_unknown_old_names_fail_as_before():
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        from rsrouter.smoothing import no_such_name  # noqa: F401
    with pytest.raises(AttributeError, match="'rsrouter.registry' has no attribute"):
        rsrouter.registry.no_such_name  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("rsrouter.no_such_module")


def test_top_level_lazy_names_still_work():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = {name: getattr(rsrouter, name) for name in rsrouter.__all__}
    assert values["Registry"] is importlib.import_module("rsrouter.registry.core").Registry


def test_old_paths_and_new_packages_import_no_heavy_module():
    code = ("import sys, warnings; warnings.simplefilter('ignore')\n"
            "import rsrouter.registry, rsrouter.results, rsrouter.leaderboard, rsrouter.cli\n"
            "import rsrouter.smoothing, rsrouter.card\n"
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'rsrouter.', 'numpy'))"
            " and not m.startswith('rsrouter.cli.')))")  # the parser's modules: argparse only
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert eval(done.stdout) == ["rsrouter._moved", "rsrouter.card", "rsrouter.cli",
                                 "rsrouter.errors", "rsrouter.leaderboard", "rsrouter.registry",
                                 "rsrouter.results", "rsrouter.smoothing"]


def test_renamed_names_answer_under_their_old_names():
    import rsrouter.bench.config
    import rsrouter.bench.store
    from rsrouter.cards.pins import ARTIFACT_FILES
    from rsrouter.protocol import CARD_RADII, RADII

    with pytest.warns(DeprecationWarning, match="import CARD_RADII from rsrouter.protocol"):
        from rsrouter.card import STANDARD_RADII
    with pytest.warns(DeprecationWarning, match="import ARTIFACT_FILES from rsrouter.cards.pins"):
        from rsrouter.hub import EXPERT_FILES
    with pytest.warns(DeprecationWarning, match="import read_counts from rsrouter.bench.counts"):
        read_counts = rsrouter.bench.store.read_counts
    with pytest.warns(DeprecationWarning, match="import RADII from rsrouter.protocol"):
        assert rsrouter.bench.config.DEFAULT_RADII is RADII
    assert STANDARD_RADII is CARD_RADII and EXPERT_FILES is ARTIFACT_FILES
    assert read_counts is importlib.import_module("rsrouter.bench.counts").read_counts
