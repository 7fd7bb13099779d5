"""Process-level settings for long CPU runs: applied by the ``rsrouter`` command at start and by
:class:`rsrouter.Smooth` when a certification starts on the CPU, so that API users get the
command's speed. ``RSROUTER_MALLOC_TUNING=0`` turns it off everywhere.

Certification allocates and frees the same large activation buffers for every batch (tens of MB at
batch 2500). glibc serves allocations above its mmap threshold (at most 32 MiB) with fresh
``mmap`` pages and returns them on free, so every batch page-faults its buffers back in: on two
cores about 20% of the time goes to the kernel. Raising the mmap and trim thresholds keeps those
buffers in the heap. This changes no result, only speed; set ``RSROUTER_MALLOC_TUNING=0`` to skip.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def tune_allocator(threshold: int = 1 << 30) -> bool:
    """Raise glibc's mmap/trim thresholds to ``threshold`` bytes; True if applied.

    A no-op (False) outside Linux/glibc or when ``RSROUTER_MALLOC_TUNING=0``.
    """
    global _done
    if _done:
        return True
    if os.environ.get("RSROUTER_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold) and libc.mallopt(_M_TRIM_THRESHOLD,
                                                                          threshold)
    except (OSError, AttributeError):
        return False
    _done = bool(ok)
    return _done
