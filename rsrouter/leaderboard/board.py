"""Leaderboards: entries (one JSON per method and benchmark) merged into a static site.

An entry is written by ``rsrouter bench run`` (``DIR/entries/*.json``) or by ``import-tsv`` for a
published certification log. ``build_site`` merges entries (the same entry twice is one row)
into ``leaderboard.json``, ``leaderboard.md`` and one self-contained ``index.html``: a tab per
dataset, a table sortable by any column, the curves as inline SVG; no network, no CDN.
``publish`` merges a site into a folder, a git remote or a Hub dataset repo: publishing the same
entries twice adds nothing.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from .. import __version__
from ..certify.bounds import radii_from_counts
from ..errors import LockedError, ResultsError
from ..files import FileLock, atomic_write_json, atomic_write_text
from ..protocol import RADII
from ..results.curves import (
    average_certified_radius,
    certified_accuracy,
    interval95,
    md_text,
    plot_label,
)
from ..results.logs import N_COLUMNS, SIGMA_COLUMNS, column_values, counts_from_radii, has_counts
from ..results.tsv import read_tsv
from ..urls import scrub_text

SCHEMA = "rsrouter-leaderboard-entry/1"
MAX_SIGMA = 16.0  # pixel units (inputs in [0, 1]): far beyond any noise level anyone certifies
SITE_FILES = ("leaderboard.json", "leaderboard.md", "index.html")
_REQUIRED = ("schema", "benchmark", "dataset", "method", "kind", "radii", "accuracy", "ci95",
             "inputs")
_NUMBERS = ("acr", "acr_se", "abstain", "max_regret", "forwards_per_input", "seconds_per_input")
_STRINGS = ("benchmark", "dataset", "method", "kind")
# what may differ between two copies of one entry (everything else is what it measured)
_VOLATILE = ("key", "date", "rsrouter_version")


def check_entry(entry: object, where: str) -> dict:
    """An entry's schema, types and numbers, checked, with its key derived from its content (a
    key in the file is ignored) and its intervals recomputed: nothing from a file reaches the
    page unchecked.

    Numbers must be possible: shares and rates in range, certified accuracy a share of the
    inputs that never grows with the radius, and no input certified beyond the largest radius
    the entry's protocol allows (``sigma Phi^-1(alpha^(1/n))``, every sample for one class).

    Raises:
        ResultsError: naming ``where`` and the problem.
    """
    if not isinstance(entry, dict):
        raise ResultsError(f"{where}: not a leaderboard entry (a JSON object is needed)")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing or entry.get("schema") != SCHEMA:
        raise ResultsError(f"{where}: not a leaderboard entry (schema {SCHEMA}; missing "
                           f"{missing})")
    bad = [k for k in _STRINGS if not isinstance(entry[k], str) or not entry[k]]
    bad += [k for k in _NUMBERS if entry.get(k) is not None and not _number(entry[k], low=0)]
    radii, acc, ci = entry["radii"], entry["accuracy"], entry["ci95"]
    if not (isinstance(radii, list) and isinstance(acc, list) and isinstance(ci, list)
            and len(radii) == len(acc) == len(ci) and radii
            and all(_number(r, low=0) for r in radii) and all(_number(a, 0, 1) for a in acc)
            and all(isinstance(c, list) and len(c) == 2 and all(_number(v) for v in c)
                    for c in ci)):
        bad.append("radii/accuracy/ci95")
    inputs = entry["inputs"]
    if not isinstance(inputs, dict) or not _number(inputs.get("count"), low=1) \
            or not isinstance(inputs["count"], int):
        bad.append("inputs")
    if entry.get("abstain") is not None and not _number(entry["abstain"], 0, 100):
        bad.append("abstain")
    for key in ("data", "protocol", "router"):
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            bad.append(key)
    if not isinstance(entry.get("experts") or [], list) or not all(
            isinstance(e, dict) for e in entry.get("experts") or []):
        bad.append("experts")
    router = entry.get("router") if isinstance(entry.get("router"), dict) else {}
    if not isinstance(router.get("children") or [], list) or not all(
            isinstance(c, dict) for c in router.get("children") or []):
        bad.append("router.children")
    bad += [k for k in _STRINGS if isinstance(entry[k], str) and any(
        unicodedata.category(c) in ("Cc", "Cf") for c in entry[k])]  # invisible characters
    if not bad:
        bad += _check_protocol(entry)
    if bad:
        raise ResultsError(f"{where}: leaderboard entry with malformed field(s) "
                           f"{sorted(set(bad))}")
    check_date(entry.get("date", ""), where)
    _check_numbers(entry, where)
    count = inputs["count"]
    low, high = interval95(np.rint(np.asarray(acc) * count), count)
    entry = {**entry, "ci95": [[round(float(lo), 4), round(float(hi), 4)]
                               for lo, hi in zip(low, high)]}
    return {**entry, "key": entry_key(entry)}


def _check_numbers(entry: dict, where: str) -> None:
    radii, acc, count = entry["radii"], np.asarray(entry["accuracy"]), entry["inputs"]["count"]
    problems = []
    if any(b <= a for a, b in zip(radii, radii[1:])):
        problems.append("radii must increase")
    if (np.diff(acc) > 1e-9).any():
        problems.append("certified accuracy cannot grow with the radius")
    if (np.abs(np.round(np.rint(acc * count) / count, 4) - acc) > 1e-9).any():
        problems.append(f"accuracy must be a share of its {count} inputs (4 decimals)")
    top = max_radius(entry)
    beyond = [r for r, a in zip(radii, acc) if r > top * (1 + 1e-9) and a > 0]
    if beyond:
        problems.append(f"inputs certified at r = {beyond[0]:g}, beyond the largest radius its "
                        f"protocol allows ({top:.4g})")
    share = acc[0] if radii[0] == 0 else 1.0  # of the inputs certified at all, correctly
    if entry.get("acr") is not None and entry["acr"] > share * top + 1e-3:
        problems.append(f"ACR {entry['acr']} exceeds what its protocol allows "
                        f"({share * top:.4g})")
    if problems:
        raise ResultsError(f"{where}: impossible numbers: {'; '.join(problems)}")


def entry_sigmas(entry: dict) -> list:
    """The noise levels an entry's certificates were made at, as written: its experts' and,
    for an imported log, its protocol's (a number or a list)."""
    declared = (entry.get("protocol") or {}).get("sigma")
    declared = declared if isinstance(declared, list) else [] if declared is None else [declared]
    return [e.get("sigma") for e in entry.get("experts") or []] + declared


