"""Reading and checking results, and the maths of certificates from counts, never import torch."""

from __future__ import annotations

import subprocess
import sys

TORCH_FREE = (
    "rsrouter.certify.bounds",
    "rsrouter.certify.cascade",
    "rsrouter.certify.checks",
    "rsrouter.certify.routed",
    "rsrouter.certify.sequential",
    "rsrouter.certify.set_certificate",
    "rsrouter.certify.tree",
    "rsrouter.results.curves",
    "rsrouter.results.logs",
    "rsrouter.results.rows",
    "rsrouter.results.tsv",
)

CHECK = """
import importlib, sys
for module in sys.argv[1:]:
    importlib.import_module(module)
    if "torch" in sys.modules:
        sys.exit(f"importing {module} imported torch")
"""


def test_count_based_modules_import_without_torch():
    """In a fresh interpreter, importing each module in turn leaves torch unimported."""
    done = subprocess.run([sys.executable, "-c", CHECK, *TORCH_FREE], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
