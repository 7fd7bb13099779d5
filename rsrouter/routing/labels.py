"""Router labels (the Dual RS recipe): which expert certifies each training input the farthest.

For each training input and expert ``k``: draw ``n`` noisy copies at the expert's sigma, count the
true class, and take the certified radius ``R_k`` at ``alpha`` (0 when the bound is <= 1/2, i.e.
wrong or abstaining; ``labels.certify_n``: projected to a certification with that many samples).
Inputs where every ``R_k`` is 0 are dropped; the soft label is
``softmax(R / temperature)`` (or, with ``labels.target: bands``, a unit of credit per target
radius shared by the experts certifying there; ``labels.cost`` weighs down the experts whose
forward pass the router does not share); class weights are ``1 / (K q_k)`` with ``q_k``
the share of inputs whose best expert is ``k``.

This is the expensive step: it is batched across inputs, shows progress, is cached next to the
router's output under a key made of the experts' sha256 and the label settings, and resumes after
an interruption (each finished chunk is saved atomically).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist
from tqdm.auto import tqdm

from ..certify.bounds import radii_from_counts
from ..certify.smoothing import Smooth
from ..distributed import Dist, current, parts_of
from ..errors import CountsError
from ..files import load_tensors, save_tensors
from .config import LabelSpec

CHUNK = 1000


@dataclass
class RouterLabels:
    """Per-input true-class counts for every expert, and what the recipe derives from them."""

    indices: torch.Tensor  # [N] dataset indices
    counts: torch.Tensor  # [N, K] true-class counts out of n
    n: int
    alpha: float
    sigmas: tuple[float, ...]
    certify_n: int | None = None  # project the radii to a certification with this many samples

    @property
    def radii(self) -> torch.Tensor:
        """``[N, K]`` certified radius of the true class (0 when the bound is <= 1/2); with
        ``certify_n``, the radius a certification with ``certify_n`` samples would give at the
        same fraction of true-class counts (see :func:`label_radii`)."""
        return torch.from_numpy(label_radii(self.counts.numpy(), self.n, self.alpha, self.sigmas,
                                            certify_n=self.certify_n))

    @property
    def kept(self) -> torch.Tensor:
        """Mask of inputs that at least one expert certifies (the others are dropped)."""
        return (self.radii > 0).any(dim=1)

    def soft_labels(self, temperature: float = 1.0, target: str = "softmax",
                    bands: Sequence[float] = (), *, cost: float = 0.0,
                    shared: int | None = None) -> torch.Tensor:
        """Soft labels over experts for the kept inputs.

        ``softmax``: ``softmax(R / temperature)``. ``bands``: what the routed curve pays at each
        radius of ``bands``: one unit of credit per band, shared equally by the experts that
        certify there (``R_k > 0`` at band 0, ``R_k >= r`` beyond), normalized over the bands
        some expert reaches; an input that only a small sigma certifies goes to it, one that
        several certify at small radii but only the largest at large ones is shared by weight.

        ``cost`` (with ``shared``, the index of the expert whose forward pass the router shares):
        every other expert costs one more forward pass where it is chosen, so its weight is
        multiplied by ``exp(-cost)`` before normalizing. ``bands``: an input only other experts
        certify still goes to them. ``softmax``: ``cost`` is subtracted from the others' logits
        ``R / temperature``, so it trades ``cost * temperature`` of radius for a pass.
        """
        radii = self.radii[self.kept].double()
        prior = torch.zeros(len(self.sigmas), dtype=torch.float64)
        if cost:
            if shared is None:
                raise ValueError("labels.cost: needs the expert the router shares a forward "
                                 "pass with (router.frozen with router.backbone)")
            prior = torch.full_like(prior, -float(cost))
            prior[shared] = 0.0
        if target == "softmax":
            return torch.softmax(radii / temperature + prior, dim=1).float()
        if target != "bands":
            raise ValueError(f"labels.target: {target!r} is not one of softmax, bands")
        if 0 not in [float(b) for b in bands]:
            raise ValueError("labels.bands: must include 0, where every kept input earns credit")
        reach = torch.stack([(radii > 0) & (radii >= float(b)) for b in bands], dim=1)  # [N,B,K]
        winners = reach.sum(dim=2, keepdim=True)
        credit = torch.where(winners > 0, reach / winners.clamp_min(1), 0.0).sum(dim=1)
        credit = credit * prior.exp()
        return (credit / credit.sum(dim=1, keepdim=True)).float()

    def best_share(self) -> torch.Tensor:
        """``q_k``: share of kept inputs whose largest radius is expert ``k``'s."""
        best = self.radii[self.kept].argmax(dim=1)
        return torch.bincount(best, minlength=len(self.sigmas)).float() / max(1, len(best))

    def class_weights(self) -> torch.Tensor:
        """``1 / (K q_k)`` (mean weight 1 over inputs); an expert never best gets weight 0."""
        q = self.best_share()
        w = torch.where(q > 0, 1.0 / (len(q) * q.clamp_min(1e-12)), torch.zeros_like(q))
        return w

    def summary(self) -> dict:
        """Inputs, kept, best share and mean label radius per expert; with ``certify_n``,
        ``radii_projected_to`` says the radii (and so kept, shares and means) are the projected
        ones, not certificates of the label pass."""
        r = self.radii
        return {"inputs": int(len(self.indices)), "kept": int(self.kept.sum()),
                "best_share": [round(float(v), 4) for v in self.best_share()],
                "mean_radius": [round(float(v), 4) for v in r.mean(dim=0)],
                **({"radii_projected_to": int(self.certify_n)}
                   if self.certify_n is not None else {})}