def _check_protocol(entry: dict) -> list[str]:
    """What an entry must say for its numbers to be checked: n, alpha and its sigmas."""
    protocol = entry.get("protocol")
    if not isinstance(protocol, dict):
        return ["protocol"]
    bad = []
    if not (_number(protocol.get("n"), low=1) and isinstance(protocol["n"], int)):
        bad.append("protocol.n")
    if not (_number(protocol.get("alpha"), 0, 1) and 0 < protocol["alpha"] < 1):
        bad.append("protocol.alpha")
    sigmas = entry_sigmas(entry)
    if not sigmas or not all(_number(v) and 0 < v <= MAX_SIGMA for v in sigmas):
        bad.append(f"sigma (experts[].sigma or protocol.sigma: numbers in (0, {MAX_SIGMA:g}])")
    return bad


def max_radius(entry: dict) -> float:
    """The largest radius any input of a checked ``entry`` can be certified at under its
    protocol: every sample for one class at its largest expert sigma, ``sigma
    Phi^-1(alpha^(1/n))``. Every certificate rsrouter composes (routed, set, tree, cascade with
    p0 >= 0.5) is at most its chosen expert's radius, at a level no larger than alpha."""
    protocol = entry["protocol"]
    tail = -math.expm1(math.log(protocol["alpha"]) / protocol["n"])  # 1 - alpha^(1/n)
    return max(entry_sigmas(entry)) * float(norm.isf(tail))


