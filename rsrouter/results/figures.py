"""The plotting frame and text helpers every rsrouter plot and page shares; no pandas, so the
leaderboard builds without it (matplotlib is imported when a figure is drawn)."""

from __future__ import annotations

import hashlib
import html
import os
import re
from importlib.metadata import version
from pathlib import Path

import numpy as np

from .. import __version__
from ..certify.bounds import lower_bounds, upper_bounds

FIGURE_KEY = "rsrouter-figure"  # the PNG text field that holds what a figure was drawn from


def interval95(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided 95% (Clopper-Pearson) interval of ``k`` successes in ``n`` trials."""
    return lower_bounds(k, n, 0.025), upper_bounds(k, n, 0.025)


def md_text(text: object) -> str:
    """``text`` as plain text in markdown (a table cell): HTML and markdown's own characters
    escaped, one line."""
    text = html.escape(str(text), quote=False).replace("\n", " ").replace("\r", " ")
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", text)


def plot_label(text: object) -> str:
    """``text`` as plain text in a matplotlib label: ``$`` starts no math, a leading ``_`` hides
    nothing from the legend."""
    text = str(text).replace("$", r"\$")
    return " " + text if text.startswith("_") else text


def accuracy_figure(figsize: tuple[float, float]):
    """``(figure, axes)`` of an empty certified-accuracy plot: every plot rsrouter draws starts
    here and ends with :func:`finish_figure` (a matplotlib ``Figure`` on Agg, no pyplot state)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots()


def finish_figure(fig, ax, title: str = "", *, top: float | None = None,
                  xlabel: str = "l2 radius (pixels in [0, 1])", legend: float = 8,
                  title_size: float | None = 10) -> None:
    """Axes labels, the 0-103% range (a curve at 100% stays visible above the frame's top
    line), the radius range ``[0, top]``, grid, legend and title (``$`` shown as typed)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)
    if top is not None:
        ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend)
    if title:
        ax.set_title(plot_label(title), fontsize=title_size)
    fig.tight_layout()
    fig.set_layout_engine(None)  # laid out once: saving need not draw the figure twice


def save_figure(fig, path: str | os.PathLike, key: str | None = None) -> Path:
    """Write ``fig`` to ``path`` (120 dpi; the format its suffix names, PNG by default),
    atomically; returns the path. A PNG stores ``key`` (see :func:`figure_key`) in its text
    field ``rsrouter-figure``, so that :func:`drawn` can tell it need not be drawn again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix or ".png"
    tmp = path.with_name(f".{path.stem}.tmp{suffix}")
    metadata = {FIGURE_KEY: key} if key is not None and suffix == ".png" else None
    fig.savefig(tmp, dpi=120, metadata=metadata)
    os.replace(tmp, path)
    return path


def figure_key(*parts: object, code: tuple[str | os.PathLike, ...] = ()) -> str:
    """sha256 of everything a figure is drawn from: ``parts`` (arrays by dtype, shape and bytes,
    anything else by ``repr``), the source files in ``code`` (the module that draws it), this
    module, and the rsrouter and matplotlib versions."""
    digest = hashlib.sha256(f"rsrouter {__version__} matplotlib {version('matplotlib')}".encode())
    for source in (__file__, *code):
        digest.update(Path(source).read_bytes())
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def drawn(path: str | os.PathLike, key: str) -> bool:
    """Whether the PNG at ``path`` was drawn from exactly what ``key`` names (its text field
    ``rsrouter-figure``), so that drawing it again would give the same figure; False when there
    is no such file or it is unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return getattr(image, "text", {}).get(FIGURE_KEY) == key
    except (OSError, UnidentifiedImageError, ValueError):
        return False
