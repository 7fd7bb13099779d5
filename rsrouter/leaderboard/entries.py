"""Leaderboard entries: the schema, the checks every entry passes, its content-derived key.

An entry is one JSON per method and benchmark, written by ``rsrouter bench run``
(``DIR/entries/*.json``, :mod:`rsrouter.bench.report`) or by ``import-tsv`` for a published
certification log (:mod:`rsrouter.leaderboard.logs`). Nothing from a file reaches a board
unchecked: :func:`check_entry` refuses impossible numbers and recomputes the intervals.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import unicodedata
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from scipy.special import ndtri

from ..errors import ResultsError
from ..results.figures import interval95

SCHEMA = "rsrouter-leaderboard-entry/1"
MAX_SIGMA = 16.0  # pixel units (inputs in [0, 1]): far beyond any noise level anyone certifies
_REQUIRED = ("schema", "benchmark", "dataset", "method", "kind", "radii", "accuracy", "ci95",
             "inputs")
_NUMBERS = ("acr", "acr_se", "abstain", "max_regret", "forwards_per_input", "seconds_per_input")
_STRINGS = ("benchmark", "dataset", "method", "kind")


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
    bad += [k for k in _NUMBERS if entry.get(k) is not None and not is_number(entry[k], low=0)]
    radii, acc, ci = entry["radii"], entry["accuracy"], entry["ci95"]
    if not (isinstance(radii, list) and isinstance(acc, list) and isinstance(ci, list)
            and len(radii) == len(acc) == len(ci) and radii
            and all(is_number(r, low=0) for r in radii) and all(is_number(a, 0, 1) for a in acc)
            and all(isinstance(c, list) and len(c) == 2 and all(is_number(v) for v in c)
                    for c in ci)):
        bad.append("radii/accuracy/ci95")
    inputs = entry["inputs"]
    if not isinstance(inputs, dict) or not is_number(inputs.get("count"), low=1) \
            or not isinstance(inputs["count"], int):
        bad.append("inputs")
    if entry.get("abstain") is not None and not is_number(entry["abstain"], 0, 100):
        bad.append("abstain")
    for key in ("data", "protocol", "router"):
        if entry.get(key) is not None and not isinstance(entry[key], dict):
            bad.append(key)
    if not isinstance(entry.get("pool") or [], list) or not all(
            isinstance(m, str) for m in entry.get("pool") or []):
        bad.append("pool")
    if not isinstance(entry.get("experts") or [], list) or not all(
            isinstance(e, dict) for e in entry.get("experts") or []):
        bad.append("experts")
    router = entry.get("router") if isinstance(entry.get("router"), dict) else {}
    if not isinstance(router.get("children") or [], list) or not all(
            isinstance(c, dict) for c in router.get("children") or []):
        bad.append("router.children")
    bad += [k for k in _STRINGS if isinstance(entry[k], str) and any(
        unicodedata.category(c) in ("Cc", "Cf") for c in entry[k])]  # invisible characters
    bad += _check_kind(entry)
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


REPORTED = "reported, not recomputed"


def _check_kind(entry: dict) -> list[str]:
    """An entry's kind must say what its type is: a paper's printed numbers (cited, no ACR), an
    oracle (not a certificate), an envelope (not a classifier); an imported log's radii are
    recomputed unless it is a paper's print."""
    kind, what = entry["kind"], entry.get("type")
    if not isinstance(kind, str):
        return []
    bad = []
    if (what == "reported") != (kind == REPORTED):
        bad.append(f"kind ({REPORTED!r} exactly when type is reported)")
    if what == "reported":
        bad += [k for k in ("paper", "table") if not isinstance(entry.get(k), str)
                or not entry[k]]
        if entry.get("acr") is not None:
            bad.append("acr (a reported entry has none)")
    elif entry.get("external") and entry.get("radii_recomputed") is False:
        bad.append("radii_recomputed (an imported log's radii are recomputed)")
    if what == "oracle" and not kind.startswith("not a certificate"):
        bad.append("kind (an oracle is 'not a certificate: ...')")
    if what == "envelope" and not kind.startswith("not a classifier"):
        bad.append("kind (an envelope is 'not a classifier: ...')")
    return bad


def _check_numbers(entry: dict, where: str) -> None:
    radii, acc, count = entry["radii"], np.asarray(entry["accuracy"]), entry["inputs"]["count"]
    problems = []
    if any(b <= a for a, b in zip(radii, radii[1:])):
        problems.append("radii must increase")
    if (np.diff(acc) > 1e-9).any():
        problems.append("certified accuracy cannot grow with the radius")
    if entry.get("type") != "reported" and (  # a paper's print need not be a share
            np.abs(np.round(np.rint(acc * count) / count, 4) - acc) > 1e-9).any():
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
    problems += _check_curve(entry)
    if problems:
        raise ResultsError(f"{where}: impossible numbers: {'; '.join(problems)}")


CURVE_RESOLUTION = 0.001  # a stored curve's smallest step (merged steps drop at their first radius)