def check_date(value: object, where: str) -> None:
    """``date`` is empty or an ISO date (YYYY-MM-DD) no later than tomorrow; it is shown, and
    never decides which of two entries is kept."""
    if value in ("", None):
        return
    try:
        day = date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        day = None
    if day is None or day > date.today() + timedelta(days=1):
        raise ResultsError(f"{where}: date {value!r} is not a past ISO date (YYYY-MM-DD)")


def entry_key(entry: dict) -> str:
    """What an entry measured, from its content: the benchmark and method, the data by content,
    the inputs, the protocol, the models by their hashes, the alpha accounting (which names the
    certificate), and for an imported log the log's sha256. Two
    entries with one key are two copies of one measurement; the numbers they report must agree.
    Fields added since rsrouter 0.2 are left out, so its entries keep their keys."""
    data = entry.get("data") or {}
    router = entry.get("router") or {}
    protocol = entry.get("protocol") or {}
    key = {"benchmark": entry["benchmark"], "method": entry["method"],
           "type": entry.get("type"), "dataset": entry["dataset"], "split": entry.get("split"),
           "data": [data.get("length"), data.get("labels_sha256")],
           "inputs": [entry["inputs"].get(k) for k in ("spec", "count")],
           "protocol": [protocol.get(k) for k in ("n0", "n", "alpha", "seed")],
           "alpha_accounting": entry.get("alpha_accounting"),
           "models": [[e.get("weights_sha256"), e.get("config_sha256"), e.get("sigma")]
                      for e in entry.get("experts") or []
                      if isinstance(e, dict) and e.get("weights_sha256")],
           "router": [router.get("weights_sha256"), router.get("config_sha256"),
                      router.get("thresholds"),
                      [[c.get("weights_sha256"), c.get("config_sha256")]
                       for c in router.get("children") or []]],
           "log_sha256": entry.get("log_sha256")}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _number(value, low: float | None = None, high: float | None = None) -> bool:
    """A finite JSON number (not a bool) within ``[low, high]``."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and (low is None or value >= low)
            and (high is None or value <= high))


def read_entry(path: str | os.PathLike) -> dict:
    """One entry file, checked. Raises ResultsError naming the file and the problem."""
    path = Path(path)
    try:
        entry = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{path}: not a leaderboard entry ({e})") from None
    return {**check_entry(entry, str(path)), "_from": str(path)}


def _site_entries_of(data: object, where: str) -> list[dict]:
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ResultsError(f"{where}: not a leaderboard (no entries list)")
    return [{**check_entry(e, f"{where} entry {i}"), "_from": f"{where} entry {i}"}
            for i, e in enumerate(data["entries"])]


def _read_board(path: Path, where: str | None = None) -> list[dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"{where or path}: not a leaderboard ({e})") from None
    return _site_entries_of(data, where or str(path))


def collect_entries(sources: Iterable[str | os.PathLike]) -> list[dict]:
    """Entries from results folders (their ``entries/``), entry folders, entry files and built
    sites (their ``leaderboard.json``), each checked and keyed by its content."""
    found = []
    for source in sources:
        source = Path(source)
        if source.is_file() and source.name == "leaderboard.json":
            found += _read_board(source)
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
    for entry in entries:
        key = entry_key(entry)
        entry = {**entry, "key": key}
        name = _name(entry)
        old = by_key.get(key)
        if old is None and name in by_name:
            old = by_key[by_name[name]]
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
        if copy and not replace:
            if _body(old) != _body(entry):
                warnings.warn(f"{entry.get('_from', 'an added entry')}: a copy of "
                              f"{entry['benchmark']}/{entry['method']} with other metadata "
                              "(notes, links); the board keeps its own: --replace takes the "
                              "added one's", stacklevel=2)
            continue
        by_key[key] = entry
        by_name[name] = key
    return sorted(({k: v for k, v in e.items() if not k.startswith("_")}
                   for e in by_key.values()),
                  key=lambda e: (e["dataset"], e["benchmark"], e["method"]))


def build_site(sources: Sequence[str | os.PathLike], out: str | os.PathLike,
               entries: list[dict] | None = None, *, replace: bool = False) -> Path:
    """Merge ``entries`` and the entries of ``sources`` (in that order, :func:`merge`) into a
    site in ``out``; returns ``out``."""
    merged = merge([*(entries or []), *collect_entries(sources)], replace=replace)
    out = Path(out)
    text, html_page = markdown(merged), page(merged)  # everything rendered before anything is
    atomic_write_json(out / "leaderboard.json", {"schema": "rsrouter-leaderboard/1",  # written
                                                 "rsrouter_version": __version__,
                                                 "entries": merged})
    atomic_write_text(out / "leaderboard.md", text)
    atomic_write_text(out / "index.html", html_page)
    return out


def entry_filename(entry: dict) -> str:
    """A file name for an entry that stays inside its folder whatever its names hold: the
    names themselves where they are safe, else a safe spelling and a hash of the names (two
    names never share a file)."""
    raw = f"{entry['benchmark']}--{entry['method']}"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).lstrip(".") or "entry"
    if stem != raw or raw.count("--") != 1:  # "a--b" + "c" and "a" + "b--c" differ
        names = json.dumps([entry["benchmark"], entry["method"]])
        stem += "-" + hashlib.sha256(names.encode()).hexdigest()[:8]
    return f"{stem}.json"


# ---- entries from published logs ------------------------------------------------------------


def import_tsv(log: str | os.PathLike, *, dataset: str, method: str, out: str | os.PathLike,
               benchmark: str | None = None, source: str = "", n: int | None = None,
               n0: int | None = None, alpha: float | None = None, sigma: float | None = None,
               radii: Sequence[float] = RADII) -> Path:
    """An entry, marked external, for a certification log in Cohen et al.'s format (``idx
    label predict radius correct time``), every radius recomputed from counts: the log's own
    (an rsrouter TSV: checked by :func:`rsrouter.results.tsv.read_tsv`) or, for a published log
    without counts, recovered under the declared protocol (``n``, ``alpha``, ``sigma``): the
    smallest ``nA`` whose radius prints as the logged one
    (:func:`rsrouter.results.tsv.counts_from_radii`). Returns the entry file.

    Raises:
        ResultsError: a log that is not a certification TSV, a protocol missing or at odds with
            the log's counts, or a logged radius that no count can produce (the row named).
    """
    log = Path(log)
    df = read_tsv(log)
    if sigma is not None and not 0 < sigma <= MAX_SIGMA:
        raise ResultsError(f"--sigma {sigma}: a noise level in pixel units (inputs in [0, 1]) is "
                           f"in (0, {MAX_SIGMA:g}]")
    if has_counts(df):
        protocol = _stored_protocol(df, log, n=n, n0=n0, alpha=alpha, sigma=sigma)
        counts = "stored in the log, each radius checked against them"
    else:
        missing = [flag for flag, v in (("--n", n), ("--alpha", alpha), ("--sigma", sigma))
                   if v is None]
        if missing:
            raise ResultsError(f"{log} has no counts: give the protocol it was certified with "
                               f"({', '.join(missing)}), so that each radius is recomputed from "
                               "the counts it implies")
        logged = pd.read_csv(log, sep="\t", dtype={"radius": str})["radius"].tolist()
        predict = df["predict"].to_numpy()
        n_a = counts_from_radii(logged, predict, n, alpha, sigma, str(log))
        df = df.assign(radius=np.where(predict == -1, 0.0,
                                       radii_from_counts(n_a, n, alpha, sigma)))
        protocol = {"n0": n0, "n": n, "alpha": alpha, "sigma": sigma}
        counts = ("recovered from published radii (the smallest nA whose radius, printed as "
                  "the log prints it, is the logged one)")
    acc = certified_accuracy(df, radii).to_numpy()
    low, high = interval95(np.rint(acc * len(df)), len(df))
    benchmark = benchmark or f"{dataset}-external"
    body = hashlib.sha256(log.read_bytes()).hexdigest()
    source = scrub_text(source)
    entry = {"schema": SCHEMA, "key": "", "benchmark": benchmark, "dataset": dataset,
             "split": "test",
             "inputs": {"spec": "as published", "count": len(df)}, "protocol": protocol,
             "method": method, "type": "external", "kind": f"external: counts {counts}",
             "radii": list(radii), "accuracy": [round(float(a), 4) for a in acc],
             "ci95": [[round(float(lo), 4), round(float(hi), 4)] for lo, hi in zip(low, high)],
             "acr": round(average_certified_radius(df), 3),
             "abstain": round(100 * float(np.mean(df["predict"] == -1)), 1),
             "max_regret": None, "forwards_per_input": None, "seconds_per_input": None,
             "experts": [], "router": None,
             "chosen_on": "unknown", "chosen_on_test": False, "external": True,
             "counts_available": has_counts(df), "counts": counts, "radii_recomputed": True,
             "source": source, "log_sha256": body,
             "note": f"imported from {log.name}" + (f" ({source})" if source else ""),
             "rsrouter_version": __version__, "date": date.today().isoformat()}
    entry["key"] = entry_key(entry)
    path = Path(out) / entry_filename(entry)
    atomic_write_json(path, entry)
    return path


def _stored_protocol(df: pd.DataFrame, log: Path, **declared) -> dict:
    """The protocol a log's own counts were made with (its largest ``n``, its noise levels);
    a declared value must agree.

    Raises:
        ResultsError: a declared value at odds with the counts, or a noise level beyond
            :data:`MAX_SIGMA`.
    """
    n0 = column_values(df, ("n0", "stage_n0"))
    alphas = column_values(df, ("alpha",))
    sigmas = [s for s in column_values(df, SIGMA_COLUMNS) if s > 0]
    stored = {"n0": int(n0[0]) if len(n0) == 1 else None,
              "n": int(max(column_values(df, N_COLUMNS), default=0)) or None,
              "alpha": alphas[0] if len(alphas) == 1 else None,
              "sigma": sigmas[0] if len(sigmas) == 1 else sigmas or None}
    if sigmas and max(sigmas) > MAX_SIGMA:
        raise ResultsError(f"{log}: its counts were made at sigma {max(sigmas):g}; a noise level "
                           f"in pixel units (inputs in [0, 1]) is at most {MAX_SIGMA:g}")
    for key, value in declared.items():
        if value is not None and stored[key] is not None and not np.allclose(
                np.atleast_1d(value), np.atleast_1d(stored[key])):
            raise ResultsError(f"{log}: --{key} {value} but its counts were made with "
                               f"{key} = {stored[key]}; drop --{key} (the counts say it)")
    return stored


# ---- rendering ---------------------------------------------------------------------------------


def _flags(entry: dict) -> list[str]:
    flags = []
    if entry["kind"] != "certificate":
        flags.append(entry["kind"].split(":")[0])
    if entry.get("chosen_on_test") and entry["kind"] == "certificate":
        flags.append("choices made on the test inputs")
    return flags


def _radii(entries: list[dict]) -> list[float]:
    return sorted({float(r) for e in entries for r in e["radii"]})


def _acc_at(entry: dict, r: float) -> tuple[float, float, float] | None:
    for radius, acc, (low, high) in zip(entry["radii"], entry["accuracy"], entry["ci95"]):
        if float(radius) == r:
            return acc, low, high
    return None


def _protocol(entry: dict) -> str:
    p = entry.get("protocol") or {}
    parts = [f"{entry['inputs'].get('count')} inputs"]
    parts += [f"{k} = {p[k]}" for k in ("n", "alpha") if p.get(k) is not None]
    sigmas = sorted({float(v) for v in entry_sigmas(entry) if _number(v)})
    if sigmas:
        parts.append("sigma = " + ", ".join(f"{v:g}" for v in sigmas))
    return ", ".join(parts)


def _md(text: object) -> str:
    """Plain text in a markdown table cell: HTML escaped, markdown's own characters too."""
    return md_text(text)


