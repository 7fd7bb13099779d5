"""A training-free selection router in the spirit of ACES (Horvath et al. 2022).

The router is a deterministic function of a noisy input: the entropy of the largest-sigma
expert's softmax on it, cut by thresholds ``t_1 < ... < t_{K-1}`` into K bins; a confident
(low-entropy) input goes to the largest sigma, the least confident to the smallest. Smoothed at
that expert's sigma on the router's own noise streams, it is certified like any router, and the
routed certificate is the Dual RS one (min of router and expert radii, alpha split).

The thresholds are chosen on a fit split (training inputs, never the test inputs): label radii of
each expert from ``fit.n`` noisy samples, the router's bin under ``fit.copies`` noise draws (the
majority is its choice, the majority's share a plug-in estimate of the router's own radius), and
the thresholds, among quantiles of the fit entropies, that minimise the max regret, on the radius
grid, of what the routed certificate would pay: min(router radius, chosen expert's label radius)
(ties: the larger mean).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm
from torch import nn
from tqdm.auto import tqdm

from ..cards.pins import Pin
from ..certify.noise import noise_generator
from ..certify.smoothing import Smooth
from ..data import load_dataset
from ..files import atomic_write_json
from ..routing.labels import choose_subset, label_radii
from .config import Fit


class EntropyRouter(nn.Module):
    """Bins the entropy of ``net``'s softmax: returns one-hot logits over K experts ordered from
    the largest sigma (bin 0, lowest entropy) to the smallest."""

    def __init__(self, net: nn.Module, thresholds: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("thresholds", torch.tensor(list(thresholds), dtype=torch.float32))

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(self.net(x).float(), dim=1)
        return -(log_p.exp() * log_p).sum(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bins = torch.bucketize(self.entropy(x), self.thresholds.to(x.device))
        return nn.functional.one_hot(bins, len(self.thresholds) + 1).float()


class SmoothedEntropyRouter(Smooth):
    """The smoothed :class:`EntropyRouter`, with a pin that names what it is made of."""

    def __init__(self, big_expert, thresholds: Sequence[float], order: Sequence[int]) -> None:
        super().__init__(EntropyRouter(big_expert.model, thresholds), len(order), big_expert.sigma,
                         input_shape=big_expert.input_shape)
        self.thresholds, self.order = [float(t) for t in thresholds], list(order)
        recipe = {"kind": "entropy-router", "expert_config": big_expert.pin.config_sha256,
                  "thresholds": self.thresholds, "order": self.order}
        self.pin = Pin(big_expert.pin.weights_sha256,
                       hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest(),
                       "entropy router")


@torch.no_grad()
def fit_thresholds(experts: Sequence, fit: Fit, radii: Sequence[float], *, data_root=None,
                   cache: str | os.PathLike | None = None,
                   progress: bool = False) -> tuple[list[float], list[int], dict]:
    """Choose the thresholds on ``fit.split`` (never the test split).

    Returns ``(thresholds, order, report)``: ``order`` lists the experts' positions from the
    largest sigma to the smallest (bin k routes to ``experts[order[k]]``). With ``cache`` (a
    folder) a fit is stored under a key of the experts' hashes, the fit settings and the grid,
    and reused.
    """
    if fit.split not in ("train", "validation"):
        raise ValueError("the thresholds are fitted on the train or validation split (never the "
                         "test inputs)")
    order = sorted(range(len(experts)), key=lambda k: -experts[k].sigma)
    key = {"experts": [[e.pin.weights_sha256, e.pin.config_sha256, e.sigma] for e in experts],
           "fit": dataclasses.asdict(fit), "radii": list(radii)}
    path = None
    if cache is not None:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache) / f"entropy-router-{digest}.json"
        if path.is_file():
            stored = json.loads(path.read_text())
            if stored.get("key") == key:
                return stored["thresholds"], stored["order"], stored["report"]
    big = experts[order[0]]
    dataset = load_dataset(big.card.dataset, fit.split, data_root)
    idx = choose_subset(len(dataset), fit.subset, fit.seed).tolist()
    xs = torch.stack([dataset[i][0] for i in idx])
    ys = torch.tensor([int(dataset[i][1]) for i in idx])
    counts = []
    for k in tqdm(order, desc="fit entropy router: label radii", disable=not progress):
        c = experts[k].sample_counts(xs, fit.n, batch_size=2500, seed=fit.seed, indices=idx,
                                     stage="label")
        counts.append(c.gather(1, ys[:, None])[:, 0].numpy())
    label_r = label_radii(np.stack(counts, axis=1), fit.n, fit.alpha,
                          [experts[k].sigma for k in order])
    router = EntropyRouter(big.model, [])
    entropies = []
    for copy in range(fit.copies):  # the router's noise: one stream per copy
        noise = torch.randn(xs.shape, generator=noise_generator(fit.seed, copy, "router-train"))
        entropies.append(router.entropy((xs + big.sigma * noise).to(big.device)).cpu().numpy())
    entropies = np.stack(entropies, axis=1)  # [inputs, copies]
    candidates = np.unique(np.quantile(entropies, np.linspace(0.02, 0.98, 25)))
    grid = np.asarray(radii)
    best_share = (label_r[:, None, :] >= grid[None, :, None]) & (label_r[:, None, :] > 0)
    envelope = best_share.mean(axis=0).max(axis=1)  # per radius, the best single expert
    best = None
    top_share = 1 - 1 / (2 * fit.copies)  # a plug-in share is never taken as certain
    for cut in itertools.combinations(candidates, len(experts) - 1):
        bins = np.searchsorted(np.asarray(cut), entropies)  # [inputs, copies]
        votes = (bins[..., None] == np.arange(len(experts))).sum(axis=1)
        majority = votes.argmax(axis=1)
        share = np.clip(votes.max(axis=1) / fit.copies, 0.5, top_share)
        router_r = np.where(share > 0.5, big.sigma * norm.ppf(share), 0.0)
        chosen = np.minimum(label_r[np.arange(len(idx)), majority], router_r)
        curve = ((chosen[:, None] >= grid[None, :]) & (chosen[:, None] > 0)).mean(axis=0)
        score = (float((envelope - curve).max()), -float(chosen.mean()))
        if best is None or score < best[0]:
            best = (score, [float(t) for t in cut], np.bincount(majority,
                                                                 minlength=len(experts)))
    (regret, neg_mean), thresholds, shares = best
    report = {"fit_split": fit.split, "fit_inputs": len(idx), "label_n": fit.n,
              "fit_forwards": len(idx) * (fit.n * len(experts) + fit.copies),
              "max_regret_on_fit": round(100 * regret, 2), "mean_label_radius": -neg_mean,
              "route_shares": [round(int(s) / len(idx), 4) for s in shares]}
    if path is not None:
        atomic_write_json(path, {"key": key, "thresholds": thresholds, "order": order,
                                 "report": report})
    return thresholds, order, report
