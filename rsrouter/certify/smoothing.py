"""Randomized smoothing (Cohen et al. 2019): Monte Carlo counts of a smoothed classifier.

The whole algorithm on one screen:

* CERTIFY draws ``n0`` noisy copies of ``x`` to *select* the top class ``cA``, then ``n`` *fresh*
  copies to *estimate* ``nA`` = how often the base model says ``cA``; the certificate follows
  from these counts (:mod:`rsrouter.certify.bounds`).
* PREDICT draws ``n`` copies and returns the top class if a two-sided binomial test of the top two
  counts rejects a tie at level ``alpha``, else ABSTAIN.

Noise is added in pixel space (inputs in [0, 1]) before the model, whose first layer normalizes;
it comes from the streams of :mod:`rsrouter.certify.noise`, so a certificate does not depend on
the batch size or on which other inputs share a batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch._inductor.config as inductor_config
from scipy.stats import binomtest
from torch import nn

from ..runtime import tune_allocator
from .bounds import ABSTAIN, Certificate, certificate_from_counts, check_alpha, check_count
from .noise import NoiseStream, noise_generator
from .sequential import Sequential, decided

PRECISIONS = ("fp32", "bf16")


class Smooth:
    """A smoothed classifier ``g(x) = argmax_c P(f(x + eps) = c)``, ``eps ~ N(0, sigma^2 I)``.

    Args:
        base_model: maps a batch ``[B, C, H, W]`` of pixels in [0, 1] to ``[B, num_classes]``
            logits; its normalization must be inside it (noise is added before it).
        num_classes: number of classes the base model predicts.
        sigma: noise level in pixel units (> 0).
        compile: run the base model through ``torch.compile`` (opt-in; labelled in ``mode``).
        precision: "fp32" (default, exact) or "bf16" (autocast; opt-in, labelled in ``mode``).
        input_shape: optional ``(C, H, W)`` every input must have.

    Raises:
        ValueError: on sigma <= 0, num_classes < 2, or an unknown precision.
    """

    def __init__(
        self,
        base_model: nn.Module,
        num_classes: int,
        sigma: float,
        *,
        compile: bool = False,
        precision: str = "fp32",
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number (pixel units, inputs in [0, 1]); "
                             f"got {sigma!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.base_model = base_model.eval()
        self.num_classes = num_classes
        self.sigma = float(sigma)
        self.precision = precision
        self.compiled = bool(compile)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self._forward = torch.compile(self.base_model, dynamic=False) if compile else base_model
        # (trunk, head) with base_model(x) == head(trunk(x)), and the model whose trunk this one
        # runs on (rsrouter.routing.load sets both for a router that shares an expert's forward)
        self.trunk_head: tuple[nn.Module, nn.Module] | None = None
        self.trunk_owner: Smooth | None = None
        self._checked_output = False
        self._warned_range = False
        params = list(base_model.parameters()) + list(base_model.buffers())
        self.device = params[0].device if params else torch.device("cpu")

    @property
    def mode(self) -> str:
        """How counts are produced: "fp32", "bf16", optionally "+compile"."""
        return self.precision + ("+compile" if self.compiled else "")

    # ---- public API -------------------------------------------------------------------------

    def certify(
        self, x: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int = 1000,
        seed: int = 0, index: int = 0,
    ) -> Certificate:
        """Certify one input ``x`` of shape [C, H, W]; ``index`` names its noise streams."""
        return self.certify_batch(
            x.unsqueeze(0) if torch.is_tensor(x) and x.dim() == 3 else _bad_single(x),
            n0, n, alpha, batch_size=batch_size, seed=seed, indices=[index],
        )[0]

    def certify_batch(
        self, xs: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int = 1000,
        seed: int = 0, indices: Sequence[int] | None = None,
        stages: tuple[str, str] = ("select", "estimate"),
    ) -> list[Certificate]:
        """Certify each input of ``xs`` [B, C, H, W]; noisy copies of several inputs share batches.

        ``indices`` (default ``0..B-1``) seed each input's noise, so a dataset index gives the same
        certificate whether the input is certified alone or with others. ``stages`` name the
        selection and estimation noise streams (a router uses its own); they must differ, since
        the estimation samples must be independent of the selection.
        """
        check_alpha(alpha)
        c_a, estimate = self.count_batch(xs, n0, n, batch_size=batch_size, seed=seed,
                                         indices=indices, stages=stages)
        n_a = estimate.gather(1, c_a[:, None])[:, 0]
        indices = range(len(c_a)) if indices is None else indices
        return [
            certificate_from_counts(int(c), int(k), n, n0, self.sigma, alpha, seed, int(i),
                                    self.mode)
            for c, k, i in zip(c_a, n_a, indices)
        ]

    def count_batch(
        self, xs: torch.Tensor, n0: int, n: int, *, batch_size: int = 1000, seed: int = 0,
        indices: Sequence[int] | None = None,
        stages: tuple[str, str] = ("select", "estimate"),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The counts CERTIFY rests on: ``(cA [B], estimation counts [B, num_classes])``.

        ``cA`` is the top class of ``n0`` selection samples, the counts are of ``n`` fresh
        estimation samples (all classes, so that any bound can be recomputed later).
        """
        select, estimate = self.vote_batch(xs, n0, n, batch_size=batch_size, seed=seed,
                                           indices=indices, stages=stages)
        return select.argmax(dim=1), estimate

    def vote_batch(
        self, xs: torch.Tensor, n0: int, n: int, *, batch_size: int = 1000, seed: int = 0,
        indices: Sequence[int] | None = None,
        stages: tuple[str, str] = ("select", "estimate"),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(selection counts [B, num_classes], estimation counts [B, num_classes])``: the
        votes of the ``n0`` selection samples (their top class is :meth:`count_batch`'s ``cA``)
        and of the ``n`` fresh estimation samples."""
        if stages[0] == stages[1]:
            raise ValueError(f"selection and estimation must use different noise stages, got "
                             f"{stages[0]!r} twice")
        check_count("n0", n0)
        check_count("n", n)
        xs, indices = self._check_inputs(xs, indices)
        select = self.sample_counts(xs, n0, batch_size=batch_size, seed=seed, indices=indices,
                                    stage=stages[0])
        estimate = self.sample_counts(xs, n, batch_size=batch_size, seed=seed, indices=indices,
                                      stage=stages[1])
        return select, estimate

    def predict(
        self, x: torch.Tensor, n: int, alpha: float, *, batch_size: int = 1000, seed: int = 0,
        index: int = 0,
    ) -> int:
        """Cohen's PREDICT for one input: top class, or ABSTAIN if the top two are not separated."""
        return self.predict_batch(
            x.unsqueeze(0) if torch.is_tensor(x) and x.dim() == 3 else _bad_single(x),
            n, alpha, batch_size=batch_size, seed=seed, indices=[index],
        )[0]

    def predict_batch(
        self, xs: torch.Tensor, n: int, alpha: float, *, batch_size: int = 1000, seed: int = 0,
        indices: Sequence[int] | None = None, stage: str = "predict",
    ) -> list[int]:
        """PREDICT for each input of ``xs`` [B, C, H, W]."""
        check_count("n", n)
        check_alpha(alpha)
        xs, indices = self._check_inputs(xs, indices)
        counts = self.sample_counts(xs, n, batch_size=batch_size, seed=seed, indices=indices,
                                    stage=stage)
        return [predict_from_counts(row, alpha) for row in counts.tolist()]

    def sample_counts(
        self, xs: torch.Tensor, num: int, *, batch_size: int, seed: int,
        indices: Sequence[int], stage: str,
    ) -> torch.Tensor:
        """Class counts ``[B, num_classes]`` (int64, CPU) of ``num`` noisy copies of each input.

        Memory is bounded by ``batch_size`` noisy copies, whatever ``num`` is.
        """
        return shared_counts([(self, None)], xs, num, batch_size=batch_size, seed=seed,
                             indices=indices, stage=stage)[0]

    # ---- internals --------------------------------------------------------------------------

    def _trunk(self, batch: torch.Tensor) -> torch.Tensor:
        """The trunk's output on a noisy batch (:attr:`trunk_head`)."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            return self.trunk_head[0](batch)

    def _classify(self, batch: torch.Tensor, batch_size: int, features: bool = False
                  ) -> torch.Tensor:
        """Top classes of a noisy batch (or, with ``features``, of its trunk's output)."""
        if features:
            with torch.autocast(self.device.type, dtype=torch.bfloat16,
                                enabled=self.precision == "bf16"):
                return self.trunk_head[1](batch).argmax(dim=1)
        real = batch.shape[0]
        if self.compiled and real < batch_size:  # one static shape: pad to the full batch
            batch = torch.cat([batch, batch.new_zeros((batch_size - real, *batch.shape[1:]))])
        with torch.autocast(self.device.type, dtype=torch.bfloat16,
                            enabled=self.precision == "bf16"):
            if self.compiled and not self._checked_output:
                # compiled on first call; freezing folds batch norm and pre-packs weights
                with inductor_config.patch(freezing=True):
                    logits = self._forward(batch)
            else:
                logits = self._forward(batch)
        if not self._checked_output:
            if logits.dim() != 2 or logits.shape[1] != self.num_classes:
                raise ValueError(
                    f"base model returned logits of shape {tuple(logits.shape)} but the smoothed "
                    f"classifier was built with num_classes={self.num_classes}; pass the model's "
                    f"class count (or check the expert card's num_classes)"
                )
            self._checked_output = True
        return logits[:real].argmax(dim=1)

    def _check_inputs(
        self, xs: torch.Tensor, indices: Sequence[int] | None
    ) -> tuple[torch.Tensor, list[int]]:
        if not torch.is_tensor(xs) or xs.dim() != 4:
            shape = tuple(xs.shape) if torch.is_tensor(xs) else type(xs).__name__
            raise ValueError("inputs must be a tensor of shape [B, C, H, W] (one input: "
                             f"[C, H, W]); got {shape}")
        if self.input_shape is not None and tuple(xs.shape[1:]) != self.input_shape:
            raise ValueError(f"input shape {tuple(xs.shape[1:])} does not match the model's input "
                             f"shape {self.input_shape} (C, H, W)")
        if not xs.is_floating_point():
            raise ValueError(f"inputs must be floating point pixels in [0, 1], got {xs.dtype}")
        if torch.isnan(xs).any() or torch.isinf(xs).any():
            raise ValueError("input contains NaN or infinite values")
        if not self._warned_range and (xs.min() < -0.01 or xs.max() > 1.01):
            warnings.warn(
                f"inputs range over [{xs.min():.3g}, {xs.max():.3g}], not [0, 1]: rsrouter adds "
                "noise to raw pixels and normalizes inside the model; pass unnormalized inputs",
                stacklevel=3,
            )
            self._warned_range = True
        if indices is None:
            indices = list(range(xs.shape[0]))
        indices = [int(i) for i in indices]
        if len(indices) != xs.shape[0]:
            raise ValueError(f"got {len(indices)} indices for {xs.shape[0]} inputs")
        return xs.float(), indices


@torch.no_grad()
def shared_counts(
    models: Sequence[tuple[Smooth, torch.Tensor | None]], xs: torch.Tensor, num: int, *,
    batch_size: int, seed: int, indices: Sequence[int], stage: str,
    streams: Sequence[NoiseStream] | None = None,
) -> list[torch.Tensor]:
    """Class counts of several smoothed models on the same noise: one standard-normal draw per
    sample, scaled by each model's sigma (``x + sigma z``). ``streams`` continues given streams
    (one per input) instead of starting them afresh.

    ``models``: ``(smooth, mask)`` pairs; a model counts the inputs of its boolean ``mask``
    ([B], None: all). A router that runs on an expert's trunk (``trunk_owner``, same sigma), with
    that expert among ``models``, takes the trunk's output from one forward pass for both.
    Returns one ``[B, num_classes]`` int64 CPU tensor per model (zeros off its
    mask). Each input's draws come from its own stream ``(seed, index, stage)`` in fixed blocks,
    so a model's counts are those it gets alone; the draws are made once, however many models
    use them. Memory is bounded by ``batch_size`` noisy copies.
    """
    check_count("batch_size", batch_size)
    device = models[0][0].device
    if device.type == "cpu":
        tune_allocator()  # the command's speed for API users too (RSROUTER_MALLOC_TUNING=0)
    b = xs.shape[0]
    xs = xs.to(device)
    masks = [torch.ones(b, dtype=torch.bool) if m is None else torch.as_tensor(m, dtype=torch.bool)
             for _, m in models]
    counts = [torch.zeros(b * s.num_classes, dtype=torch.long, device=device) for s, _ in models]
    if streams is None:
        streams = [NoiseStream(xs.shape[1:], noise_generator(seed, i, stage, device))
                   for i in indices]
    size = min(batch_size, b * num)
    z = torch.empty((size, *xs.shape[1:]), device=device)
    # one model on every input: make the noisy batch in place, no second buffer
    alone = len(models) == 1 and models[0][1] is None
    noisy = z if alone else torch.empty_like(z)
    shared = _trunk_partners(models)
    for owners, sizes in _batches(b, num, batch_size):
        start = 0
        for j, k in zip(owners, sizes):
            streams[j].fill(z[start : start + k])
            start += k
        trunks: dict[int, tuple[dict[int, tuple[int, int]], torch.Tensor]] = {}
        for m, ((smooth, _), mask, count) in enumerate(zip(models, masks, counts)):
            pos, kept, kept_sizes, where = 0, [], [], {}
            for j, k in zip(owners, sizes):
                if mask[j]:
                    where[j] = (pos, k)
                    kept.append(j)
                    kept_sizes.append(k)
                    pos += k
            if not pos:
                continue
            owner = shared.get(m)
            cached = trunks.get(owner) if owner is not None else None
            if cached is not None and all(j in cached[0] for j in kept):
                rows = torch.cat([torch.arange(cached[0][j][0], cached[0][j][0] + k)
                                  for j, k in zip(kept, kept_sizes)]).to(device)
                predictions = smooth._classify(cached[1][rows], batch_size, features=True)
            else:
                offset = 0
                for j, k in zip(owners, sizes):
                    if mask[j]:
                        torch.add(xs[j], z[offset : offset + k], alpha=smooth.sigma,
                                  out=noisy[where[j][0] : where[j][0] + k])
                    offset += k
                if owner is None:
                    predictions = smooth._classify(noisy[:pos], batch_size)
                else:  # the trunk's output, kept for the model that shares it
                    features = smooth._trunk(noisy[:pos])
                    trunks[owner] = (where, features)
                    predictions = smooth._classify(features, batch_size, features=True)
            owner_ids = torch.repeat_interleave(torch.tensor(kept, device=device),
                                                torch.tensor(kept_sizes, device=device))
            count += torch.bincount(owner_ids * smooth.num_classes + predictions,
                                    minlength=b * smooth.num_classes)
    return [c.view(b, s.num_classes).cpu() for c, (s, _) in zip(counts, models)]


def _trunk_partners(models: Sequence[tuple[Smooth, torch.Tensor | None]]) -> dict[int, int]:
    """Position in ``models`` -> a key shared by the models that run on one trunk: a router whose
    ``trunk_owner`` is among ``models`` at the same sigma, and that owner (not compiled, both
    with their ``trunk_head``)."""
    position = {id(s): m for m, (s, _) in enumerate(models)}
    out = {}
    for m, (smooth, _) in enumerate(models):
        owner = smooth.trunk_owner
        if owner is not None and id(owner) in position and owner.sigma == smooth.sigma \
                and smooth.trunk_head is not None and owner.trunk_head is not None \
                and not (smooth.compiled or owner.compiled) and owner is not smooth \
                and owner.precision == smooth.precision and owner.device == smooth.device:
            out[m] = out[position[id(owner)]] = id(owner)
    return out


def sequential_counts(
    model: Smooth, xs: torch.Tensor, n0: int, seq: Sequential, alpha: float,
    radii: Sequence[float], *, batch_size: int, seed: int, indices: Sequence[int],
    stages: tuple[str, str] = ("select", "estimate"),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """CERTIFY's counts with sequential looks: ``(cA, counts, n_used, share)`` per input.

    ``cA`` comes from ``n0`` selection samples as usual. The estimation samples are the first
    ``n_used`` draws of the input's estimation stream (so a fixed-n run with ``n = n_used``
    counts the very same samples). At look j (``n_j`` samples, level ``alpha * share_j``) an
    input stops when, for every grid radius r, either its lower-bound radius reaches r
    (certified) or r is out of reach (:func:`rsrouter.certify.sequential.decided`). The stopping
    rule may depend on anything: the certificate at the stopping look holds because the bounds
    at all looks hold together with probability at least ``1 - alpha`` (a union over the looks;
    docs/theory.md).
    """
    seq.check(seq.looks[-1])
    check_count("n0", n0)
    check_alpha(alpha)
    xs, indices = model._check_inputs(xs, indices)
    c_a = model.sample_counts(xs, n0, batch_size=batch_size, seed=seed, indices=indices,
                              stage=stages[0]).argmax(dim=1)
    b, shares = len(xs), seq.shares()
    streams = [NoiseStream(xs.shape[1:], noise_generator(seed, i, stages[1], model.device))
               for i in indices]
    counts = torch.zeros((b, model.num_classes), dtype=torch.long)
    used, share = torch.zeros(b, dtype=torch.long), torch.zeros(b)
    active = np.ones(b, bool)
    cap = seq.best_radius(alpha, model.sigma)
    previous = 0
    for look, part in zip(seq.looks, shares):
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        more = shared_counts([(model, None)], xs[rows], look - previous, batch_size=batch_size,
                             seed=seed, indices=[indices[r] for r in rows], stage=stages[1],
                             streams=[streams[r] for r in rows])[0]
        counts[rows] += more
        used[rows], share[rows] = look, part
        previous = look
        n_a = counts[rows].gather(1, c_a[rows][:, None])[:, 0].numpy()
        active[rows[decided(n_a, look, alpha * part, model.sigma, cap, radii)]] = False
    return c_a, counts, used, share


def predict_from_counts(counts: Sequence[int], alpha: float) -> int:
    """Top class if a two-sided binomial test of the top two counts rejects a tie, else ABSTAIN."""
    order = np.argsort(counts)[::-1]
    top, second = int(order[0]), int(order[1])
    n_a, n_b = int(counts[top]), int(counts[second])
    if n_a + n_b == 0 or binomtest(n_a, n_a + n_b, 0.5).pvalue > alpha:
        return ABSTAIN
    return top


def _batches(b: int, num: int, batch_size: int) -> Iterator[tuple[list[int], list[int]]]:
    """Plan batches of ``batch_size`` noisy copies, input after input, ``num`` copies each:
    yields (input positions, copies of each)."""
    remaining = [num] * b
    j = 0
    while j < b:
        owners, sizes, room = [], [], batch_size
        while room > 0 and j < b:
            k = min(room, remaining[j])
            owners.append(j)
            sizes.append(k)
            remaining[j] -= k
            room -= k
            if remaining[j] == 0:
                j += 1
        yield owners, sizes


def _bad_single(x: object) -> torch.Tensor:
    shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
    raise ValueError(f"one input must be a tensor of shape [C, H, W], got {shape}; "
                     "use certify_batch/predict_batch for a batch")


__all__ = ["PRECISIONS", "Smooth", "predict_from_counts", "sequential_counts", "shared_counts"]