def markdown(entries: list[dict]) -> str:
    lines = ["# Leaderboard", "", "Certified accuracy (%) at l2 radius r (pixels in [0, 1]), "
             "exact 95% interval over the inputs in the JSON; rows from `rsrouter bench` were "
             "checked against their count store; rows marked external were imported from "
             "certification logs, their radii recomputed from counts (the log's own, or "
             "recovered from its printed radii under the protocol shown). \"choices made on\": "
             "the split on which a method's settings were chosen (none: it has none; test: "
             "flagged).", ""]
    for dataset in sorted({e["dataset"] for e in entries}):
        rows = [e for e in entries if e["dataset"] == dataset]
        radii = _radii(rows)
        head = ["method", "benchmark", *[f"r={r:g}" for r in radii], "ACR", "max regret",
                "choices made on", "flags"]
        lines += [f"## {_md(dataset)}", "", "| " + " | ".join(head) + " |",
                  "|" + " --- |" * len(head)]
        for e in rows:
            cells = [_md(e["method"]), _md(f"{e['benchmark']} ({_protocol(e)})")]
            for r in radii:
                got = _acc_at(e, r)
                cells.append("–" if got is None else f"{100 * got[0]:.1f}")
            cells += ["–" if e.get("acr") is None else f"{e['acr']:.3f}",
                      "–" if e.get("max_regret") is None else f"{e['max_regret']:.1f}",
                      _md(str(e.get("chosen_on", "unknown"))), _md("; ".join(_flags(e)))]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _svg(rows: list[dict], title: str) -> str:
    """The curves of one dataset's entries as inline SVG (drawn from the stored grids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for e in rows:
        style = {}
        if e.get("external"):
            style = {"linestyle": "-.", "alpha": 0.8}
        elif e.get("type") == "envelope":
            style = {"linestyle": ":", "color": "black"}
        elif e["kind"] != "certificate":
            style = {"linestyle": "--", "color": "0.5"}
        flags = _flags(e)
        acc = 100 * np.asarray(e["accuracy"])
        ax.plot(e["radii"], acc, marker="o", markersize=2.5,
                label=plot_label(f"{e['method']} [{e['benchmark']}]"
                                 + (f" ({flags[0]})" if flags else "")), **style)
    ax.set_xlabel("l2 radius")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(plot_label(title), fontsize=9)
    fig.tight_layout()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "rsrouter"}):  # the same entries, the same bytes
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
.tabs button{font-size:1rem;padding:.4rem .9rem;margin-right:.3rem;border:1px solid #999;
background:#f4f4f4;cursor:pointer}
.tabs button.active{background:#335;color:#fff}
.tab{display:none}.tab.active{display:block}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
td:first-child,th:first-child,td.text{text-align:left}
th{background:#eee;cursor:pointer;user-select:none}
tr.external td{color:#555;font-style:italic}
.flag{font-size:.75rem;color:#a33}
.curves svg{max-width:100%;height:auto}
"""

