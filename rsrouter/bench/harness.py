"""``rsrouter bench run``: every method of a config on the same inputs, from counts computed once.

Steps: load the data and pick the inputs; load every model the config names (experts, routers)
before any count is computed, so that a typo fails at once; fit the entropy routers on their fit
split; run one count pass per model over the inputs it has not seen (the count store:
resumable, growable, sharded under torchrun); compose every method's certificates from the
stored counts at its own alpha; write one TSV per method with its metadata, stamped with the
run's key; then the report (:mod:`rsrouter.bench.report`). Files of methods that are no longer in
the config are removed, so that a report or a leaderboard never mixes runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import __version__
from ..cards.refs import is_remote_source
from ..cards.router import LAZY_KINDS
from ..certify import tree
from ..certify.bounds import split_alpha
from ..certify.cascade import cascade_bounds
from ..certify.fallback import DEFAULT_SHARE
from ..data import data_identity, load_dataset
from ..distributed import current
from ..errors import ConfigError, ResultsError, RsrouterError
from ..files import FileLock, atomic_write_json
from ..registry.core import Registry
from ..results.rows import check_rows
from ..results.tsv import write_tsv
from ..routing.load import load_routed
from ..routing.router import ROUTER_STAGES
from ..urls import public_url
from . import accounting
from . import methods as compose
from .aces import SmoothedEntropyRouter, fit_thresholds
from .config import BenchConfig, Method
from .counts import read_counts
from .report import build_report
from .store import count_settings, ensure_counts


def expert_record(expert) -> dict:
    """How an entry names an expert: name, sigma, both hashes, and its source when it is one
    anybody can fetch (a local folder's path means nothing elsewhere)."""
    source = public_url(expert.uri) if is_remote_source(expert.uri) else "local folder"
    return {"name": expert.name, "sigma": expert.sigma, "source": source,
            "weights_sha256": expert.pin.weights_sha256,
            "config_sha256": expert.pin.config_sha256}


def run_key(cfg: BenchConfig, data: dict, indices: list[int]) -> str:
    """What a run measures: the config, the data read and the inputs (stamps every file)."""
    key = {"config": cfg.to_dict(), "data": data, "inputs": indices}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


class _Run:
    """One benchmark run: its config, data and inputs, every model loaded once, each count file
    computed and read once, and the frames of the methods composed so far (``results``)."""

    def __init__(self, cfg: BenchConfig, dataset, indices, out: Path, registry, progress: bool,
                 device: str = "cpu"):
        self.cfg, self.dataset, self.indices, self.out = cfg, dataset, indices, out
        self.registry, self.progress, self.device = registry, progress, device
        self.experts: dict[str, object] = {}
        self.routed: dict[str, object] = {}
        self.paths: dict[str, Path] = {}
        self.frames: dict[Path, pd.DataFrame] = {}
        self.results: dict[str, pd.DataFrame] = {}

    def expert(self, ref: str):
        if ref not in self.experts:
            self.experts[ref] = self.registry.load(ref, base=self.cfg.base, device=self.device)
        return self.experts[ref]

    def router(self, ref: str):
        if ref not in self.routed:
            path = Path(ref) if Path(ref).is_absolute() else self.cfg.base / ref
            self.routed[ref] = load_routed(path, registry=self.registry, device=self.device)
        return self.routed[ref]

    def counts(self, model, name: str, stages=("select", "estimate")) -> pd.DataFrame:
        """The model's count frame on the benchmark's inputs (computed once, stored)."""
        settings = count_settings(model, stages, self.cfg.protocol, data_identity(self.dataset))
        key = json.dumps(settings, sort_keys=True)
        if key not in self.paths:  # one pass per model, however many methods use it
            self.paths[key] = ensure_counts(model, name, self.dataset, self.indices, self.out,
                                            self.cfg.protocol, stages=stages,
                                            progress=self.progress)
        path = self.paths[key]
        if path not in self.frames:
            self.frames[path] = read_counts(path, self.indices)
        return self.frames[path]


Composed = tuple[pd.DataFrame | None, dict]


@dataclass(frozen=True)
class BenchMethod:
    """How the harness runs one method type: ``load(run, method)`` loads every model it needs
    (before any count pass, so that a bad reference fails at once), ``compose(run, method)``
    returns its frame (None: built by the report) and the metadata of its ``.method.json``;
    ``kind`` says what its rows are."""

    load: Callable[[_Run, Method], object]
    compose: Callable[[_Run, Method], Composed]
    kind: str = "certificate"


METHODS: dict[str, BenchMethod] = {}  # by method type (bench.config.METHOD_SCHEMAS)


def register(type_: str, load: Callable[[_Run, Method], object], kind: str = "certificate"):
    """Register the decorated ``compose(run, method)`` as the method type ``type_``."""
    def add(fn: Callable[[_Run, Method], Composed]) -> Callable[[_Run, Method], Composed]:
        METHODS[type_] = BenchMethod(load, fn, kind)
        return fn
    return add


def _pool(cfg: BenchConfig, method: Method) -> list[str]:
    """Expert references of a cascade or an entropy router (default: every expert method's)."""
    return list(method.experts) or [m.expert for m in cfg.expert_methods()]


def _expert_methods(cfg: BenchConfig, method: Method) -> list[Method]:
    """The expert methods an envelope or oracle is taken over (default: all of them)."""
    names = set(method.experts) or {m.name for m in cfg.expert_methods()}
    return [m for m in cfg.expert_methods() if m.name in names]


def _load_expert(run: _Run, method: Method):
    return run.expert(method.expert)


def _load_router(run: _Run, method: Method):
    return run.router(method.router)


def _load_pool(run: _Run, method: Method) -> list:
    return [run.expert(ref) for ref in _pool(run.cfg, method)]


def _load_nothing(run: _Run, method: Method) -> None:
    """Envelope and oracle: taken over the config's expert methods, which load their own."""


def _load_all(run: _Run) -> None:
    """Load every model before any count pass: a bad reference fails at once, naming it."""
    for method in run.cfg.methods:
        try:
            METHODS[method.type].load(run, method)
        except RsrouterError as e:
            raise ConfigError(f"methods: {method.name} ({method.type}): {e}") from None


def run_bench(cfg: BenchConfig, out: str | os.PathLike, *, registry=None,
              progress: bool = True, device: str = "cpu") -> Path:
    """Run ``cfg`` into the folder ``out``; returns ``out``. Resumable: counts already stored
    are reused, a rerun with more inputs computes only the new ones.

    Raises:
        ConfigError: a method that cannot be built (unknown expert, mismatched experts, ...).
        LockedError: another process runs a benchmark into ``out``.
    """
    out = Path(out)
    registry = registry or Registry()
    dist = current()  # under torchrun every rank runs the count passes, rank 0 writes the rest
    if dist.is_main:
        check_results_folder(out)
    with FileLock(Path(os.path.realpath(out)) / ".lock", str(out)) if dist.is_main \
            else nullcontext():
        if dist.is_main:
            atomic_write_json(out / MARKER, {"rsrouter": __version__})
        dataset = load_dataset(cfg.dataset, cfg.split, cfg.root)
        indices = cfg.inputs.select(len(dataset))
        run = _Run(cfg, dataset, indices, out, registry, progress, device)
        _load_all(run)
        key = run_key(cfg, data_identity(dataset), indices)
        bench = {"config": cfg.to_dict(), "data": data_identity(dataset), "inputs": indices,
                 "inputs_spec": cfg.inputs.describe(), "run_key": key,
                 "rsrouter_version": __version__}
        if dist.is_main:
            _clean(out, cfg)
        for method in sorted(cfg.methods, key=lambda m: m.type != "expert"):  # experts first
            try:
                frame, meta = METHODS[method.type].compose(run, method)
            except (ConfigError, KeyError) as e:
                raise ConfigError(f"methods: {method.name} ({method.type}): {e}") from None
            if frame is not None:  # the rows we publish pass our own reader
                check_rows(frame, f"{method.name} (composed)")
                run.results[method.name] = frame
            if dist.is_main:
                _write_method(out, method, frame, meta, cfg, dataset, len(indices), key)
        if dist.is_main:
            used = sorted(str(path.relative_to(out)) for path in run.paths.values())
            atomic_write_json(out / "bench.json", {**bench, "counts": used,
                                                   "date": pd.Timestamp.now().date().isoformat()})
            build_report(out)
    dist.barrier()  # every rank returns once the report is written
    return out


MARKER = ".rsrouter-bench"  # a results folder of `bench run` (written before anything else)


def check_results_folder(out: Path) -> None:
    """``out`` may receive a benchmark: it does not exist, is empty, or holds rsrouter results
    (its marker, rsrouter < 0.3's ``bench.json``, or only count files in ``counts/``: reused).

    Raises:
        ResultsError: naming the folder and the fix; nothing is deleted or written.
    """
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {out} is a file; bench run writes a results folder")
    if not out.is_dir() or (out / MARKER).is_file() or (out / "bench.json").is_file():
        return
    # dot-files (.DS_Store, .gitkeep, its own .lock) are never touched: not in the way
    other = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    if other == ["counts"] and (out / "counts").is_dir() and all(
            p.name.endswith((".tsv", ".tsv.json")) for p in (out / "counts").iterdir()):
        return
    if other:
        raise ResultsError(f"--out {out} holds files that are not rsrouter results "
                           f"({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}); "
                           "bench run replaces what a folder of its own holds, so give a new or "
                           "empty folder")


def _clean(out: Path, cfg: BenchConfig) -> None:
    """Remove what an earlier run wrote for methods this config no longer has, and the
    entries and summaries (rebuilt at the end), so that nothing stale is reported."""
    names = {m.name for m in cfg.methods}
    for meta in out.glob("*.method.json"):
        name = meta.name[: -len(".method.json")]
        if name not in names:
            meta.unlink()
            (out / f"{name}.tsv").unlink(missing_ok=True)
    for entry in (out / "entries").glob("*.json"):  # its own entries only
        entry.unlink()
    for name in ("summary.md", "summary.csv", "summary.json", "curves.png", "envelope.tsv"):
        (out / name).unlink(missing_ok=True)


@register("expert", _load_expert)
def _expert(run: _Run, method: Method) -> Composed:
    """One expert's certificates at the protocol's alpha."""
    alpha = run.cfg.protocol.alpha
    expert = run.expert(method.expert)
    return compose.expert_frame(run.counts(expert, expert.name), alpha), {
        "experts": [expert_record(expert)], "alpha_accounting": f"alpha = {alpha}"}


@register("router", _load_router)
def _router(run: _Run, method: Method) -> Composed:
    """A trained router over its experts: the pinned (Dual RS), set, lazy set or lazy set +
    cascade certificate (by default the one its card names)."""
    alpha = run.cfg.protocol.alpha
    routed = run.router(method.router)
    card = routed.router.card
    kind = method.certificate or card.certificate_kind
    router_counts = run.counts(routed.router, method.name, ROUTER_STAGES)
    expert_counts = [run.counts(e, e.name) for e in routed.experts]
    names = [e.name for e in routed.experts]
    shares = None if card.shares_forward_with is None else names.index(card.shares_forward_with)
    split = method.alpha_split if method.alpha_split is not None else routed.alpha_split
    args = (router_counts, expert_counts, names, alpha, split, routed.router.sigma)
    extra = {}
    if method.margin is not None and kind not in LAZY_KINDS:
        raise ConfigError(f"method {method.name}: margin applies to the lazy-set certificates, "
                          f"not to {kind} (the one its router's card names)")
    if method.fallback_share is not None and kind != "lazy-set+cascade":
        raise ConfigError(f"method {method.name}: fallback_share applies to the "
                          f"lazy-set+cascade certificate, not to {kind}")
    if kind in LAZY_KINDS:
        extra["margin"] = method.margin if method.margin is not None else float(
            card.certificate.get("margin", 0.0))
    if kind == "lazy-set+cascade":
        extra["fallback_share"] = method.fallback_share if method.fallback_share is not None \
            else float(card.certificate.get("fallback_share", DEFAULT_SHARE))
    frame, routing, rule = compose.router_frame(kind, *args, shares=shares, **extra)
    return frame, {
        "certificate": kind, "alpha_split": split, **extra,
        "experts": [expert_record(e) for e in routed.experts],
        "router": _router_record(method.router, routed.router),
        "routing": routing, "alpha_accounting": rule}


@register("cascade", _load_pool)
def _cascade(run: _Run, method: Method) -> Composed:
    """The multiscale cascade over the pool's experts, from their counts."""
    alpha = run.cfg.protocol.alpha
    experts = _load_pool(run, method)
    frames = [run.counts(e, e.name) for e in experts]
    frame = compose.cascade_frame(frames, [e.name for e in experts], alpha, method.threshold,
                                  method.alpha_rule)
    bounds = cascade_bounds(len(experts))
    rule = (f"alpha/(k+1) at stopping stage k (Jeong & Shin's certify.py): {alpha} for the "
            "bounds of the path taken; the path depends on the data, so not alpha overall"
            if method.alpha_rule == "faithful" else
            f"alpha/{bounds} = {alpha / bounds:g} for each of the {bounds} bounds any stopping "
            f"stage can use: {alpha} in all (union bound)")
    return frame, {"experts": [expert_record(e) for e in experts], "alpha_accounting": rule,
                   "threshold": method.threshold}


@register("aces", _load_pool)
def _aces(run: _Run, method: Method) -> Composed:
    """The entropy router (:mod:`.aces`), fitted on its fit split, then routed like a router."""
    cfg = run.cfg
    experts = _load_pool(run, method)
    fitted = fit_thresholds(  # on rank 0 only; the others receive its fit
        experts, method.fit, cfg.protocol.radii, data_root=cfg.root, cache=run.out / "fits",
        progress=run.progress) if current().is_main else None
    thresholds, order, report = current().broadcast(fitted)
    router = SmoothedEntropyRouter(experts[order[0]], thresholds, order)
    router_counts = run.counts(router, method.name, ROUTER_STAGES)
    ordered = [experts[k] for k in order]
    frame = compose.routed_frame(router_counts, [run.counts(e, e.name) for e in ordered],
                                 [e.name for e in ordered], cfg.protocol.alpha,
                                 method.alpha_split, router.sigma)
    return frame, {
        "experts": [expert_record(e) for e in ordered],
        "router": {"kind": "entropy of the largest-sigma expert's softmax, binned",
                   "thresholds": thresholds, "sigma": router.sigma,
                   "weights_sha256": router.pin.weights_sha256,
                   "config_sha256": router.pin.config_sha256, "fit": report},
        "routing": accounting.routing_stats(frame),
        "alpha_accounting": accounting.alpha_split_text(cfg.protocol.alpha, method.alpha_split)}


def _pool_meta(run: _Run, method: Method) -> dict:
    """The metadata of an envelope or oracle: the expert methods it is taken over."""
    pool = _expert_methods(run.cfg, method)
    return {"pool": [m.name for m in pool], "alpha_accounting": "none: not a certificate",
            "experts": [expert_record(run.expert(m.expert)) for m in pool]}


@register("oracle", _load_nothing, "not a certificate: per-input ceiling")
def _oracle(run: _Run, method: Method) -> Composed:
    """The per-input best expert (needs every expert's counts on every input)."""
    pool = {m.name: run.results[m.name] for m in _expert_methods(run.cfg, method)}
    frame = compose.oracle_frame(pool)
    frame.insert(5, "time", sum(df["time"].to_numpy() for df in pool.values()))
    frame["forwards"] = sum(df["forwards"].to_numpy() for df in pool.values())
    return frame, _pool_meta(run, method)


@register("envelope", _load_nothing, "not a classifier: selection over the test inputs")
def _envelope(run: _Run, method: Method) -> Composed:
    """A per-radius selection over the pool, built by the report: no frame here."""
    return None, _pool_meta(run, method)


def _router_record(path: str, router) -> dict:
    record = {"name": Path(path).name, "sigma": router.sigma,
              "architecture": router.card.architecture,
              "weights_sha256": router.pin.weights_sha256,
              "config_sha256": router.pin.config_sha256}
    if router.card.shares_forward_with is not None:
        record["shares_forward_with"] = router.card.shares_forward_with
    return record


def _tree_structure(run: _Run, method: Method):
    """``(root, expert names, children, group of each expert)`` of a tree method; raises
    ConfigError when a child's experts are not the root's (by sha256) or two children share one."""
    root = run.router(method.router)
    names = [e.name for e in root.experts]
    pins = {e.name: (e.pin.weights_sha256, e.pin.config_sha256) for e in root.experts}
    children = [run.router(ref) for ref in method.children]
    for ref, child in zip(method.children, children):
        for e in child.experts:
            if pins.get(e.name, (e.pin.weights_sha256, e.pin.config_sha256)) != (
                    e.pin.weights_sha256, e.pin.config_sha256):
                raise ConfigError(f"child router {ref}: its expert {e.name} is not the root's "
                                  "(different sha256); retrain the child on the root's experts")
    try:
        groups = tree.groups_of(names, [[e.name for e in c.experts] for c in children])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return root, names, children, groups


@register("tree", _tree_structure)
def _tree(run: _Run, method: Method) -> Composed:
    """A router tree (:mod:`..certify.tree`): the root's choices pooled into one group per child
    router, each child choosing within its group."""
    alpha = run.cfg.protocol.alpha
    root, names, children, groups = _tree_structure(run, method)
    child_of_group = {groups[names.index(c.experts[0].name)]: i for i, c in enumerate(children)}
    root_counts = run.counts(root.router, f"{method.name}-root", ROUTER_STAGES)
    child_counts = [run.counts(c.router, f"{method.name}-child{i}", ROUTER_STAGES)
                    for i, c in enumerate(children)]
    expert_counts = [run.counts(e, e.name) for e in root.experts]
    frame = compose.tree_frame(
        root_counts, root.router.sigma, groups, names,
        [(child_counts[i], c.router.sigma, [names.index(e.name) for e in c.experts])
         for i, c in enumerate(children)], child_of_group, expert_counts,
        alpha, method.alpha_split)
    a_r, a_e = split_alpha(alpha, method.alpha_split)
    at_root, at_child, _ = tree.split_levels(alpha, method.alpha_split, True)
    rule = (f"router tree: routers alpha {a_r:g} (the root alone {a_r:g} on a path without a "
            f"child; root {at_root:g} + child {at_child:g} on a path with one) + expert alpha "
            f"{a_e:g} = {alpha} (union bound; the path depends only on the selection draws)")
    record = _router_record(method.router, root.router)
    record["children"] = [_router_record(ref, c.router)
                          for ref, c in zip(method.children, children)]
    record["groups"] = [[n for n, g in zip(names, groups) if g == k]
                        for k in range(max(groups) + 1)]
    return frame, {"experts": [expert_record(e) for e in root.experts], "router": record,
                   "routing": accounting.tree_stats(frame), "alpha_accounting": rule}


def chosen_on(cfg: BenchConfig, method: Method) -> str:
    """Where a method's choices were made: what the config says, else what the method is."""
    if method.type in ("oracle", "envelope"):
        return cfg.split  # they pick per input or per radius on these inputs, by definition
    if method.type == "aces":
        return method.fit.split
    if method.chosen_on:
        return method.chosen_on
    return {"expert": "none", "cascade": "none"}.get(method.type, cfg.choices_made_on)


def _write_method(out: Path, method: Method, frame, meta: dict, cfg: BenchConfig, dataset,
                  count: int, key: str) -> None:
    chosen = chosen_on(cfg, method)
    info = {"method": method.name, "type": method.type, "kind": METHODS[method.type].kind,
            "benchmark": cfg.name, "run_key": key, "data": data_identity(dataset),
            "inputs": {"spec": cfg.inputs.describe(), "count": count},
            "protocol": cfg.protocol.record(), "radii": list(cfg.protocol.radii),
            "chosen_on": chosen, "chosen_on_test": chosen == "test",
            "note": method.note, "rsrouter_version": __version__, **meta}
    if method.type not in ("oracle", "envelope") and chosen in ("test", "unknown"):
        info["note"] = (info["note"] + " " if info["note"] else "") + (
            "Choices of this method were made on the test inputs." if chosen == "test" else
            "Where its choices were made is not recorded (set chosen_on in the config).")
    if frame is not None:
        write_tsv(frame, out / f"{method.name}.tsv")
    atomic_write_json(out / f"{method.name}.method.json", info)
