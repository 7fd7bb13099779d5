"""Certification results files: the per-sample TSV, written resumably, and read back checked.

TSV columns: ``idx label predict radius correct time`` then extras (counts, sigma, alpha, ...;
:mod:`rsrouter.results.rows`). ``predict`` is -1 on ABSTAIN; ``correct`` is 1 iff not abstaining
and ``predict == label``. Next to ``FILE.tsv`` a ``FILE.tsv.json`` records the run's settings;
rerunning with the same settings continues after the last complete row, with other settings it
is refused (:func:`check_resume`). One process writes a file at a time (an OS lock on
``FILE.tsv.lock``).

Reading a TSV checks it (:func:`rsrouter.results.rows.check_rows`): Cohen's columns, no
duplicated ``idx``, and, where counts are stored, that they are possible and that each row's
prediction and radius follow from them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ResultsError, ResumeError
from ..files import FileLock, atomic_write_json, atomic_write_text, check_resume
from .rows import COHEN_COLUMNS, check_rows

RESUME_FIX = "choose another --out, or delete the file and its .json to start over"


def settings_path(path: str | os.PathLike) -> Path:
    return Path(f"{path}.json")


class ResumableTSV:
    """Append-only TSV whose rows are fsynced group by group; a torn last line is dropped on
    resume. Holds an exclusive lock on the file until :meth:`close` (or process exit).

    Args:
        path: the TSV file.
        columns: all columns (Cohen's first).
        settings: what must match for a rerun to continue this file (statistical settings and
            model hashes, never which inputs: a rerun may certify more inputs).

    Raises:
        LockedError: another process is writing the file.
        ResumeError: the file holds certificates made with other settings or another header.
    """

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], settings: dict) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise ResultsError(f"{self.path} is a folder; --out names the TSV file to write")
        self.columns = list(columns)
        self.done: set[int] = set()
        lock = f"{os.path.realpath(self.path)}.lock"  # one lock however the path is spelled
        self._lock = FileLock(lock, str(self.path)).acquire()
        try:
            self._open(_jsonable(settings))
        except BaseException:
            self.close()
            raise

    def _open(self, settings: dict) -> None:
        """Check what is at ``path`` against this run, then (only then) resume or start it.

        A file is only ever cut (its torn last line) or rewritten (nothing certified in it yet)
        once it is known to be this run's: anything refused is left exactly as it was."""
        header = "\t".join(self.columns) + "\n"
        data, lines = own_lines(self.path)
        complete = data[: data.rfind(b"\n") + 1]
        has_rows = len(lines) > 1
        if not has_rows:  # nothing certified yet (or a crash before the first row): start afresh
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(settings_path(self.path), settings)
            atomic_write_text(self.path, header)
            return
        check_resumable(self.path, lines[0], header.rstrip("\n"), settings)
        idx = [int(line.split("\t", 1)[0]) for line in lines[1:] if line]
        if len(set(idx)) != len(idx):
            raise ResultsError(f"{self.path} lists some idx twice; it was written by two runs at "
                               "once (rsrouter < 0.2): delete it and certify again")
        if len(complete) != len(data):  # a torn last line (a crash mid-write): cut it off
            with open(self.path, "r+b") as f:
                f.truncate(len(complete))
        self.done = set(idx)

    def append(self, rows: Iterable[dict]) -> None:
        """Write rows (dicts with every column) and fsync."""
        with open(self.path, "a") as f:
            for row in rows:
                f.write("\t".join(_fmt(row[c]) for c in self.columns) + "\n")
                self.done.add(int(row["idx"]))
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Release the lock (the OS releases it too if the process dies)."""
        self._lock.release()

    def __enter__(self) -> ResumableTSV:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def own_lines(path: Path) -> tuple[bytes, list[str]]:
    """``(bytes, complete lines)`` of a results file rsrouter may resume or rewrite: none, empty,
    or one of its certification TSVs (Cohen's header, its settings beside it). Reads only.

    Raises:
        ResultsError: ``path`` is a folder.
        ResumeError: ``path`` holds something else (it is then never written).
    """
    if path.is_dir():
        raise ResultsError(f"{path} is a folder; --out names the TSV file to write")
    data = path.read_bytes() if path.is_file() else b""
    complete = data[: data.rfind(b"\n") + 1]
    try:
        lines = complete.decode().splitlines()
        first = (lines or [data.decode()])[0]
    except UnicodeDecodeError:
        first = None
    if data and (first is None or not first.startswith("idx\t")
                 or not settings_path(path).is_file()):
        raise ResumeError(f"{path} exists and is not a certification TSV of rsrouter's (with "
                          f"its settings in {settings_path(path).name}); choose another --out, "
                          "or delete it")
    return data, lines if data else []


def read_settings(meta: Path) -> dict | None:
    """The settings a results file was made with (None if unreadable or not a JSON object)."""
    try:
        old = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return old if isinstance(old, dict) else None


def check_resumable(path: Path, first_line: str, header: str, settings: dict) -> None:
    """Refuse to continue the results file ``path`` (its first line ``first_line``) unless its
    recorded settings are ``settings`` (JSON-normalized) and its header is ``header``.

    Raises:
        ResumeError: see :func:`check_resume`; or another header.
    """
    check_resume(path, settings, read_settings(settings_path(path)), RESUME_FIX)
    if first_line != header:
        raise ResumeError(f"{path} has another header than this run writes; {RESUME_FIX}")


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.10g}"  # 10 significant digits: radii and tiny alphas alike
    return str(value)


def write_tsv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a whole TSV atomically, floats as :class:`ResumableTSV` writes them."""
    lines = ["\t".join(map(str, df.columns))]
    lines += ["\t".join(_fmt(v) for v in row) for row in df.astype(object).to_numpy()]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings))


def read_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a certification TSV (any columns beyond Cohen's are kept).

    Raises:
        ResultsError: not a certification TSV, a duplicated ``idx``, or a row whose prediction,
            radius or correctness does not follow from its stored counts (the row is named).
        CountsError: impossible counts (the row is named).
    """
    path = Path(path)
    if path.is_dir():
        raise ResultsError(f"{path} is a folder; give a certification .tsv file")
    if not path.is_file():
        raise ResultsError(f"{path} not found")
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path} is not a certification TSV ({str(e).splitlines()[0]}); give "
                           "the .tsv that `rsrouter certify` writes") from None
    missing = [c for c in COHEN_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} is not a certification TSV: no column(s) {', '.join(missing)} "
                           f"(expected {' '.join(COHEN_COLUMNS)} first); give the .tsv that "
                           "`rsrouter certify` writes")
    check_rows(df, str(path))
    return df