_SCRIPT = """
function showTab(name){
  document.querySelectorAll('.tab').forEach(t=>t.classList.toggle('active',t.dataset.tab===name));
  document.querySelectorAll('.tabs button').forEach(b=>b.classList.toggle('active',
    b.dataset.tab===name));
}
function sortBy(th){
  const table=th.closest('table'), col=[...th.parentNode.children].indexOf(th);
  const down=th.dataset.dir!=='desc'; th.dataset.dir=down?'desc':'asc';
  const rows=[...table.tBodies[0].rows];
  const key=r=>{const v=r.cells[col].dataset.v;return v===undefined?r.cells[col].textContent:
    (v===''?-Infinity:parseFloat(v));};
  rows.sort((a,b)=>{const x=key(a),y=key(b);const c=(typeof x==='number')?x-y:
    String(x).localeCompare(String(y));return down?-c:c;});
  rows.forEach(r=>table.tBodies[0].appendChild(r));
}
document.addEventListener('DOMContentLoaded',()=>{
  document.querySelectorAll('th').forEach(th=>th.addEventListener('click',()=>sortBy(th)));
  document.querySelectorAll('.tabs button').forEach(b=>b.addEventListener('click',
    ()=>showTab(b.dataset.tab)));
  const first=document.querySelector('.tabs button'); if(first) showTab(first.dataset.tab);
});
"""


