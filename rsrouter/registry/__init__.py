"""The expert registry: resolve a name, fetch its files, verify the pins, build the expert.

The old module ``rsrouter.registry``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for

__getattr__ = _getattr_for(__name__)
