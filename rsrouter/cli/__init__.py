"""The ``rsrouter`` command: :func:`main` (the entry point; :mod:`.app` holds it and the
top-level parser), :mod:`.common` (argument types, shared options and helpers) and one module
per command group.

The old module ``rsrouter.cli``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for
from .app import main

__all__ = ["main"]

__getattr__ = _getattr_for(__name__)