def step_curve(radius: np.ndarray, correct: np.ndarray,
               resolution: float = CURVE_RESOLUTION) -> dict:
    """Certified accuracy as the step function it is, from per-input radii (``correct``: the
    inputs certified with the right class): ``{"radius": [...], "accuracy": [...]}``, accuracy
    held from each radius (the first 0) until the next. Consecutive drops that together stay
    below ``resolution`` are merged and drawn at the group's first radius, so the stored curve
    has at most ``2 / resolution`` steps and is never above the exact one, nor below it by
    ``resolution`` or more."""
    radius, correct = np.asarray(radius, float), np.asarray(correct, bool)
    count = len(radius)
    # radii floored to 4 decimals (steps drawn no later than they are), at least 0.0001 (a
    # right input certified at radius 0 counts at r = 0 only); shares floored to 4 decimals
    values = np.sort(np.maximum(np.floor(radius[correct] * 1e4) / 1e4, 1e-4))
    xs, ys = [0.0], [_floor4(len(values) / count) if count else 0.0]
    i, start, held = 0, None, None
    while i < len(values):
        r = values[i]
        i = int(np.searchsorted(values, r, side="right"))  # every input at exactly r
        after = (len(values) - i) / count  # the share certified beyond r
        if start is not None and ys[-1] - after >= resolution - 1e-12:
            xs.append(round(float(start), 4))  # close the group before it reaches resolution
            ys.append(_floor4(held))
            start = None
        start = r if start is None else start
        held = after
    if start is not None:
        xs.append(round(float(start), 4))
        ys.append(_floor4(held))
    return {"radius": xs, "accuracy": ys}


def _floor4(share: float) -> float:
    return math.floor(share * 1e4 + 1e-9) / 1e4


def curve_at(curve: dict, r: float) -> float:
    """A stored curve's accuracy at radius ``r``: its value on the last step starting below
    ``r`` (the first at ``r = 0``)."""
    k = int(np.searchsorted(np.asarray(curve["radius"]), r, side="left")) - 1
    return float(curve["accuracy"][max(k, 0)])


def _check_curve(entry: dict) -> list[str]:
    """A stored step curve: increasing radii from 0, accuracies in [0, 1] that never grow,
    nothing beyond the protocol's largest radius, and the grid's accuracies to within its
    resolution (never below the curve)."""
    curve = entry.get("curve")
    if curve is None:
        return []
    if not (isinstance(curve, dict) and set(curve) == {"radius", "accuracy"}
            and isinstance(curve["radius"], list) and isinstance(curve["accuracy"], list)
            and len(curve["radius"]) == len(curve["accuracy"]) >= 1
            and all(is_number(v, low=0) for v in curve["radius"])
            and all(is_number(v, 0, 1) for v in curve["accuracy"])):
        return ["curve (radius and accuracy lists of numbers)"]
    xs, ys = np.asarray(curve["radius"]), np.asarray(curve["accuracy"])
    problems = []
    if xs[0] != 0 or (np.diff(xs) <= 0).any() or (np.diff(ys) > 1e-9).any():
        problems.append("curve: radii must increase from 0 and accuracy never grow")
    elif xs[-1] > max_radius(entry) * (1 + 1e-6) + 1e-4:
        problems.append(f"curve: a step at r = {xs[-1]:g}, beyond the largest radius its "
                        f"protocol allows ({max_radius(entry):.4g})")
    else:
        off = [r for r, a in zip(entry["radii"], entry["accuracy"])
               if not -1e-4 <= a - curve_at(curve, r) < CURVE_RESOLUTION + 1e-4]
        if off:
            problems.append(f"curve: not the accuracy the entry reports at r = {off[0]:g}")
    return problems


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
    if not (is_number(protocol.get("n"), low=1) and isinstance(protocol["n"], int)):
        bad.append("protocol.n")
    if not (is_number(protocol.get("alpha"), 0, 1) and 0 < protocol["alpha"] < 1):
        bad.append("protocol.alpha")
    sigmas = entry_sigmas(entry)
    if not sigmas or not all(is_number(v) and 0 < v <= MAX_SIGMA for v in sigmas):
        bad.append(f"sigma (experts[].sigma or protocol.sigma: numbers in (0, {MAX_SIGMA:g}])")
    return bad


def max_radius(entry: dict) -> float:
    """The largest radius any input of a checked ``entry`` can be certified at under its
    protocol: every sample for one class at its largest expert sigma, ``sigma
    Phi^-1(alpha^(1/n))``. Every certificate rsrouter composes (routed, set, tree, cascade with
    p0 >= 0.5) is at most its chosen expert's radius, at a level no larger than alpha."""
    protocol = entry["protocol"]
    tail = -math.expm1(math.log(protocol["alpha"]) / protocol["n"])  # 1 - alpha^(1/n)
    return max(entry_sigmas(entry)) * float(-ndtri(tail))  # norm.isf, without scipy.stats


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


def is_number(value, low: float | None = None, high: float | None = None) -> bool:
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

