"""``rsrouter bench run``: every method of a config on the same inputs, from counts computed once.

Steps: load the data and pick the inputs; load every model once (experts, routers, the entropy
router fitted on the fit split); run one count pass per model over the inputs it has not seen
(the count store: resumable, growable); compose every method's certificates from the stored
counts at its own alpha; write one TSV per method with its metadata, then the report
(:mod:`rsrouter.bench.report`).
"""

from __future__ import annotations

import json
import os
from contextlib import nullcontext
from pathlib import Path

import pandas as pd

from .. import __version__
from ..data import data_identity, load_dataset
from ..distributed import current
from ..errors import ConfigError
from ..files import FileLock, atomic_write_json
from ..results import check_rows, write_tsv
from ..router import ROUTER_STAGES, load_routed
from . import methods as compose
from .compare import oracle_frame
from .config import BenchConfig, Method
from .store import count_settings, ensure_counts, read_counts

KINDS = {"expert": "certificate", "router": "certificate", "cascade": "certificate",
         "aces": "certificate", "oracle": "not a certificate: per-input ceiling",
         "envelope": "not a classifier: selection over the test inputs"}


def expert_record(expert) -> dict:
    """How an entry names an expert: name, where its bytes came from, both hashes, sigma."""
    return {"name": expert.name, "uri": expert.uri, "weights_sha256": expert.pin.weights_sha256,
            "config_sha256": expert.pin.config_sha256, "sigma": expert.sigma}


class _Models:
    """Every model of a config, loaded once; count files computed once per model."""

    def __init__(self, cfg: BenchConfig, dataset, indices, out: Path, registry, progress: bool,
                 device: str = "cpu"):
        self.cfg, self.dataset, self.indices, self.out = cfg, dataset, indices, out
        self.registry, self.progress, self.device = registry, progress, device
        self.experts: dict[str, object] = {}
        self.routed: dict[str, object] = {}
        self.paths: dict[str, Path] = {}

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
        return read_counts(self.paths[key], self.indices)


def _method_experts(cfg: BenchConfig, method: Method) -> list[str]:
    return list(method.experts) or [m.expert for m in cfg.expert_methods()]


def run_bench(cfg: BenchConfig, out: str | os.PathLike, *, registry=None,
              progress: bool = True, device: str = "cpu") -> Path:
    """Run ``cfg`` into the folder ``out``; returns ``out``. Resumable: counts already stored
    are reused, a rerun with more inputs computes only the new ones.

    Raises:
        ConfigError: a method that cannot be built (unknown expert, mismatched experts, ...).
        LockedError: another process runs a benchmark into ``out``.
    """
    from ..registry import Registry
    from .report import build_report

    out = Path(out)
    registry = registry or Registry()
    dist = current()  # under torchrun every rank runs the count passes, rank 0 writes the rest
    with FileLock(Path(os.path.realpath(out)) / ".lock", str(out)) if dist.is_main \
            else nullcontext():
        dataset = load_dataset(cfg.dataset, cfg.split, cfg.root)
        indices = cfg.inputs.select(len(dataset))
        models = _Models(cfg, dataset, indices, out, registry, progress, device)
        bench = {"config": cfg.to_dict(), "data": data_identity(dataset), "inputs": indices,
                 "rsrouter_version": __version__}
        if dist.is_main:
            atomic_write_json(out / "bench.json", bench)
        for method in cfg.methods:
            try:
                frame, meta = _compose(cfg, method, models)
            except (ConfigError, KeyError) as e:
                raise ConfigError(f"methods: {method.name} ({method.type}): {e}") from None
            if frame is not None:  # the rows we publish pass our own reader
                check_rows(frame, f"{method.name} (composed)")
            if dist.is_main:
                _write_method(out, method, frame, meta, cfg, dataset, len(indices))
        if dist.is_main:
            used = sorted(str(path.relative_to(out)) for path in models.paths.values())
            atomic_write_json(out / "bench.json", {**bench, "counts": used})
            build_report(out)
    dist.barrier()  # every rank returns once the report is written
    return out


