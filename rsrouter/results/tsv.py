"""Certification results: the per-sample TSV (Cohen's columns first), resumable writing, curves.

TSV columns: ``idx label predict radius correct time`` then extras (counts, sigma, alpha, ...).
``predict`` is -1 on ABSTAIN; ``correct`` is 1 iff not abstaining and ``predict == label``.
Next to ``FILE.tsv`` a ``FILE.tsv.json`` records the run's settings; rerunning with the same
settings continues after the last complete row, with other settings it is refused. One process
writes a file at a time (an OS lock on ``FILE.tsv.lock``).

Reading a TSV checks it: Cohen's columns, no duplicated ``idx``, and, where counts are stored,
that they are possible and that each row's prediction and radius follow from them.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import beta

from ..certify.smoothing import check_counts, radii_from_counts
from ..errors import CountsError, ResultsError, ResumeError
from ..files import FileLock, atomic_write_json, atomic_write_text

COHEN_COLUMNS = ("idx", "label", "predict", "radius", "correct", "time")
RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5)
RADIUS_TOLERANCE = 2e-6  # radii are written rounded to 6 decimals


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
        meta = settings_path(self.path)
        header = "\t".join(self.columns) + "\n"
        data, lines = own_lines(self.path)
        complete = data[: data.rfind(b"\n") + 1]
        has_rows = len(lines) > 1
        if not has_rows:  # nothing certified yet (or a crash before the first row): start afresh
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(meta, settings)
            atomic_write_text(self.path, header)
            return
        old = read_settings(meta)
        if old is None:
            raise ResumeError(f"{self.path} holds certificates but its settings file {meta} is "
                              "unreadable; choose another --out, or delete both to start over")
        if old != settings:
            diff = {k: (old.get(k), settings.get(k)) for k in sorted(set(old) | set(settings))
                    if old.get(k) != settings.get(k)}
            raise ResumeError(f"{self.path} holds certificates made with other settings "
                              f"{diff} (old, new); choose another --out, or delete the file "
                              "and its .json to start over")
        if lines[0] != header.rstrip("\n"):
            raise ResumeError(f"{self.path} has another header than this run writes; choose "
                              "another --out or delete the file")
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


def _row_error(where: str, df: pd.DataFrame, bad: np.ndarray, what: str) -> ResultsError:
    first = int(np.flatnonzero(bad)[0])
    return ResultsError(f"{where}: row {first + 1} (idx {df['idx'].iloc[first]}): {what}; "
                        f"{int(bad.sum())} row(s) affected. The file was edited or is corrupt")


COUNT_COLUMNS = ("cA", "nA", "n", "n0", "sigma", "alpha")
ROUTED_COUNT_COLUMNS = ("expert", "router_cA", "router_nA", "alpha_router", "alpha_expert")


def check_rows(df: pd.DataFrame, where: str) -> None:
    """The checks of :func:`read_tsv` on a frame (see there)."""
    if df.empty:
        return
    for column in ("idx", "label", "predict", "correct"):
        if not pd.api.types.is_integer_dtype(df[column]):
            raise ResultsError(f"{where}: column {column} must hold integers")
    if not pd.api.types.is_numeric_dtype(df["radius"]):
        raise ResultsError(f"{where}: column radius must hold numbers")
    dup = df["idx"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise _row_error(where, df, dup, "this idx is listed more than once")
    predict, label, radius = (df[c].to_numpy() for c in ("predict", "label", "radius"))
    correct = df["correct"].to_numpy()
    bad = correct != ((predict != -1) & (predict == label)).astype(int)
    if bad.any():
        raise _row_error(where, df, bad, "correct must be 1 exactly when predict equals label")
    bad = ~np.isfinite(radius) | (radius < 0) | ((predict == -1) & (radius != 0))
    if bad.any():
        raise _row_error(where, df, bad, "radius must be >= 0, and 0 when abstaining")
    if "stage_nA" in df.columns:
        return _check_cascade(df, where, predict, radius)
    if "expert_nA" in df.columns:
        return _check_set(df, where, predict, radius)
    if "root_groups" in df.columns:
        return _check_tree(df, where, predict, radius)
    present = [c for c in COUNT_COLUMNS if c in df.columns]
    if not present:
        return  # a log without counts (Cohen et al.'s format): nothing more to check
    if len(present) < len(COUNT_COLUMNS):
        raise ResultsError(f"{where}: has count column(s) {present} but not "
                           f"{sorted(set(COUNT_COLUMNS) - set(present))}; a TSV holds all of "
                           f"{' '.join(COUNT_COLUMNS)} or none")
    routed_columns = [c for c in ROUTED_COUNT_COLUMNS if c in df.columns]
    if routed_columns and len(routed_columns) < len(ROUTED_COUNT_COLUMNS):
        raise ResultsError(f"{where}: a routed TSV needs all of {' '.join(ROUTED_COUNT_COLUMNS)}"
                           f", this one has only {routed_columns}")
    if routed_columns:
        _check_routed(df, where, predict, radius)
    else:
        _check_counted(df, where, predict, radius)


def _numeric(df: pd.DataFrame, where: str, columns: Sequence[str]) -> None:
    for column in columns:
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise ResultsError(f"{where}: column {column} must hold numbers")


def _check_counts_rows(df: pd.DataFrame, where: str, c_a: str, n_a: str, sigma: str, alpha: str,
                       rows: np.ndarray) -> np.ndarray:
    """Check the counts of ``rows`` (a mask); returns every row's radius recomputed from its
    counts (0 where it abstains; meaningful on ``rows`` only)."""
    _numeric(df, where, [c_a, n_a, "n", "n0", sigma, alpha])
    for i in np.flatnonzero(rows):
        r = df.iloc[i]
        try:
            check_counts(_int(r[c_a]), _int(r[n_a]), _int(r["n"]), _int(r["n0"]),
                         float(r[sigma]), float(r[alpha]))
        except CountsError as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r['idx']}): {e}") from None
    radius = radii_from_counts(df[n_a].to_numpy(), df["n"].to_numpy(), df[alpha].to_numpy(),
                               df[sigma].to_numpy())
    return np.where(rows, radius, 0.0)


def _int(value) -> int | object:
    return int(value) if float(value).is_integer() else value


def _check_prediction(df, where, predict, expected_radius, c_a) -> None:
    bad = np.where(expected_radius > 0, predict != df[c_a].to_numpy(), predict != -1)
    if bad.any():
        raise _row_error(where, df, bad, "predict must be the certified class (cA) when its "
                         "counts certify it and -1 (ABSTAIN) otherwise")


def _check_counted(df, where, predict, radius) -> None:
    expected = _check_counts_rows(df, where, "cA", "nA", "sigma", "alpha", np.ones(len(df), bool))
    bad = np.abs(expected - radius) > RADIUS_TOLERANCE
    if bad.any():
        raise _row_error(where, df, bad, "its radius does not follow from its counts "
                         f"(stored {radius[bad][0]}, counts give {expected[bad][0]:.6f})")
    _check_prediction(df, where, predict, expected, "cA")


CASCADE_COUNT_COLUMNS = ("stage_cA", "stage_nA", "stage_n", "stage_n0", "stage_sigma",
                         "stage_alpha", "threshold")


def _check_cascade(df, where, predict, radius) -> None:
    """Cascade rows: the stage that decided holds possible counts, the prediction is its class
    or ABSTAIN, and the radius is at most what that stage certifies above the threshold (the
    earlier stages' caps need their counts, kept in the count store)."""
    from scipy.stats import norm

    missing = [c for c in CASCADE_COUNT_COLUMNS if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}: a cascade TSV needs {' '.join(CASCADE_COUNT_COLUMNS)}; "
                           f"missing {missing}")
    frame = df.rename(columns={"stage_n": "n", "stage_n0": "n0"})
    _check_counts_rows(frame, where, "stage_cA", "stage_nA", "stage_sigma", "stage_alpha",
                       np.ones(len(df), bool))
    n_a, n = df["stage_nA"].to_numpy(), df["stage_n"].to_numpy()
    with np.errstate(all="ignore"):
        low = np.where(n_a > 0, beta.ppf(df["stage_alpha"].to_numpy(), np.maximum(n_a, 1),
                                         n - n_a + 1), 0.0)
        p0 = df["threshold"].to_numpy()
        stage = df["stage_sigma"].to_numpy() * (norm.ppf(np.clip(low, p0, 1)) - norm.ppf(p0))
    certified = low >= p0
    bad = (predict != -1) & (~certified | (predict != df["stage_cA"].to_numpy()))
    if bad.any():
        raise _row_error(where, df, bad, "predict must be the deciding stage's cA, certified "
                         "above the threshold, or -1")
    bad = radius > np.where(certified, stage, 0.0) + RADIUS_TOLERANCE
    if bad.any():
        raise _row_error(where, df, bad, "its radius exceeds what its deciding stage certifies")


