"""Dual RS training rounds (Sun, Mao, Vechev 2026): one classifier for every candidate sigma and
its variance estimator (a smoothed router over the classifier at each sigma), in alternation.

Round 0 trains the classifier with each example's sigma drawn from the candidates, labels the
training inputs with its certified radius at each sigma, and trains the estimator on those
labels. Round r >= 1 fine-tunes the classifier of round r - 1 at the sigma the estimator of
round r - 1 assigns to each training input, labels again and trains a new estimator on the new
classifier. So each round's system (its estimator and the classifier it was labelled on) is
consistent, and every round is benchmarked on the validation split through the harness.

Layout of ``OUT``::

    round-K/classifier/   the classifier (a card serving every sigma)
    round-K/estimator/    the estimator (a router over classifier#sigma=S)
    round-K/bench.yaml    its validation benchmark; round-K/bench/ the results
    round-K/assigned.safetensors   (K >= 1) the sigma index assigned to each training input
    rounds.json, rounds.md, rounds.png    what each round did

Every step resumes (training checkpoints, label caches, the count store), so an interrupted run
rerun with the same command loses nothing and repeats nothing; a finished round is not redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as tdist
import yaml
from tqdm.auto import tqdm

from .._moved import getattr_for as _getattr_for
from ..bench.config import parse_bench_config
from ..bench.harness import run_bench
from ..cards.expert import ExpertCard, read_card
from ..cards.pins import check_claim, read_artifact
from ..cards.refs import sigma_ref
from ..cards.router import ExpertRef, read_router_card, write_router_card
from ..data import load_dataset
from ..distributed import current
from ..errors import ConfigError
from ..files import atomic_write_json, atomic_write_text, check_resume, load_tensors, save_tensors
from ..registry.core import Registry
from ..routing.config import RouterConfig
from ..routing.load import load_router
from ..training.expert import TrainConfig, train_expert
from ..training.router import train_router
from .config import DualRSConfig
from .rounds import RoundResult, write_rounds

ROUND = "round-{}"


def classifier_refs(classifier: Path | str, sigmas) -> list[str]:
    """The experts of a round: the classifier at each candidate sigma."""
    return [sigma_ref(str(classifier), s) for s in sigmas]


def classifier_config(cfg: DualRSConfig, *, init: Path | None = None) -> TrainConfig:
    """The TrainConfig of round 0 (``init`` None) or of a fine-tuning round."""
    c, f = cfg.classifier, cfg.finetune
    common = dict(dataset=cfg.data.dataset, arch=c.arch, sigmas=tuple(float(s) for s in
                                                                       cfg.sigmas),
                  momentum=c.momentum, weight_decay=c.weight_decay, seed=cfg.seed,
                  noise_copies=c.noise_copies, consistency_lambda=c.consistency.lam,
                  consistency_eta=c.consistency.eta)
    if init is None:
        return TrainConfig(epochs=c.epochs, batch_size=c.batch_size, lr=c.lr,
                           sigma_weights=tuple(c.sigma_weights) if c.sigma_weights else None,
                           **common)
    return TrainConfig(epochs=f.epochs, batch_size=f.batch_size, lr=f.lr, init=str(init),
                       **common)


def estimator_config(cfg: DualRSConfig, classifier: Path) -> RouterConfig:
    """The router config of a round's estimator: its experts are the classifier's sigmas."""
    refs = classifier_refs(classifier, cfg.sigmas)
    est = cfg.estimator
    sigma_r = est.router.sigma if est.router.sigma is not None else max(cfg.sigmas)
    backbone = None
    if est.router.backbone == "classifier":
        backbone = refs[list(cfg.sigmas).index(sigma_r)]
    return RouterConfig(experts=refs, data=cfg.data,
                        router=replace(est.router, sigma=sigma_r, backbone=backbone),
                        labels=est.labels, train=est.train, seed=cfg.seed)


@torch.no_grad()
def assign_sigmas(estimator, dataset, samples: int, *, seed: int, batch_size: int = 2500,
                  chunk: int = 500, progress: bool = True) -> torch.Tensor:
    """The sigma index the smoothed estimator gives each input of ``dataset``: its top choice
    over ``samples`` noisy draws (stream ``(seed, index, "assign")``). A training signal, not a
    certificate. Under torchrun each rank counts its share of the chunks and every rank gets
    the whole assignment (the same as one process's: the draws are seeded by input index)."""
    dist = current()
    out = torch.full((len(dataset),), -1, dtype=torch.long)
    mine = dist.shard(range(0, len(dataset), chunk))
    bar = tqdm(total=len(dataset), disable=not (progress and dist.is_main),
               desc="estimator assigns sigmas", unit="img")
    for start in mine:
        idx = list(range(start, min(start + chunk, len(dataset))))
        xs = torch.stack([dataset[i][0] for i in idx])
        counts = estimator.sample_counts(xs, samples, batch_size=batch_size, seed=seed,
                                         indices=idx, stage="assign")
        out[idx] = counts.argmax(1)
        bar.update(len(idx) * dist.world)
    bar.close()
    if dist.enabled:
        tdist.all_reduce(out, op=tdist.ReduceOp.MAX)  # each input counted by exactly one rank
    return out


def _assigned(path: Path, estimator, dataset, cfg: DualRSConfig, progress: bool) -> torch.Tensor:
    """The assignment of ``estimator`` (cached in ``path``, keyed by its weights)."""
    key = {"estimator": estimator.pin.weights_sha256, "samples": cfg.finetune.assign_samples,
           "seed": cfg.seed, "inputs": len(dataset)}
    if path.is_file():
        tensors, meta = load_tensors(path)
        if meta.get("key") == key:
            return tensors["assigned"]
    assigned = assign_sigmas(estimator, dataset, cfg.finetune.assign_samples, seed=cfg.seed,
                             progress=progress)
    if current().is_main:
        save_tensors(path, {"assigned": assigned}, {"key": key})
    current().barrier()
    return assigned


def bench_config(cfg: DualRSConfig, round_dir: Path) -> dict:
    """The validation benchmark of one round: the classifier at each global sigma, the Dual RS
    certificate (pinned) and the set certificate, the multiscale cascade over the classifier's
    sigmas, the envelope and the per-input oracle (both labelled: not certificates)."""
    experts = [{"type": "expert", "name": f"sigma-{s:g}", "expert": ref}
               for s, ref in zip(cfg.sigmas, classifier_refs("classifier", cfg.sigmas))]
    return {"name": f"{cfg.name}-round-{round_dir.name.split('-')[-1]}",
            "data": {"dataset": cfg.data.dataset, "split": "validation",
                     **({"root": cfg.data.root} if cfg.data.root else {})},
            **cfg.validation, "choices_made_on": "train", "methods": [
                *experts,
                {"type": "router", "name": "dualrs", "router": "estimator",
                 "note": "Dual RS: the estimator's certified choice of sigma, then the "
                         "classifier at that sigma; radius min(R_estimator, R_classifier)."},
                {"type": "router", "name": "dualrs-set", "router": "estimator",
                 "certificate": "set"},
                {"type": "cascade", "name": "multiscale"},
                {"type": "envelope"}, {"type": "oracle"}]}


def run_round(cfg: DualRSConfig, out: Path, k: int, previous: RoundResult | None, *,
              registry, device: str, progress: bool) -> RoundResult:
    """Round ``k``: (fine-tune the classifier,) label, train the estimator, benchmark."""
    rdir = out / ROUND.format(k)
    rdir.mkdir(parents=True, exist_ok=True)
    done = rdir / "round.json"
    if done.is_file():  # a finished round (of this config: train_dualrs checked): read it back
        return _result(k, rdir)
    classifier = rdir / "classifier"
    name = f"{cfg.name}-r{k}"
    if previous is None and cfg.classifier.pretrained:
        check_pretrained(cfg, pretrained_folder(cfg))  # every rank: none waits on a failed one
        if current().is_main:
            copy_pretrained(cfg, classifier)
        current().barrier()
    elif previous is None:
        train_expert(classifier_config(cfg), classifier, data_root=cfg.data.root, device=device,
                     name=name, progress=progress)
    else:
        train = load_dataset(cfg.data.dataset, "train", cfg.data.root, augment=False)
        estimator = load_router(previous.estimator, device=device)
        assigned = _assigned(rdir / "assigned.safetensors", estimator, train, cfg, progress)
        train_expert(classifier_config(cfg, init=previous.classifier), classifier,
                     device=device, name=name, progress=progress, assigned=assigned,
                     dataset=load_dataset(cfg.data.dataset, "train", cfg.data.root,
                                          augment=True))
    estimator = rdir / "estimator"
    train_router(estimator_config(cfg, classifier), estimator, registry=registry, device=device,
                 progress=progress)
    raw = bench_config(cfg, rdir)
    if current().is_main:
        atomic_write_text(rdir / "bench.yaml", "# written by rsrouter dualrs train\n"
                          + yaml.safe_dump(raw, sort_keys=False))
    run_bench(parse_bench_config(raw, str(rdir / "bench.yaml")), rdir / "bench",
              registry=registry, progress=progress, device=device)
    if current().is_main:
        atomic_write_json(done, {"round": k, "classifier_weights_sha256":
                                 read_card(classifier).weights_sha256,
                                 "estimator_weights_sha256":
                                 read_router_card(estimator).weights_sha256})
    current().barrier()
    return _result(k, rdir)


def pretrained_folder(cfg: DualRSConfig) -> Path:
    """``classifier.pretrained``, relative to the config file."""
    src = Path(cfg.classifier.pretrained)
    return Path(cfg.source).parent / src if not src.is_absolute() and cfg.source else src


def check_pretrained(cfg: DualRSConfig, folder: Path) -> None:
    """``folder`` must hold a gaussian classifier card of the config's architecture serving
    exactly the candidate sigmas on its dataset, whose weights match the card's sha256.

    Raises:
        ConfigError: not a classifier folder, or another architecture / kind / sigmas / dataset.
        IntegrityError: the weights do not match the card's sha256.
    """
    if not (folder / "config.json").is_file():
        raise ConfigError(f"classifier.pretrained: {folder} is not a classifier folder (no "
                          "config.json); train one with rsrouter experts train --sigmas")
    files = read_artifact(folder)
    card = ExpertCard.from_config(files.config, str(folder / "config.json"))
    check_claim(card.weights_sha256, files, "rs_expert.weights_sha256")
    served = sorted(float(s) for s in card.served_sigmas)
    if (served != [float(s) for s in cfg.sigmas] or card.dataset != cfg.data.dataset
            or card.architecture != cfg.classifier.arch or card.kind != "gaussian"):
        raise ConfigError(f"classifier.pretrained: {folder} is a {card.kind} "
                          f"{card.architecture} serving sigmas {served} on {card.dataset!r}; "
                          f"the config wants a gaussian {cfg.classifier.arch} serving "
                          f"{list(cfg.sigmas)} on {cfg.data.dataset!r}")


def copy_pretrained(cfg: DualRSConfig, classifier: Path) -> None:
    """Round 0's classifier: ``classifier.pretrained`` copied into the run, so the round pins
    the bytes it used; the copy is checked again (:func:`check_pretrained`), then moved in."""
    src = pretrained_folder(cfg)
    tmp = classifier.with_name(classifier.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for file in ("config.json", "model.safetensors", "README.md"):
            if (src / file).is_file():
                shutil.copyfile(src / file, tmp / file)
        check_pretrained(cfg, tmp)  # the copied bytes are the ones checked
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(classifier, ignore_errors=True)
    os.replace(tmp, classifier)


def _result(k: int, rdir: Path) -> RoundResult:
    done = rdir / "round.json"
    if done.is_file():  # the folders must still hold what the round trained and benchmarked
        record = json.loads(done.read_text())
        now = {"classifier_weights_sha256": read_card(rdir / "classifier").weights_sha256,
               "estimator_weights_sha256": read_router_card(rdir / "estimator").weights_sha256}
        if any(record.get(key) != value for key, value in now.items()):
            raise ConfigError(f"{rdir}: the classifier or estimator changed since the round "
                              f"finished ({done}); restore them, or delete {rdir} to redo it")
    summary = json.loads((rdir / "bench" / "summary.json").read_text())
    rows = {row["method"].split(" (")[0]: row for row in summary["table"]}
    return RoundResult(k, rdir / "classifier", rdir / "estimator", rdir / "bench", rows)


def train_dualrs(cfg: DualRSConfig, out: str | os.PathLike, *, rounds: int, registry=None,
                 device: str = "cpu", progress: bool = True) -> list[RoundResult]:
    """Run rounds ``0 .. rounds - 1`` of ``cfg`` into ``out`` (resumable, round by round) and
    write ``rounds.json`` / ``rounds.md`` / ``rounds.png``; returns every round's result.

    A rerun with more rounds continues after the last one; the config must be the one the
    folder was started with (its sha256 is kept in ``out/dualrs.json``).

    Raises:
        ConfigError: bad settings.
        ResumeError: ``out`` holds a run of another config.
        ResumeError / LockedError: from the training steps.
    """
    if rounds < 1:
        raise ConfigError(f"--rounds must be >= 1, got {rounds}")
    out = Path(out)
    registry = registry or Registry()
    settings = cfg.to_dict()
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()
    marker = out / "dualrs.json"
    if marker.is_file():
        check_resume(out, settings, json.loads(marker.read_text()).get("config"),
                     f"a Dual RS run of another config (see {marker}): choose another --out, "
                     "or delete it to start over")
    elif current().is_main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, {"config": settings, "config_sha256": digest,
                                   "source": cfg.source})
    current().barrier()
    results: list[RoundResult] = []
    for k in range(rounds):
        results.append(run_round(cfg, out, k, results[-1] if results else None,
                                 registry=registry, device=device, progress=progress))
        if current().is_main:
            write_rounds(cfg, out, results)
    current().barrier()
    return results


def export_round(run: str | os.PathLike, k: int, classifier_out: str | os.PathLike,
                 estimator_out: str | os.PathLike) -> tuple[Path, Path]:
    """Copy round ``k``'s classifier and estimator folders elsewhere (to bundle or publish),
    pointing the estimator's records at the classifier's new place; the hashes they pin are
    unchanged, so the exported pair loads exactly the bytes the round trained and benchmarked.
    """
    src = Path(run) / ROUND.format(k)
    if not (src / "estimator" / "config.json").is_file():
        raise ConfigError(f"{src}: no finished round {k} (run rsrouter dualrs train first)")
    classifier_out, estimator_out = Path(classifier_out), Path(estimator_out)
    for name, target in (("classifier", classifier_out), ("estimator", estimator_out)):
        target.mkdir(parents=True, exist_ok=True)
        for file in ("config.json", "model.safetensors", "README.md"):
            shutil.copyfile(src / name / file, target / file)
    card = read_router_card(estimator_out)
    source = os.path.relpath(classifier_out.resolve(), estimator_out.resolve())
    card.experts = [ExpertRef(**{**vars(e), "source": source}) for e in card.experts]
    write_router_card(estimator_out, card)
    return classifier_out, estimator_out


__getattr__ = _getattr_for(__name__)  # names of rsrouter 0.2 that moved on (rsrouter._moved)
