"""The package's structure: no import cycles (imports anywhere in a module count), small modules,
and every package listed for the wheel."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import rsrouter

PACKAGE = Path(rsrouter.__file__).resolve().parent
MAX_LINES = 450
MAX_CLI_LINES = 249  # a command group's file stays under 250 lines


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at ``line``; ``where``: top level, in a function, ..."""

    source: str
    target: str
    line: int
    where: str

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}  (line {self.line}, {self.where})"


def module_files() -> dict[str, Path]:
    """Every module of rsrouter/ by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _context(stack: list[ast.AST]) -> str:
    """How an import is reached: at the top level, in ``if TYPE_CHECKING``, or in a function."""
    functions = [n.name for n in stack if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if functions:
        return f"inside function {'.'.join(functions)}"
    if any(isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test) for n in stack):
        return "under TYPE_CHECKING"
    return "top level"


def _imports(tree: ast.AST) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement in ``tree``, wherever it is, with its context."""
    found, stack = [], []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append((node, _context(stack)))
        stack.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)
        stack.pop()

    visit(tree)
    return found


def _with_parents(target: str, source: str, modules: dict[str, Path]) -> list[str]:
    """``target`` and the packages above it that importing it runs, less those of ``source``
    (already imported when ``source`` runs)."""
    parts = target.split(".")
    above = {".".join(parts[:i]) for i in range(1, len(parts))}
    own = {".".join(source.split(".")[:i]) for i in range(1, source.count(".") + 2)}
    return [m for m in sorted(above - own) if m in modules] + [target]


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """The imports between rsrouter's modules, read from the source (never executed).

    ``from P import x`` imports the submodule ``P.x`` when there is one, else the package ``P``
    (through ``rsrouter._LAZY`` for the top-level package's lazy names). Not edges: calls to
    ``importlib.import_module`` in rsrouter/__init__.py (``_LAZY``) and rsrouter/_moved.py
    (``MOVED``): they resolve a name on first use, after every module has been imported, so they
    never run while a module is being imported."""
    edges = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, where in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package.split(".")
                base = base[:len(base) - node.level + 1] if node.level else []
                prefix = ".".join([*base, *([node.module] if node.module else [])])
                targets = []
                for alias in node.names:
                    full = f"{prefix}.{alias.name}"
                    if full in modules:
                        targets.append(full)
                    elif prefix == "rsrouter" and alias.name in rsrouter._LAZY:
                        targets.append(f"rsrouter.{rsrouter._LAZY[alias.name]}")
                    else:
                        targets.append(prefix)
            for target in targets:
                if target.split(".")[0] != "rsrouter":
                    continue
                assert target in modules, f"{path}:{node.lineno} imports unknown {target}"
                edges += [Edge(name, t, node.lineno, where)
                          for t in _with_parents(target, name, modules) if t != name]
    return edges


def find_cycles(edges: list[Edge]) -> list[tuple[set[str], list[list[Edge]]]]:
    """Each group of modules that import each other (a strongly connected component of more than
    one module), with shortest cycles that together pass through all of its modules."""
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    found = []
    for component in _components(graph):
        cycles, covered = [], set()
        for start in sorted(component - covered):
            if start not in covered:
                cycles.append(_shortest_cycle(graph, start, component))
                covered |= {edge.source for edge in cycles[-1]}
        found.append((component, cycles))
    return found