def _check_routed(df, where, predict, radius) -> None:
    """Routed rows: the router's counts always, the chosen expert's when routed; the prediction
    stands only where both certify, and the radius is their minimum."""
    _numeric(df, where, ["alpha_router", "alpha_expert"])
    bad = np.abs(df["alpha_router"] + df["alpha_expert"] - df["alpha"]).to_numpy() > 1e-9
    if bad.any():
        raise _row_error(where, df, bad, "alpha_router + alpha_expert must equal alpha")
    everywhere = np.ones(len(df), bool)
    # whether the router certifies does not depend on its sigma: check it even without the column
    sigma_r = df["router_sigma"] if "router_sigma" in df else pd.Series(1.0, index=df.index)
    # the router's own sample size (sequential mode: it may stop at another look than the expert)
    router_frame = df.assign(_sigma_r=sigma_r, n=df["router_n"] if "router_n" in df else df["n"])
    router = _check_counts_rows(router_frame, where, "router_cA", "router_nA",
                                "_sigma_r", "alpha_router", everywhere)
    routed = (df["expert"].astype(str) != "-").to_numpy()
    bad = routed != (router > 0)
    if bad.any():
        raise _row_error(where, df, bad, "expert must be '-' exactly when the router's counts "
                         "abstain")
    expert = _check_counts_rows(df, where, "cA", "nA", "sigma", "alpha_expert", routed)
    both = np.where(routed & (expert > 0), expert, 0.0)
    _check_prediction(df, where, predict, both, "cA")
    if "router_sigma" in df:  # every routed radius can be recomputed
        total = np.where(both > 0, np.minimum(router, expert), 0.0)
        bad = np.abs(total - radius) > RADIUS_TOLERANCE
        what = "its radius is not min(router radius, expert radius) from its counts"
    else:  # rsrouter 0.1 logs: the router's radius needs its sigma; the expert's caps it
        bad = radius > both + RADIUS_TOLERANCE
        what = "its radius exceeds what the chosen expert's counts certify"
    if bad.any():
        raise _row_error(where, df, bad, what)