def page(entries: list[dict]) -> str:
    """The self-contained index.html (inline CSS, JS and SVG; nothing fetched)."""
    esc = html.escape
    datasets = sorted({e["dataset"] for e in entries})
    tabs = "".join(f'<button data-tab="{esc(d)}">{esc(d)}</button>' for d in datasets)
    sections = []
    for d in datasets:
        rows = [e for e in entries if e["dataset"] == d]
        radii = _radii(rows)
        head = ["method", "benchmark", *[f"r={r:g}" for r in radii], "ACR", "max regret",
                "forwards / input", "choices made on", "flags"]
        body = []
        for e in rows:
            cells = [f'<td class="text">{esc(e["method"])}</td>',
                     f'<td class="text">{esc(e["benchmark"])} ({esc(_protocol(e))})</td>']
            for r in radii:
                got = _acc_at(e, r)
                cells.append('<td data-v="">–</td>' if got is None else
                             f'<td data-v="{got[0]:.4f}" title="95% interval '
                             f'{100 * got[1]:.1f}–{100 * got[2]:.1f}">{100 * got[0]:.1f}</td>')
            for key, fmt in (("acr", "{:.3f}"), ("max_regret", "{:.1f}"),
                             ("forwards_per_input", "{:,.0f}")):
                value = e.get(key)
                cells.append('<td data-v="">–</td>' if value is None else
                             f'<td data-v="{value}">{fmt.format(value)}</td>')
            cells.append(f'<td class="text">{esc(str(e.get("chosen_on", "unknown")))}</td>')
            cells.append(f'<td class="text"><span class="flag">{esc("; ".join(_flags(e)))}'
                         "</span></td>")
            css = ' class="external"' if e.get("external") else ""
            body.append(f"<tr{css}>{''.join(cells)}</tr>")
        sections.append(
            f'<section class="tab" data-tab="{esc(d)}"><h2>{esc(d)}</h2>'
            f"<table><thead><tr>{''.join(f'<th>{esc(h)}</th>' for h in head)}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>"
            f'<div class="curves">{_svg(rows, f"{d}: certified accuracy versus radius")}</div>'
            "</section>")
    return ("<!doctype html><html><head><meta charset=\"utf-8\"><title>rsrouter leaderboard"
            f"</title><style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
            "<h1>Certified robustness leaderboard</h1><p>Certified accuracy (%) at l2 radius r "
            "(pixels in [0, 1]); hover a cell for its exact 95% interval; click a column to "
            "sort. Rows from <code>rsrouter bench</code> were checked against their count "
            "store; rows marked external were imported from certification logs, their radii "
            "recomputed from counts stored or recovered under the protocol shown.</p>"
            f"<div class=\"tabs\">{tabs}</div>{''.join(sections)}"
            f"<p><small>built by rsrouter {__version__}</small></p></body></html>\n")