def label_radii(counts: np.ndarray, n: int, alpha: float, sigmas: Sequence[float], *,
                certify_n: int | None = None) -> np.ndarray:
    """``[N, K]`` certified radius of the true class (``sigma_k * Phi^-1(CP lower bound)``),
    0 where the bound is <= 1/2.

    ``certify_n``: the radius projected to the certification the router will serve: the counts
    scaled to ``certify_n`` samples (same fraction, rounded) and bounded there. With few label
    samples the bound caps every radius near ``sigma * Phi^-1(alpha ** (1 / n))`` (1.5 sigma at
    n = 100), which credits the largest sigma for inputs that a smaller one certifies farther at
    the protocol's n. A training target only: certificates never use it.
    """
    counts = np.asarray(counts)
    if certify_n is not None and certify_n != n:
        counts, n = np.rint(counts * (certify_n / n)).astype(np.int64), certify_n
    return radii_from_counts(counts, n, alpha, np.asarray(sigmas)[None, :])


def choose_subset(length: int, subset: int | None, seed: int) -> torch.Tensor:
    """A fixed random subset of ``range(length)`` (all of it when ``subset`` is None), sorted."""
    if subset is None or subset >= length:
        return torch.arange(length)
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(length, generator=gen)[:subset].sort().values


def cache_key(experts: Sequence, spec: LabelSpec, dataset: str, split: str, seed: int) -> dict:
    """What the labels depend on: the experts' weights and sigmas and the label settings."""
    return {"experts": [[e.pin.weights_sha256, e.pin.config_sha256] for e in experts],
            "sigmas": [e.sigma for e in experts], "n": spec.n, "alpha": spec.alpha,
            "subset": spec.subset, "dataset": dataset, "split": split, "seed": seed}