def _components(graph: dict[str, dict[str, Edge]]) -> list[set[str]]:
    """Tarjan's strongly connected components of more than one node (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def _shortest_cycle(graph: dict[str, dict[str, Edge]], start: str,
                    component: set[str]) -> list[Edge]:
    """Breadth-first from ``start`` back to itself, inside ``component``."""
    came: dict[str, Edge] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, edge in sorted(graph.get(node, {}).items()):
                if target == start:
                    path = [edge]
                    while path[0].source != start:
                        path.insert(0, came[path[0].source])
                    return path
                if target in component and target not in came:
                    came[target] = edge
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start}")


def test_no_import_cycles():
    report = []
    for component, cycles in find_cycles(import_edges(module_files())):
        report.append(f"{len(component)} modules import each other: {', '.join(sorted(component))}")
        report += ["  cycle:\n    " + "\n    ".join(map(str, cycle)) for cycle in cycles]
    assert not report, "import cycles:\n" + "\n".join(report)


def test_imports_are_read_wherever_they_are(tmp_path):
    """Imports in functions and under TYPE_CHECKING count; ``from . import x`` means the submodule
    ``x``; importing a module runs the packages above it (other than the importer's own)."""
    files = {
        "rsrouter/__init__.py": "",
        "rsrouter/a.py": "def f():\n    from .sub.b import x\n",
        "rsrouter/c.py": "import typing\nif typing.TYPE_CHECKING:\n    from . import a\n",
        "rsrouter/sub/__init__.py": "from . import b\nfrom .. import VALUE\n",
        "rsrouter/sub/b.py": "import rsrouter.c\nimport numpy\n",
    }
    modules = {}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
        modules[name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")] = \
            tmp_path / name
    edges = {(e.source, e.target, e.where) for e in import_edges(modules)}
    assert edges == {
        ("rsrouter.a", "rsrouter.sub", "inside function f"),
        ("rsrouter.a", "rsrouter.sub.b", "inside function f"),
        ("rsrouter.c", "rsrouter.a", "under TYPE_CHECKING"),
        ("rsrouter.sub", "rsrouter.sub.b", "top level"),
        ("rsrouter.sub", "rsrouter", "top level"),
        ("rsrouter.sub.b", "rsrouter.c", "top level"),
    }
    [(component, cycles)] = find_cycles(import_edges(modules))
    assert component == {"rsrouter.a", "rsrouter.c", "rsrouter.sub", "rsrouter.sub.b"}
    assert [[e.target for e in cycle] for cycle in cycles] == [
        ["rsrouter.sub.b", "rsrouter.c", "rsrouter.a"],
        ["rsrouter.sub.b", "rsrouter.c", "rsrouter.a", "rsrouter.sub"]]


# The layers of rsrouter, lowest first: a module imports only from its own layer or lower ones
# (docs/design.md). Names on one line share a layer (they import none of each other's).
LAYERS = [
    ("errors",),
    ("files", "urls", "runtime", "paths", "distributed", "data"),
    ("certify",),
    ("protocol",),
    ("results",),
    ("cards",),
    ("sources",),
    ("models",),
    ("registry",),
    ("routing",),
    ("training",),
    ("leaderboard",),
    ("bench",),
    ("dualrs",),
    ("cli", "__main__"),
]
# the package itself (lazy public names) and the compatibility table sit outside the layers:
# both reach their targets through importlib, by name, only when a name is used
OUTSIDE = {"rsrouter", "rsrouter._moved"}


def _layer(module: str) -> int:
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_every_module_imports_downward_only():
    """No module imports one of a higher layer, at top level or inside a function."""
    modules = module_files()
    assert {m.split(".")[1] for m in modules if m not in OUTSIDE} <= {
        name for names in LAYERS for name in names}, "a new top-level module needs a layer"
    upward = [str(e) for e in import_edges(modules)
              if e.source not in OUTSIDE and e.target not in OUTSIDE
              and _layer(e.target) > _layer(e.source)]
    assert not upward, "imports of a higher layer:\n" + "\n".join(upward)


def _line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_module_over_450_lines():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in module_files().values()
           if (n := _line_count(p)) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_command_line_files_under_250_lines():
    big = {str(p.relative_to(PACKAGE.parent)): n for p in (PACKAGE / "cli").rglob("*.py")
           if (n := _line_count(p)) > MAX_CLI_LINES}
    assert not big, f"rsrouter/cli/ files of 250 lines or more: {big}"


def test_every_package_is_in_the_wheel():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {name for name, path in module_files().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages | {"rsrouter.zoo"}, \
        "list every package of rsrouter/ under [tool.setuptools] packages in pyproject.toml"
    assert config["package-dir"] == {"rsrouter.zoo": "experts"}