# ---- publishing --------------------------------------------------------------------------------


def _site_entries(site: Path) -> list[dict]:
    path = site / "leaderboard.json"
    if not path.is_file():
        raise ResultsError(f"{site} is not a built leaderboard (no leaderboard.json); run "
                           "`rsrouter leaderboard build` first")
    return _read_board(path)


def publish(site: str | os.PathLike, *, to: str | os.PathLike | None = None,
            git_remote: str | None = None, hub: str | None = None,
            endpoint: str | None = None, replace: bool = False) -> str:
    """Merge the site's entries into what the destination already has (:func:`merge`: the
    destination's first, an added entry that collides with one of them is refused unless
    ``replace``) and write the merged site there; returns the folder, the commit sha, or the
    Hub commit.

    Each destination is updated atomically with respect to other publishers: a folder under a
    lock, a git branch or a Hub repo by compare-and-swap on its head commit. A destination that
    cannot be read aborts the publish (nothing is written over a board that was not read).

    Raises:
        ResultsError: a collision, or a destination that holds no readable leaderboard.
        HubError, LockedError: the destination cannot be read or updated.
    """
    entries = _site_entries(Path(site))
    if to is not None:
        target = Path(to)
        try:
            lock = FileLock(Path(os.path.realpath(target)) / ".leaderboard.lock",
                            str(target)).acquire()
        except LockedError:
            raise LockedError(f"{target}: another `leaderboard publish` is writing it; try again "
                              "when it has finished") from None
        try:
            old = _site_entries(target) if (target / "leaderboard.json").exists() else []
            build_site([], target, entries=[*old, *entries], replace=replace)
        finally:
            lock.release()
        return str(target)
    if git_remote is not None:
        return _publish_git(entries, git_remote, replace)
    if hub is not None:
        return _publish_hub(entries, hub, endpoint, replace)
    raise ValueError("publish: give to=, git_remote= or hub=")


