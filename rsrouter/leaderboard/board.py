"""Leaderboards: checked entries collected from folders and files, merged (the same entry
twice is one row) and written as a static site: ``leaderboard.json``, ``leaderboard.md`` and one
self-contained ``index.html`` and a page per dataset (:mod:`rsrouter.leaderboard.site`).
"""

from __future__ import annotations

import json
import os
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import __version__
from ..errors import ResultsError
from ..files import atomic_write_json, atomic_write_text
from .entries import check_entry, entry_key, read_entry
from .site import is_ours, markdown, pages

# what may differ between two copies of one entry (everything else is what it measured)
_VOLATILE = ("key", "date", "rsrouter_version")


def _entries_of(data: object, where: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ResultsError(f"{where}: not a leaderboard (no entries list)")
    return [{**check_entry(e, f"{where} entry {i}"), "_from": f"{where} entry {i}"}
            for i, e in enumerate(data["entries"])]


def read_board(path: Path, where: str | None = None) -> list[dict]:
    """The entries of a built board's ``leaderboard.json``, each checked.

    Raises:
        ResultsError: naming ``where`` (default: the file) and the problem.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{where or path}: not a leaderboard ({e})") from None
    return _entries_of(data, where or str(path))


def collect_entries(sources: Iterable[str | os.PathLike]) -> list[dict]:
    """Entries from results folders (their ``entries/``), entry folders, entry files and built
    sites (their ``leaderboard.json``), each checked and keyed by its content."""
    found = []
    for source in sources:
        source = Path(source)
        if source.is_file() and source.name == "leaderboard.json":
            found += read_board(source)
        elif source.is_file():
            found.append(read_entry(source))
        elif (source / "leaderboard.json").is_file():
            found += collect_entries([source / "leaderboard.json"])
        elif source.is_dir():
            folder = source / "entries" if (source / "entries").is_dir() else source
            files = sorted(folder.glob("*.json"))
            if not files:
                raise ResultsError(f"{source}: no leaderboard entries (run `rsrouter bench run` "
                                   "or `rsrouter leaderboard import-tsv` first)")
            found += [read_entry(f) for f in files]
        else:
            raise ResultsError(f"{source} not found")
    return found


# what a measurement reports: two copies of one (one key) must agree on all of it (wall time
# and metadata such as notes, links, versions and dates may differ)
_RESULTS = ("type", "kind", "radii", "accuracy", "acr", "abstain", "max_regret",
            "forwards_per_input", "counts_available", "external", "chosen_on", "chosen_on_test")


def _same(a: dict, b: dict) -> bool:
    return all(json.dumps(a.get(k), sort_keys=True) == json.dumps(b.get(k), sort_keys=True)
               for k in _RESULTS)


def _body(entry: dict) -> str:
    """An entry's metadata and results, as compared between copies (dates and versions aside)."""
    return json.dumps({k: v for k, v in entry.items() if k not in (*_VOLATILE, "seconds_per_input")
                       and not k.startswith("_")}, sort_keys=True)


def _name(entry: dict) -> tuple[str, str]:
    """The name a reader sees, as a reader compares it (case, width and spacing folded)."""
    def fold(text: str) -> str:
        return " ".join(unicodedata.normalize("NFKC", text).casefold().split())

    return fold(entry["benchmark"]), fold(entry["method"])


def merge(entries: Iterable[dict], *, replace: bool = False) -> list[dict]:
    """One row per measurement, in a stable order. Entries come in order: earlier ones are
    what a board already has, later ones what is added.

    Two copies of one entry (the same content-derived key, the same results) are one row: the
    one already there (a warning when their metadata differ), or with ``replace`` the added
    one. An added entry that collides with a different one already there (the same key with
    other results, or the same benchmark and method name for another measurement) is refused
    unless ``replace``, when it replaces it. Dates never decide.

    Raises:
        ResultsError: naming both entries and the fix (``--replace``).
    """
    by_key: dict[str, dict] = {}
    by_name: dict[tuple[str, str], str] = {}
    by_log: dict[str, str] = {}  # an imported log's sha256: one log is one row
    for entry in entries:
        key = entry_key(entry)
        entry = {**entry, "key": key}
        name = _name(entry)
        old = by_key.get(key)
        if old is None and name in by_name:
            old = by_key[by_name[name]]
        log = entry.get("log_sha256")
        if old is None and log and log in by_log:
            old = by_key[by_log[log]]
            if not replace:
                raise ResultsError(
                    f"{entry.get('_from', 'an added entry')}: the log of method "
                    f"{entry['method']!r} (sha256 {log[:12]}...) is already on the board as "
                    f"{old['benchmark']}/{old['method']} ({old.get('_from', 'an entry')}): one "
                    "log is one row. Drop one, or pass --replace to keep the added one")
        copy = old is not None and old["key"] == key and _same(old, entry)
        if old is not None and not copy:
            if not replace:
                what = ("the same measurement (key " + key + ") with other results"
                        if old["key"] == key else "another measurement under the same name")
                raise ResultsError(
                    f"{entry.get('_from', 'an added entry')}: benchmark {entry['benchmark']!r}, "
                    f"method {entry['method']!r} collides with {old.get('_from', 'an entry')}: "
                    f"{what}. Rename the method or benchmark, or pass --replace to replace it")
            by_key.pop(old["key"])
            by_name.pop(_name(old), None)
            by_log.pop(old.get("log_sha256") or "", None)
        if copy and not replace:
            if _body(old) != _body(entry):
                warnings.warn(f"{entry.get('_from', 'an added entry')}: a copy of "
                              f"{entry['benchmark']}/{entry['method']} with other metadata "
                              "(notes, links); the board keeps its own: --replace takes the "
                              "added one's", stacklevel=2)
            continue
        by_key[key] = entry
        by_name[name] = key
        if log:
            by_log[log] = key
    return sorted(({k: v for k, v in e.items() if not k.startswith("_")}
                   for e in by_key.values()),
                  key=lambda e: (e["dataset"], e["benchmark"], e["method"]))


def build_site(sources: Sequence[str | os.PathLike], out: str | os.PathLike,
               entries: list[dict] | None = None, *, replace: bool = False) -> Path:
    """Merge ``entries`` and the entries of ``sources`` (in that order, :func:`merge`) into a
    site in ``out``; returns ``out``."""
    merged = merge([*(entries or []), *collect_entries(sources)], replace=replace)
    out = Path(out)
    text, html_pages = markdown(merged), pages(merged)  # all rendered before anything is
    atomic_write_json(out / "leaderboard.json", {"schema": "rsrouter-leaderboard/1",  # written
                                                 "rsrouter_version": __version__,
                                                 "entries": merged})
    atomic_write_text(out / "leaderboard.md", text)
    for name, html_page in html_pages.items():
        atomic_write_text(out / name, html_page)
    for stale in sorted({p.name for p in out.glob("*.html")} - set(html_pages)):
        path = out / stale  # a page of a dataset no longer on the board; nothing else
        if path.is_file() and is_ours(path.read_text(errors="replace")):
            path.unlink()
    return out

