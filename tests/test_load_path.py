"""The one load path: cards, sources, models and the registry import downward only, cards and
sources load neither torch nor the Hub client, and loading a router runs resolve -> fetch ->
check -> build, each step for all its experts, without a call back up the layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGE = Path(__file__).resolve().parents[1] / "rsrouter"
OWN = ("rsrouter.cards", "rsrouter.sources", "rsrouter.models", "rsrouter.registry",
       "rsrouter.training.denoiser", "rsrouter.routing.load")
LAYERS = ("errors", "files", "urls", "runtime", "distributed", "paths", "protocol", "certify",
          "data", "cards", "sources", "models", "registry", "routing", "training")


def _layer(module: str) -> int:
    """The layer of an rsrouter module (-1: the package itself, or a module of no layer)."""
    part = module.split(".")[1] if module.count(".") else ""
    return LAYERS.index(part) if part in LAYERS else -1


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> list[tuple[str, bool]]:
    """``(imported rsrouter module, inside a function)`` of every import in ``path``."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.ImportFrom):
                base = package.split(".")[:len(package.split(".")) - child.level + 1]
                target = (".".join(base + [child.module] if child.module else base)
                          if child.level else child.module or "")
                for candidate in (target, *(f"{target}.{a.name}" for a in child.names)):
                    if candidate in modules and candidate != name:
                        found.append((candidate, inside))
            elif isinstance(child, ast.Import):
                found.extend((a.name, inside) for a in child.names if a.name in modules)
            visit(child, inside)

    visit(ast.parse(path.read_text()), False)
    return found


def test_the_load_path_modules_import_downward_only_and_at_the_top():
    paths = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {m: _imports(p, set(paths)) for m, p in paths.items()}
    own = [m for m in paths if m.startswith(OWN)]
    lazy = [(m, t) for m in own for t, inside in graph[m] if inside]
    assert not lazy, f"rsrouter modules imported inside functions: {lazy}"
    for module in own:  # no module reaches itself again
        seen, todo = set(), [t for t, _ in graph[module]]
        while todo:
            target = todo.pop()
            assert target != module, f"{module} is in an import cycle"
            if target not in seen:
                seen.add(target)
                todo += [t for t, _ in graph[target]]
        up = [t for t in seen if _layer(t) > _layer(module)]
        assert not up, f"{module} imports layers above it: {sorted(up)}"


def test_cards_sources_and_the_catalog_load_neither_torch_nor_the_hub_client():
    code = ("import sys\n"
            "import rsrouter.cards.router, rsrouter.cards.expert, rsrouter.sources.schemes\n"
            "import rsrouter.sources.publish, rsrouter.registry.entries\n"
            "heavy = [m for m in ('torch', 'huggingface_hub', 'timm') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_loading_the_bundled_router_runs_each_step_for_all_experts_in_order():
    """resolve -> fetch -> check for every expert before anything is built, and no call from a
    module to one of a layer above it."""
    from rsrouter.registry.core import Registry
    from rsrouter.routing.load import load_routed

    steps, climbs = [], []
    phases = {("rsrouter.registry.core", "resolve"), ("rsrouter.registry.core", "fetch"),
              ("rsrouter.registry.core", "check"), ("rsrouter.routing.load", "build_router"),
              ("rsrouter.registry.core", "build")}

    def profile(frame, event, arg):
        if event != "call" or frame.f_back is None:
            return
        callee = frame.f_globals.get("__name__", "")
        caller = frame.f_back.f_globals.get("__name__", "")
        if (callee, frame.f_code.co_name) in phases:
            steps.append(frame.f_code.co_name)
        if caller.startswith("rsrouter.") and _layer(callee) > _layer(caller) >= 0:
            climbs.append(f"{caller}.{frame.f_back.f_code.co_name} -> {callee}")

    registry = Registry()
    sys.setprofile(profile)
    try:
        routed = load_routed(ROOT / "experts" / "routers" / "fashion-mnist",
                             registry=registry)
    finally:
        sys.setprofile(None)
    k = len(routed.experts)
    assert steps == ["resolve"] * k + ["fetch"] * k + ["check"] * k + ["build_router"] + \
        ["build"] * k
    assert not climbs, climbs