def _check_set(df, where, predict, radius) -> None:
    """Set-certificate rows: the radius and the prediction follow from the router's counts and
    every expert's, at levels that sum to alpha."""
    from ..certify.set_certificate import SET_EXTRAS, set_certificate

    _require_columns(df, where, SET_EXTRAS, "a set-certificate TSV")

    def ints(text):
        return [int(v) for v in str(text).split(",")]

    def floats(text):
        return [float(v) for v in str(text).split(",")]

    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, levels = ints(r.router_counts), floats(r.expert_alpha)
            c_a, n_a, n = ints(r.expert_cA), ints(r.expert_nA), ints(r.expert_n)
            sigmas = floats(r.expert_sigma)
            if not len(counts) == len(levels) == len(c_a) == len(n_a) == len(n) == len(sigmas):
                raise CountsError("the router and the experts list different numbers of experts")
            if len(counts) < 2 or min(counts) < 0:
                raise CountsError("router_counts must hold a count >= 0 for each of >= 2 experts")
            if abs(float(r.alpha_router) + sum(levels) - float(r.alpha)) > 1e-9:
                raise CountsError("alpha_router + the experts' levels must equal alpha")
            check_counts(int(r.router_cA), counts[int(r.router_cA)], sum(counts), int(r.n0),
                         float(r.router_sigma), float(r.alpha_router))
            for k in range(len(c_a)):
                check_counts(c_a[k], n_a[k], n[k], int(r.n0), sigmas[k], levels[k])
        except (CountsError, ValueError, IndexError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        cert = set_certificate(int(r.router_cA), counts, float(r.router_sigma), c_a, n_a, n,
                               sigmas, float(r.alpha_router), levels)
        if cert.prediction != predict[i] or abs(cert.radius - radius[i]) > RADIUS_TOLERANCE:
            bad = np.zeros(len(df), bool)
            bad[i] = True
            raise _row_error(where, df, bad, "its prediction and radius do not follow from its "
                             f"counts (the counts give {cert.prediction} within "
                             f"{cert.radius:.6f})")


def _require_columns(df, where, columns, what) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsError(f"{where}: {what} needs the columns {' '.join(columns)}; missing "
                           f"{missing}")


def _check_tree(df, where, predict, radius) -> None:
    """Router-tree rows: the root's group count is its experts' counts summed, the levels sum
    to alpha, and the prediction and radius follow from the counts on the path."""
    from ..certify.tree import TREE_EXTRAS, tree_certificate

    _require_columns(df, where, TREE_EXTRAS, "a router-tree TSV")

    def ints(text):
        return [int(v) for v in str(text).split(",")]

    for i, r in enumerate(df.itertuples(index=False)):
        try:
            counts, groups = ints(r.root_counts), ints(r.root_groups)
            if len(counts) != len(groups) or int(r.group) not in groups or min(counts) < 0:
                raise CountsError("root_counts, root_groups and group do not match")
            # a group of several experts always has a child router (certify.tree.groups_of),
            # and only a path through a child spends alpha on it
            if groups.count(int(r.group)) > 1 and int(r.child_n) == 0 \
                    or (int(r.child_n) == 0) != (float(r.alpha_child) == 0):
                raise CountsError("a group of several experts goes through its child router "
                                  "(child counts, and alpha_child > 0 exactly then)")
            if int(r.root_nA) != sum(c for c, g in zip(counts, groups) if g == int(r.group)) \
                    or int(r.root_n) != sum(counts):
                raise CountsError("root_nA must be the root's counts of its group's experts")
            if abs(float(r.alpha_root) + float(r.alpha_child) + float(r.alpha_expert)
                   - float(r.alpha)) > 1e-9:
                raise CountsError("alpha_root + alpha_child + alpha_expert must equal alpha")
            check_counts(int(r.group), int(r.root_nA), int(r.root_n), int(r.n0),
                         float(r.root_sigma), float(r.alpha_root))
            child = None
            if int(r.child_n) > 0:
                check_counts(int(r.child_cA), int(r.child_nA), int(r.child_n), int(r.n0),
                             float(r.child_sigma), float(r.alpha_child))
                child = (int(r.child_nA), int(r.child_n), float(r.child_sigma),
                         float(r.alpha_child))
            reached = str(r.expert) != "-"
            if reached:
                check_counts(int(r.cA), int(r.nA), int(r.n), int(r.n0), float(r.sigma),
                             float(r.alpha_expert))
        except (CountsError, ValueError, TypeError) as e:
            raise CountsError(f"{where}: row {i + 1} (idx {r.idx}): {e}") from None
        cert = tree_certificate(int(r.group), int(r.root_nA), int(r.root_n), float(r.root_sigma),
                                float(r.alpha_root), child,
                                (int(r.cA), int(r.nA), int(r.n), float(r.sigma) or 1.0,
                                 float(r.alpha_expert) or 0.5))
        ok = (cert.expert_radius is not None) == reached and cert.prediction == predict[i] \
            and abs(cert.radius - radius[i]) <= RADIUS_TOLERANCE
        if not ok:
            bad = np.zeros(len(df), bool)
            bad[i] = True
            raise _row_error(where, df, bad, "its path, prediction and radius do not follow from "
                             f"its counts (the counts give {cert.prediction} within "
                             f"{cert.radius:.6f})")


def interval95(k: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided 95% (Clopper-Pearson) interval of ``k`` successes in ``n`` trials."""
    k = np.asarray(k, dtype=float)
    low = np.where(k > 0, beta.ppf(0.025, np.maximum(k, 1), n - k + 1), 0.0)
    high = np.where(k < n, beta.ppf(0.975, k + 1, np.maximum(n - k, 1)), 1.0)
    return low, high


# the columns of a TSV's sample sizes and noise levels, whatever its certificate
N_COLUMNS = ("n", "router_n", "root_n", "child_n", "stage_n", "expert_n")
SIGMA_COLUMNS = ("sigma", "router_sigma", "root_sigma", "child_sigma", "stage_sigma",
                 "expert_sigma")


def column_values(df: pd.DataFrame, columns: Sequence[str]) -> list[float]:
    """Every value of ``columns`` present in ``df`` (comma lists split), sorted, distinct."""
    return sorted({float(v) for c in columns if c in df.columns for cell in df[c]
                   for v in str(cell).split(",")})


def has_counts(df: pd.DataFrame) -> bool:
    """Whether a TSV carries the counts its radii follow from (checked by :func:`read_tsv`):
    an expert's, a routed, set, tree or cascade certificate's. Cohen et al.'s published logs
    carry none."""
    return any(c in df.columns for c in ("stage_nA", "expert_nA", "root_groups", "nA"))


def half_unit(text: str) -> float:
    """Half a unit of the last digit of a number as printed (``"0.412"`` -> 0.0005,
    ``"1.2e-05"`` -> 5e-07, ``"3"`` -> 0.5): how far the value it was rounded from may lie."""
    text = text.strip().lower()
    mantissa, _, exponent = text.partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 0.5 * 10.0 ** (int(exponent or 0) - decimals)


# how published logs print radii: Python's general format ("{:.3}", Cohen et al.'s certify.py:
# 3 significant digits, trailing zeros dropped) or fixed point ("%.4f")
_FORMATS = (*(f".{p}" for p in range(1, 13)), *(f".{d}f" for d in range(13)))


def log_format(logged: Sequence[str]) -> str | None:
    """The coarsest format spec that prints every logged radius back exactly as logged (the
    general ``.p`` formats first, then fixed point ``.df``); None when none does."""
    texts = [str(t).strip() for t in logged]
    values = [float(t) for t in texts]
    for fmt in _FORMATS:
        if all(format(v, fmt) == t for v, t in zip(values, texts)):
            return fmt
    return None


def _unit(value: float, fmt: str) -> float:
    """One unit of the last digit ``fmt`` prints for ``value``."""
    if fmt.endswith("f"):
        return 10.0 ** -int(fmt[1:-1])
    digits = int(fmt[1:])
    return 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1) if value else 1.0


def _recover(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float, sigma: float,
             fmt: str | None) -> tuple[np.ndarray, np.ndarray]:
    """``(nA, ok)`` per row: the smallest certifying ``nA`` whose radius prints as logged (with
    ``fmt``; without one, lies within half a unit of the logged digits), and whether one does."""
    grid = np.concatenate([[0.0], radii_from_counts(np.arange(1, n + 1), n, alpha, sigma)])
    certifies = int(np.argmax(grid > 0)) if grid[-1] > 0 else n + 1  # the first nA that does
    n_a, ok = np.zeros(len(logged), np.int64), np.zeros(len(logged), bool)
    for i, (text, p) in enumerate(zip(logged, predict)):
        text = str(text).strip()
        value = float(text)
        if p == -1:
            ok[i] = value == 0
            continue
        if not math.isfinite(value) or value < 0:  # "0.0000": a radius printed below a digit
            continue
        half = 0.5 * _unit(value, fmt) if fmt else half_unit(text)
        k = max(int(np.searchsorted(grid, value - half * (1 + 1e-6))) - 2, certifies)
        while k <= n and grid[k] <= value + half * (1 + 1e-6) + 1e-12:
            if (format(grid[k], fmt) == text if fmt
                    else abs(grid[k] - value) <= half * (1 + 1e-9) + 1e-12):
                n_a[i], ok[i] = k, True
                break
            k += 1
    return n_a, ok


def counts_from_radii(logged: Sequence[str], predict: np.ndarray, n: int, alpha: float,
                      sigma: float, where: str) -> np.ndarray:
    """The smallest ``nA`` out of ``n`` whose radius at ``alpha`` and ``sigma``, printed as the
    log prints its radii (:func:`log_format`), is each row's logged radius (0 on an abstaining
    row): counts recovered from a published log. The radius recomputed from them is never above
    the logged one by more than the log's rounding.

    Raises:
        ResultsError: naming the first row whose radius no count can produce at this ``n``,
            with the usual protocols under which every row fits, if any.
    """
    fmt = log_format(logged)
    n_a, ok = _recover(logged, predict, n, alpha, sigma, fmt)
    if ok.all():
        return n_a
    i = int(np.flatnonzero(~ok)[0])
    fits = [f"n = {m}, alpha = {a}" for m in dict.fromkeys((n, 1_000, 10_000, 100_000))
            for a in dict.fromkeys((alpha, 0.001, 0.01, 0.05)) if (m, a) != (n, alpha)
            and _recover(logged, predict, m, a, sigma, fmt)[1].all()]
    hint = (f"every row fits {' or '.join(fits)}: check which the source used" if fits else
            "check the declared protocol (--n, --alpha, --sigma) or the log")
    printed = f" (radii printed as {{:{fmt}}})" if fmt else ""
    raise ResultsError(
        f"{where}: row {i + 1}: logged radius {str(logged[i]).strip()} (predict {predict[i]}) "
        f"cannot come from any count at n = {n}, alpha = {alpha}, sigma = {sigma}{printed}; "
        f"{int((~ok).sum())} row(s) affected; {hint}")


def certified_accuracy(df: pd.DataFrame, radii: Sequence[float] = RADII) -> pd.Series:
    """Share of rows that are correct with ``radius >= r``, for each ``r`` (Cohen's curve)."""
    correct = df["correct"].to_numpy().astype(bool)
    radius = df["radius"].to_numpy()
    return pd.Series([float(np.mean(correct & (radius >= r))) if len(df) else float("nan")
                      for r in radii], index=list(radii), name="certified_accuracy")


def average_certified_radius(df: pd.DataFrame) -> float:
    """ACR: mean over rows of the radius when correct, else 0."""
    return float(np.mean(df["radius"].to_numpy() * df["correct"].to_numpy())) if len(df) else 0.0


def summary_table(results: dict[str, pd.DataFrame], radii: Sequence[float] = RADII) -> pd.DataFrame:
    """One row per method: certified accuracy (%) at each radius, ACR, abstain share, inputs."""
    rows = {}
    for name, df in results.items():
        acc = certified_accuracy(df, radii) * 100
        row: dict = {f"r={r:g}": round(v, 1) for r, v in acc.items()}
        row["ACR"] = round(average_certified_radius(df), 3)
        row["abstain%"] = round(100 * float(np.mean(df["predict"] == -1)), 1)
        row["inputs"] = len(df)
        rows[name] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    if "inputs" in table:
        table["inputs"] = table["inputs"].astype(int)
    return table


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


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-markdown table of ``table`` (index as the first column)."""
    head = ["", *map(str, table.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(table.index,
                                                         table.astype(object).to_numpy())]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def curves_figure(results: dict[str, pd.DataFrame], title: str = "",
                  max_radius: float | None = None, baselines: Sequence[str] = ()):
    """The matplotlib Figure of :func:`plot_curves` (caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = max_radius or max([float(df["radius"].max()) for df in results.values() if len(df)]
                            + [0.5]) * 1.05
    grid = np.linspace(0, top, 300)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, df in results.items():
        style = {"linestyle": "--", "color": "0.45"} if name in baselines else {}
        ax.plot(grid, certified_accuracy(df, grid).to_numpy() * 100, label=plot_label(name),
                **style)
    ax.set_xlabel("l2 radius (pixels in [0, 1])")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)  # a curve at 100% stays visible above the frame's top line
    ax.set_xlim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(plot_label(title), fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(results: dict[str, pd.DataFrame], path: str | os.PathLike, title: str = "",
                max_radius: float | None = None, baselines: Sequence[str] = ()) -> Path:
    """Certified accuracy versus radius, one line per method; saved as PNG at ``path``.

    ``baselines`` (methods that are not certificates, such as the per-input oracle) are drawn
    dashed and grey, and their names say so.
    """
    import matplotlib.pyplot as plt

    fig = curves_figure(results, title, max_radius, baselines)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
