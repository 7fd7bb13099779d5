"""The field's published certification logs, pinned (``benchmarks/external/sources.yaml``), on
the leaderboard: each log checked against the sha256 its manifest pins, turned back into counts
under the protocol its source states (:func:`.logs.recompute_log`), and every number recomputed
from them; a log the stated protocol cannot produce is reported as an inconsistency, and
recomputed under the usual protocol every row fits, or refused when none does. Logs of one
family on the same inputs also give their envelope (not a classifier) and per-input oracle (not
a certificate). Torch-free.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..errors import IntegrityError, ProtocolMismatch, ResultsError
from ..files import atomic_write_json, atomic_write_text
from ..protocol import RADII
from ..results.logs import producible, protocols_that_fit
from ..urls import scrub_text
from .aces import aces_entries
from .compose import Member, envelope_entry, oracle_entry
from .entries import entry_filename
from .logs import LOG_DATASETS, log_entry, parse_inputs, recompute_log, vendored
from .reported import reported_entries

_REPOSITORY_KEYS = {"commit", "url", "license", "paper", "protocol", "protocol_stated_in"}
_LOG_KEYS = {"name", "repository", "path", "sha256", "dataset", "split", "inputs", "model",
             "training", "sigma", "family"}


@dataclass(frozen=True)
class LogSource:
    """One published log: where it comes from (``repository`` at ``commit``, ``path``), the
    bytes vendored beside the manifest (``file``, pinned by ``sha256``), what it certified and
    the protocol its source states (``n0``, ``n``, ``alpha``)."""

    name: str
    repository: str
    commit: str
    url: str
    path: str
    sha256: str
    dataset: str
    inputs: str
    model: str
    training: str
    sigma: float
    family: str
    paper: str
    license: str
    n0: int
    n: int
    alpha: float
    stated_in: str
    file: Path

    @property
    def provenance(self) -> str:
        return f"{self.repository}@{self.commit}/{self.path}"


def read_sources(manifest: str | os.PathLike) -> list[LogSource]:
    """The logs a manifest lists, each vendored file checked against its pinned sha256
    (``logs/OWNER-REPO/PATH`` beside the manifest).

    Raises:
        ResultsError: a manifest that is not one (the key named).
        IntegrityError: a vendored log missing or not the pinned bytes.
    """
    manifest = Path(manifest)
    try:
        raw = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ResultsError(f"{manifest}: not a sources manifest ({e})") from None
    if not isinstance(raw, dict) or not {"repositories", "logs"} <= set(raw) <= {
            "repositories", "logs", "aces", "reported"}:
        raise ResultsError(f"{manifest}: a sources manifest has `repositories` and `logs` (and "
                           "optionally `aces` and `reported`)")
    repos = raw["repositories"] or {}
    folders = [str(name).replace("/", "-") for name in repos]
    if len(set(folders)) != len(folders):
        raise ResultsError(f"{manifest}: two repositories share a vendored folder (logs/OWNER-NAME"
                           "): rename one key")
    for name, repo in repos.items():
        if not isinstance(repo, dict) or set(repo) != _REPOSITORY_KEYS:
            raise ResultsError(f"{manifest}: repositories.{name} needs exactly "
                               f"{', '.join(sorted(_REPOSITORY_KEYS))}")
        protocol = repo["protocol"]
        if not (isinstance(protocol, dict) and set(protocol) == {"n0", "n", "alpha"}
                and all(isinstance(protocol[k], int) and protocol[k] >= 1 for k in ("n0", "n"))
                and isinstance(protocol["alpha"], float) and 0 < protocol["alpha"] < 1):
            raise ResultsError(f"{manifest}: repositories.{name}.protocol needs n0 and n "
                               "(integers >= 1) and alpha (in (0, 1)), as the source states them")
    out = []
    for i, log in enumerate(raw["logs"] or []):
        where = f"{manifest}: logs[{i}]"
        if not isinstance(log, dict) or set(log) - {"split"} != _LOG_KEYS - {"split"}:
            raise ResultsError(f"{where} needs exactly {', '.join(sorted(_LOG_KEYS))}")
        repo = repos.get(log["repository"])
        if repo is None:
            raise ResultsError(f"{where}: repository {log['repository']!r} is not listed under "
                               "repositories")
        if log.get("split", "test") != "test":
            raise ResultsError(f"{where}: split {log['split']!r}: the leaderboard holds test "
                               "logs only")
        if log["dataset"] not in LOG_DATASETS:
            raise ResultsError(f"{where}: dataset {log['dataset']!r} is not one of "
                               f"{', '.join(LOG_DATASETS)}")
        parse_inputs(str(log["inputs"]))
        file = vendored(manifest, log["repository"], log["path"], where)
        if not file.is_file():
            raise IntegrityError(f"{where}: the vendored log {file} is missing")
        got = hashlib.sha256(file.read_bytes()).hexdigest()
        if got != log["sha256"]:
            raise IntegrityError(f"{where}: {file} has sha256 {got}, the manifest pins "
                                 f"{log['sha256']}: not the published bytes")
        protocol = repo["protocol"]
        out.append(LogSource(
            str(log["name"]), log["repository"], str(repo["commit"]), str(repo["url"]),
            str(log["path"]), got, log["dataset"], str(log["inputs"]), str(log["model"]),
            str(log["training"]), float(log["sigma"]), str(log["family"]), str(repo["paper"]),
            str(repo["license"]), int(protocol["n0"]), int(protocol["n"]),
            float(protocol["alpha"]), str(repo["protocol_stated_in"]), file))
    for what, values in (("names", [s.name for s in out]), ("logs (sha256)",
                                                            [s.sha256 for s in out]),
                         ("paths", [(s.repository, s.path) for s in out])):
        if len(set(values)) != len(values):
            raise ResultsError(f"{manifest}: {what} must be unique: one log is one entry")
    return out


@dataclass
class Recovered:
    """A source recomputed: its per-input frame and protocol (None if refused), and what was
    inconsistent with the stated protocol ('' if nothing)."""

    source: LogSource
    frame: pd.DataFrame | None
    protocol: dict | None
    counts: str
    problem: str
    spec: str = ""  # the inputs, in words
    flag: str = ""  # the inconsistency, short, as the board shows it


def recover(source: LogSource) -> Recovered:
    """Recompute one log under its stated protocol; where rows do not fit it, report how many
    and recompute under the first usual protocol (same ``n`` first) that every row fits."""
    args = dict(n0=source.n0, sigma=source.sigma, inputs=source.inputs)
    try:
        rec = recompute_log(source.file, source.dataset, n=source.n, alpha=source.alpha, **args)
        return Recovered(source, rec.frame, rec.protocol, rec.counts, "", _spec(source, rec))
    except ProtocolMismatch as e:  # anything else (a wrong declaration, a broken log) is raised
        stated = str(e).split(": ", 1)[-1]
    raw = pd.read_csv(source.file, sep="\t", dtype={"radius": str})
    logged, predict = raw["radius"].tolist(), raw["predict"].to_numpy()
    bad = int((~producible(logged, predict, source.n, source.alpha, source.sigma)).sum())
    head = (f"the stated protocol (n = {source.n}, alpha = {source.alpha:g}; "
            f"{source.stated_in}) cannot produce {bad} of {len(raw)} logged radii")
    fits = protocols_that_fit(logged, predict, source.n, source.alpha, source.sigma)
    if not fits:
        return Recovered(source, None, None, "", f"{head}, nor does any usual protocol: "
                                                 f"refused ({stated})")
    n, alpha = fits[0]
    rec = recompute_log(source.file, source.dataset, n=n, alpha=alpha, **args)
    return Recovered(source, rec.frame, rec.protocol, rec.counts,
                     f"{head}; every row fits n = {n}, alpha = {alpha:g}, the first usual "
                     "protocol that does (others may too): recomputed there",
                     _spec(source, rec),
                     f"protocol inferred: the stated alpha {source.alpha:g} cannot give {bad} of "
                     f"{len(raw)} radii; recomputed at n = {n}, alpha = {alpha:g}")


def _spec(source: LogSource, rec) -> str:
    return rec.selection.describe(LOG_DATASETS[source.dataset][0], len(rec.frame))


def import_sources(manifest: str | os.PathLike, out: str | os.PathLike,
                   radii: Sequence[float] = RADII) -> list[Recovered]:
    """Entries for every log of ``manifest`` (provenance on each: repository at its commit,
    path, sha256, paper, license, stated and used protocol) and, per family of at least two
    logs on the same inputs, its envelope and oracle; ``sources.md`` in ``out`` reports each
    source and its inconsistencies. Returns every source recomputed.

    Raises:
        ResultsError, IntegrityError: as :func:`read_sources`.
    """
    out = Path(out)
    done = [recover(s) for s in read_sources(manifest)]
    families: dict[str, list[Recovered]] = {}
    for r in done:
        if r.frame is None:
            continue
        s = r.source
        note = r.problem or "consistent with the stated protocol"
        entry = log_entry(
            r.frame, dataset=s.dataset, benchmark=s.family, method=s.name, protocol=r.protocol,
            kind=f"external: counts {r.counts}", spec=r.spec, radii=radii, counts=r.counts,
            source=s.provenance, paper=s.paper, license=s.license, log_sha256=s.sha256,
            model=s.model, training=s.training,
            stated_protocol={"n0": s.n0, "n": s.n, "alpha": s.alpha, "in": s.stated_in},
            inconsistency=r.problem, protocol_inferred=r.flag,
            note=scrub_text(f"{s.model}, {s.training}; {note}"))
        atomic_write_json(out / entry_filename(entry), entry)
        families.setdefault(s.family, []).append(r)
    skipped = []
    for name, members in families.items():
        if len({tuple(sorted(m.frame["idx"])) for m in members}) > 1:
            skipped.append(name)  # said in sources.md: an envelope compares the same inputs
        elif len(members) > 1:
            family = [Member(m.source.name, m.frame, m.protocol) for m in members]
            args = dict(dataset=members[0].source.dataset, benchmark=members[0].source.family,
                        spec=members[0].spec, radii=radii)
            for entry in (envelope_entry(family, **args), oracle_entry(family, **args)):
                atomic_write_json(out / entry_filename(entry), entry)
    atomic_write_text(out / "sources.md", sources_report(done, skipped))
    raw = yaml.safe_load(Path(manifest).read_text()) or {}
    for entry in reported_entries(raw.get("reported") or [], str(manifest)):
        atomic_write_json(out / entry_filename(entry), entry)
    if "aces" in raw:
        entries, report = aces_entries([r.source for r in done if r.frame is not None],
                                       manifest, radii)
        for entry in entries:
            atomic_write_json(out / entry_filename(entry), entry)
        atomic_write_text(out / "aces.md", report)
    return done


def sources_report(done: Sequence[Recovered], skipped: Sequence[str] = ()) -> str:
    """Markdown: one row per source, its provenance, protocol stated and used, and status;
    the families given no envelope or oracle because their logs certify other inputs."""
    lines = ["# Published logs", "", "| log | provenance | inputs | stated (n, alpha) | "
             "recomputed under | status |", "| --- | --- | --- | --- | --- | --- |"]
    for r in done:
        s = r.source
        used = "–" if r.protocol is None else f"n = {r.protocol['n']}, alpha = " \
            f"{r.protocol['alpha']:g}"
        rows = "–" if r.frame is None else f"{len(r.frame)} ({s.inputs})"
        lines.append(f"| {s.name} | {s.provenance} (sha256 {s.sha256[:12]}...) | {rows} | "
                     f"{s.n}, {s.alpha:g} | {used} | {r.problem or 'consistent'} |")
    if skipped:
        lines += ["", "No envelope or oracle (their logs certify other inputs): "
                  + ", ".join(skipped) + "."]
    return "\n".join(lines) + "\n"
