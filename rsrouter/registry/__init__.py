"""Registry: registered names and the one load path of every expert, resolve -> fetch -> check
-> build (core), with plain, shared-weight and denoised experts as kinds plugged in at build.

The old module ``rsrouter.registry``'s names stay importable from here, with a
DeprecationWarning (rsrouter._moved).
"""

from .._moved import getattr_for as _getattr_for

__getattr__ = _getattr_for(__name__)