def _publish_git(entries: list[dict], remote: str, replace: bool) -> str:
    from ..sources.publish import update_branch

    def fill(work: Path) -> None:
        board = work / "leaderboard.json"
        if board.is_symlink() or (board.exists() and not board.is_file()):
            raise ResultsError(f"{remote}:main:leaderboard.json is not a regular file (a link "
                               "would read a file of this machine); fix the remote's tree")
        old = _read_board(board, f"{remote}:main:leaderboard.json") if board.exists() else []
        build_site([], work, entries=[*old, *entries], replace=replace)

    return update_branch(remote, fill, message="Update the leaderboard", allow_empty=False)


def _publish_hub(entries: list[dict], uri: str, endpoint: str | None, replace: bool,
                 attempts: int = 5) -> str:
    """A Hub dataset repo ``hf://datasets/org/name`` (thin: huggingface_hub does the work; the
    upload names the commit it read as its parent, so a concurrent publish makes it retry)."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import HfHubHTTPError

    prefix = "hf://datasets/"
    if not uri.startswith(prefix):
        raise ValueError(f"--hub takes hf://datasets/org/name, got {uri!r}")
    repo_id = uri[len(prefix):]
    api = HfApi(endpoint=endpoint)
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    for _ in range(attempts):
        head = api.repo_info(repo_id, repo_type="dataset").sha
        old = []
        if "leaderboard.json" in api.list_repo_files(repo_id, repo_type="dataset", revision=head):
            path = hf_hub_download(repo_id, "leaderboard.json", repo_type="dataset",
                                   revision=head, endpoint=endpoint)
            old = _read_board(Path(path), uri)
        with tempfile.TemporaryDirectory(prefix="rsrouter-board-") as tmp:
            build_site([], tmp, entries=[*old, *entries], replace=replace)
            try:
                commit = api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="dataset",
                                           commit_message="Update the leaderboard",
                                           parent_commit=head)
            except HfHubHTTPError as e:  # another publisher moved the head: read it again
                if getattr(e.response, "status_code", None) in (409, 412):
                    continue
                raise
        return str(commit.oid)
    raise ResultsError(f"{uri}: the repo kept moving under {attempts} tries to publish; try "
                       "again")


def summary_frame(entries: list[dict]) -> pd.DataFrame:
    """The entries as one table (for notebooks)."""
    return pd.DataFrame([{"dataset": e["dataset"], "benchmark": e["benchmark"],
                          "method": e["method"], "kind": e["kind"], "acr": e.get("acr"),
                          "max_regret": e.get("max_regret")} for e in entries])
