"""Every ``rsrouter.<name>`` the docs mention resolves, at its current home.

The old module paths (rsrouter 0.2's flat layout) still import, with a DeprecationWarning
(rsrouter._moved), so a doc naming one would keep working while teaching a path that is going
away: here any DeprecationWarning is an error, and an old module served by the compatibility
table (no file of its own) counts as unresolved.
"""

from __future__ import annotations

import importlib
import re
import warnings

from helpers import ROOT

# changes.md names the old paths on purpose: it is the table of what moved
DOCS = sorted([*(p for p in (ROOT / "docs").glob("*.md") if p.name != "changes.md"),
               ROOT / "README.md"])

# Names that are not Python objects: entry-point groups.
NOT_PYTHON = {"rsrouter.architectures"}
# A line that names the compatibility table may name the old paths it serves, as such.
OLD_PATHS_LINE = "_moved"

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
# A dotted name: not part of a path, a URL, a file name or a longer word
# (`.rsrouter-bench`, `~/.config/rsrouter`, `rsrouter/sources/hub.py`).
DOTTED = re.compile(r"(?<![\w./:@-])rsrouter(?:\.[A-Za-z_]\w*)+(?![\w/-])")
FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(rsrouter(?:\.\w+)*)[ \t]+import[ \t]+"
                         r"(?:\(([\w\s,]+)\)|([\w \t,]+))", re.MULTILINE)
FILE_SUFFIXES = {"py", "md", "yaml", "yml", "json", "toml", "tsv", "txt"}


def code_of(text: str) -> list[str]:
    """The code of a markdown text: its fenced blocks and its inline code spans."""
    blocks = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub("\n", text)
    return blocks + [m.group(2) for m in INLINE.finditer(prose)]


def references(text: str) -> set[str]:
    """The dotted ``rsrouter.`` names in the code of ``text``, and ``from rsrouter.x import a``
    as ``rsrouter.x.a``; lines naming rsrouter._moved (the old paths as such) left out."""
    found: set[str] = set()
    text = "\n".join(line for line in text.splitlines() if OLD_PATHS_LINE not in line)
    for code in code_of(text):
        for m in DOTTED.finditer(code):
            name = m.group(0)
            if name not in NOT_PYTHON and name.rsplit(".", 1)[-1] not in FILE_SUFFIXES:
                found.add(name)
        for m in FROM_IMPORT.finditer(code):
            found.add(m.group(1))
            names = (m.group(2) or m.group(3)).split(",")
            found.update(f"{m.group(1)}.{n.split()[0]}" for n in names if n.strip())
    return found


def unresolved(name: str) -> str | None:
    """None if ``name`` imports (its longest importable module prefix) and the rest is found
    by getattr, all without a DeprecationWarning; else why not."""
    parts = name.split(".")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            for i in range(len(parts), 0, -1):
                module_name = ".".join(parts[:i])
                try:
                    obj = importlib.import_module(module_name)
                    break
                except ModuleNotFoundError as e:
                    if e.name is None or not name.startswith(e.name):
                        return f"importing {module_name} failed: {e}"  # a missing dependency
            if getattr(obj, "__file__", None) is None:
                return f"{module_name} is an old module path (rsrouter._moved)"
            for attribute in parts[i:]:
                obj = getattr(obj, attribute)
        except DeprecationWarning as e:
            return f"deprecated: {e}"
        except (AttributeError, ImportError) as e:
            return f"{type(e).__name__}: {e}"
    return None


def test_references_are_found_in_code_only():
    text = ("Use `rsrouter.certify.bounds.Certificate` (see `rsrouter/certify/bounds.py`, the "
            "entry points `rsrouter.architectures` and `~/.config/rsrouter`), not rsrouter.x in "
            "prose.\n\n```python\nimport rsrouter\nx = rsrouter.Smooth(m)\n"
            "from rsrouter.dualrs import best_round, export_round\n"
            "from rsrouter.protocol import (\n    Protocol,\n    RADII,\n)\n```\n"
            "`rsrouter._moved`: old paths (`rsrouter.smoothing`) warn.\n")
    assert references(text) == {
        "rsrouter.certify.bounds.Certificate", "rsrouter.Smooth", "rsrouter.dualrs",
        "rsrouter.dualrs.best_round", "rsrouter.dualrs.export_round", "rsrouter.protocol",
        "rsrouter.protocol.Protocol", "rsrouter.protocol.RADII"}


def test_moved_and_missing_names_do_not_resolve():
    assert unresolved("rsrouter.certify.smoothing.Smooth") is None
    assert unresolved("rsrouter.Smooth") is None
    assert "deprecated" in unresolved("rsrouter.results.read_tsv")  # a package's old name
    assert "old module path" in unresolved("rsrouter.smoothing")
    assert unresolved("rsrouter.smoothing.noise_generator") is not None
    assert unresolved("rsrouter.config.load_config") is not None  # via rsrouter.__getattr__
    assert "AttributeError" in unresolved("rsrouter.bench.certify_methods")


def test_every_name_the_docs_mention_resolves_at_its_current_home():
    problems, count = [], 0
    for doc in DOCS:
        for name in sorted(references(doc.read_text())):
            count += 1
            why = unresolved(name)
            if why:
                problems.append(f"{doc.relative_to(ROOT)}: `{name}`: {why}")
    assert count > 50, f"only {count} references found: is the extraction broken?"
    assert not problems, ("names in the docs that do not resolve without a DeprecationWarning "
                          "(name their new home):\n" + "\n".join(problems))
