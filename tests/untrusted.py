"""Helpers for the trust tests: a module a hostile card would name, and the real command line.

Not a test module. ``EVIL`` is written as ``evilmod.py`` into a folder; importing it leaves a
marker file there (what any code in it could do), then builds a real ``cnn_tiny`` network so that
a load with the user's opt-in succeeds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import subprocess_env

EVIL = '''
from pathlib import Path
Path(__file__).with_name("MARKER").write_text("evilmod was imported")
from rsrouter.models import cnn_tiny


def factory(num_classes, input_size):
    return cnn_tiny(num_classes, input_size)
'''


def plant(folder: Path) -> Path:
    """Write evilmod.py into ``folder``; returns the marker path it would create."""
    (folder / "evilmod.py").write_text(EVIL)
    return folder / "MARKER"


def rsrouter(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m rsrouter ARGS`` in ``cwd`` (which Python puts first on sys.path)."""
    return subprocess.run([sys.executable, "-m", "rsrouter", *args], cwd=cwd,
                          env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