def cache_path(out: str | os.PathLike, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(out) / ".labels" / f"labels-{digest}.safetensors"


def compute_labels(
    experts: Sequence[Smooth],
    dataset,
    spec: LabelSpec,
    *,
    seed: int,
    cache: str | os.PathLike | None = None,
    key: dict | None = None,
    progress: bool = True,
    dist: Dist | None = None,
) -> RouterLabels:
    """Count the true class under each expert's noise for a subset of ``dataset``.

    ``cache`` (a .safetensors path) holds finished chunks of ``CHUNK`` inputs; a run with the
    same ``key`` resumes from it, a different key starts over. Under torchrun each rank counts its
    share of the unfinished chunks into its own part of the cache and rank 0 merges them: the
    counts are those of one process, since every draw is seeded by (seed, input index, stage).
    """
    dist = dist or current()
    indices = choose_subset(len(dataset), spec.subset, seed)
    counts = torch.full((len(indices), len(experts)), -1, dtype=torch.long)
    if cache is not None:
        for path in [Path(cache), *parts_of(cache)]:
            counts = torch.maximum(counts, _cached_counts(path, key, indices, spec, len(experts)))
    chunks = range(0, len(indices), CHUNK)
    todo = [c for c in chunks if bool((counts[c:c + CHUNK] < 0).any())]
    dist.barrier()  # every rank has read the same cache before any rank writes
    mine = dist.shard(todo)
    target = dist.part(cache) if cache is not None and (dist.enabled or parts_of(cache)) \
        else cache
    done = len(indices) - sum(min(CHUNK, len(indices) - c) for c in todo)
    bar = tqdm(total=len(indices), initial=done, disable=not (progress and dist.is_main),
               desc="router labels", unit="img")
    for start in mine:
        idx = indices[start:start + CHUNK].tolist()
        items = [dataset[i] for i in idx]
        xs = torch.stack([x for x, _ in items])
        ys = torch.tensor([int(y) for _, y in items])
        for k, expert in enumerate(experts):
            c = expert.sample_counts(xs, spec.n, batch_size=spec.batch_size, seed=seed,
                                     indices=idx, stage="label")
            counts[start:start + len(idx), k] = c.gather(1, ys[:, None])[:, 0]
        if target is not None:
            save_tensors(target, {"indices": indices, "counts": counts}, {"key": key})
        bar.update(len(idx) * (dist.world if dist.enabled else 1))
    bar.close()
    if cache is not None and target != cache:  # merge the parts into the cache (rank 0)
        dist.barrier()
        if dist.is_main:
            for path in parts_of(cache):
                counts = torch.maximum(counts, _cached_counts(path, key, indices, spec,
                                                              len(experts)))
            save_tensors(cache, {"indices": indices, "counts": counts}, {"key": key})
            for path in parts_of(cache):
                path.unlink()
        dist.barrier()
        counts = _cached_counts(Path(cache), key, indices, spec, len(experts))
    elif dist.enabled:  # no cache: gather every rank's rows
        tdist.all_reduce(counts, op=tdist.ReduceOp.MAX)
    if bool((counts < 0).any()):
        raise CountsError("router labels: some inputs were not counted (a rank failed?); rerun "
                          "the same command to finish them")
    return RouterLabels(indices, counts, spec.n, spec.alpha, tuple(e.sigma for e in experts),
                        certify_n=spec.certify_n)


def _cached_counts(path: Path, key: dict | None, indices: torch.Tensor, spec: LabelSpec,
                   experts: int) -> torch.Tensor:
    """The counts a cache (or a part of it) holds for ``key`` (-1 where not counted yet)."""
    empty = torch.full((len(indices), experts), -1, dtype=torch.long)
    if not path.is_file():
        return empty
    tensors, meta = load_tensors(path)
    if meta.get("key") != key or not torch.equal(tensors.get("indices", empty), indices):
        return empty  # another configuration: start over
    counts = tensors["counts"]
    if counts.shape != (len(indices), experts) or bool((counts > spec.n).any()) or bool(
            (counts < -1).any()):
        raise CountsError(f"{path}: label counts outside [0, n={spec.n}] or of the wrong shape; "
                          "the cache is corrupt: delete it to recompute")
    return counts