def _compose(cfg: BenchConfig, method: Method, models: _Models):
    """``(frame, metadata)`` of one method (``(None, metadata)`` for the envelope)."""
    alpha = cfg.protocol.alpha
    if method.type == "expert":
        expert = models.expert(method.expert)
        counts = models.counts(expert, expert.name)
        return compose.expert_frame(counts, alpha), {
            "experts": [expert_record(expert)], "alpha_accounting": f"alpha = {alpha}"}
    if method.type == "router":
        routed = models.router(method.router)
        router_counts = models.counts(routed.router, method.name, ROUTER_STAGES)
        expert_counts = [models.counts(e, e.name) for e in routed.experts]
        frame = compose.routed_frame(router_counts, expert_counts,
                                     [e.name for e in routed.experts], alpha, method.alpha_split,
                                     routed.router.sigma)
        return frame, {
            "experts": [expert_record(e) for e in routed.experts],
            "router": {"uri": str(routed.router.source), "sigma": routed.router.sigma,
                       "architecture": routed.router.card.architecture,
                       "weights_sha256": routed.router.pin.weights_sha256,
                       "config_sha256": routed.router.pin.config_sha256},
            "alpha_accounting": f"router alpha {alpha * method.alpha_split:g} + expert alpha "
                                f"{alpha - alpha * method.alpha_split:g} = {alpha} (union bound)"}
    experts = [models.expert(ref) for ref in _method_experts(cfg, method)]
    records = [expert_record(e) for e in experts]
    names = [e.name for e in experts]
    if method.type == "cascade":
        frames = [models.counts(e, e.name) for e in experts]
        frame = compose.cascade_frame(frames, names, alpha, method.threshold, method.alpha_rule)
        k = len(experts)
        rule = (f"alpha/(k+1) at stopping stage k (Jeong & Shin's certify.py): {alpha} for the "
                "path that stops at stage k; not a union over stopping stages"
                if method.alpha_rule == "faithful" else
                f"alpha/(2K-1) = {alpha / (2 * k - 1):g} for each of the 2K-1 bounds any "
                f"stopping stage can use: {alpha} in all (union bound)")
        return frame, {"experts": records, "alpha_accounting": rule,
                       "threshold": method.threshold}
    if method.type == "aces":
        from .aces import SmoothedEntropyRouter, fit_thresholds

        thresholds, order, report = fit_thresholds(experts, method.fit, cfg.radii,
                                                   data_root=cfg.root)
        router = SmoothedEntropyRouter(experts[order[0]], thresholds, order)
        router_counts = models.counts(router, method.name, ROUTER_STAGES)
        ordered = [experts[k] for k in order]
        frame = compose.routed_frame(router_counts, [models.counts(e, e.name) for e in ordered],
                                     [e.name for e in ordered], alpha, method.alpha_split,
                                     router.sigma)
        return frame, {
            "experts": [expert_record(e) for e in ordered],
            "router": {"kind": "entropy of the largest-sigma expert's softmax, binned",
                       "thresholds": thresholds, "sigma": router.sigma,
                       "weights_sha256": router.pin.weights_sha256,
                       "config_sha256": router.pin.config_sha256, "fit": report},
            "alpha_accounting": f"router alpha {alpha * method.alpha_split:g} + expert alpha "
                                f"{alpha - alpha * method.alpha_split:g} = {alpha} (union bound)"}
    results = {e.name: compose.expert_frame(models.counts(e, e.name), alpha) for e in experts}
    meta = {"experts": records, "alpha_accounting": "none: not a certificate"}
    if method.type == "oracle":  # needs every expert's counts on every input
        frame = oracle_frame(results)
        frame.insert(5, "time", sum(df["time"].to_numpy() for df in results.values()))
        frame["forwards"] = sum(df["forwards"].to_numpy() for df in results.values())
        return frame, meta
    return None, meta  # envelope: built by the report from the experts' TSVs


def _write_method(out: Path, method: Method, frame, meta: dict, cfg: BenchConfig, dataset,
                  count: int) -> None:
    chosen = {"expert": "none", "cascade": "none", "oracle": "test", "envelope": "test",
              "aces": method.fit.split}.get(method.type, method.chosen_on or cfg.choices_made_on)
    info = {"method": method.name, "type": method.type, "kind": KINDS[method.type],
            "benchmark": cfg.name, "data": data_identity(dataset),
            "inputs": {"spec": cfg.inputs.describe(), "count": count},
            "protocol": {"n0": cfg.protocol.n0, "n": cfg.protocol.n, "alpha": cfg.protocol.alpha,
                         "seed": cfg.protocol.seed},
            "radii": list(cfg.radii), "chosen_on": chosen,
            "chosen_on_test": chosen == "test",
            "note": method.note, "rsrouter_version": __version__, **meta}
    if method.type in ("router", "aces") and chosen == "test":
        info["note"] = (info["note"] + " " if info["note"] else "") + \
            "Choices of this method were made on the test inputs."
    if frame is not None:
        write_tsv(frame, out / f"{method.name}.tsv")
    atomic_write_json(out / f"{method.name}.method.json", info)
