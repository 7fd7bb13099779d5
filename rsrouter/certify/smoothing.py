"""Randomized smoothing (Cohen et al. 2019): Monte Carlo counts, Clopper-Pearson bounds.

The whole algorithm on one screen:

* CERTIFY draws ``n0`` noisy copies of ``x`` to *select* the top class ``cA``, then ``n`` *fresh*
  copies to *estimate* ``nA`` = how often the base model says ``cA``. ``pA_lower`` is the one-sided
  Clopper-Pearson lower bound at level ``alpha``; if ``pA_lower <= 0.5`` the smoothed classifier
  ABSTAINs, else it is certified within ``R = sigma * Phi^-1(pA_lower)`` (l2, in pixel units).
* PREDICT draws ``n`` copies and returns the top class if a two-sided binomial test of the top two
  counts rejects a tie at level ``alpha``, else ABSTAIN.

Noise is added in pixel space (inputs in [0, 1]) before the model, whose first layer normalizes.
Every noise draw comes from a generator whose whole state is derived from ``(seed, index, stage)``
(:func:`noise_generator`) and is drawn in fixed blocks of ``NOISE_BLOCK`` samples, so a certificate
does not depend on the batch size or on which other inputs share a batch.

Stored counts are checked before any bound is computed (:func:`check_counts`): a count that no
certification could have produced raises :class:`~rsrouter.errors.CountsError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch._inductor.config as inductor_config
from scipy.stats import beta, binomtest, norm
from torch import nn

from ..errors import CountsError
from ..protocol import Sequential
from ..runtime import tune_allocator

ABSTAIN = -1
NOISE_BLOCK = 128
STAGES = {
    "select": 0,
    "estimate": 1,
    "predict": 2,
    "router-select": 3,
    "router-estimate": 4,
    "router-predict": 5,
    "label": 6,
    "train": 7,
    "router-train": 8,
    "assign": 9,
}
PRECISIONS = ("fp32", "bf16")


def lower_confidence_bound(n_a: int, n: int, alpha: float) -> float:
    """One-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion."""
    if n_a <= 0:
        return 0.0
    return float(beta.ppf(alpha, n_a, n - n_a + 1))


def certified_radius(n_a: int, n: int, alpha: float, sigma: float) -> float | None:
    """Radius ``sigma * Phi^-1(pA_lower)``, or ``None`` (abstain) unless ``pA_lower > 0.5``.

    Written so that a NaN bound abstains.
    """
    p_lower = lower_confidence_bound(n_a, n, alpha)
    if not p_lower > 0.5:
        return None
    return float(sigma * norm.ppf(p_lower))


def radii_from_counts(n_a, n, alpha, sigma) -> np.ndarray:
    """Vectorized :func:`certified_radius` (arrays broadcast): 0 where the smoothed classifier
    abstains (bound not above 1/2, NaN included). Counts must have been checked."""
    n_a, n = np.asarray(n_a, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(all="ignore"):
        p_lower = np.where(n_a > 0, beta.ppf(alpha, np.maximum(n_a, 1), n - n_a + 1), 0.0)
        radius = np.asarray(sigma, dtype=float) * norm.ppf(np.clip(p_lower, 0.5, 1.0))
    return np.where(p_lower > 0.5, radius, 0.0)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_counts(c_a: int, n_a: int, n: int, n0: int, sigma: float, alpha: float) -> None:
    """Refuse counts that no certification could have produced.

    Raises:
        CountsError: unless ``c_a >= 0``, ``0 <= n_a <= n``, ``n >= 1``, ``n0 >= 1``,
            ``0 < alpha < 1`` and ``sigma > 0`` (finite).
    """
    problems = []
    if not _is_int(c_a) or c_a < 0:
        problems.append(f"cA={c_a!r} (a class index >= 0)")
    if not _is_int(n) or n < 1:
        problems.append(f"n={n!r} (an integer >= 1)")
    if not _is_int(n_a) or n_a < 0 or (_is_int(n) and n_a > n):
        problems.append(f"nA={n_a!r} (an integer in [0, n={n}])")
    if not _is_int(n0) or n0 < 1:
        problems.append(f"n0={n0!r} (an integer >= 1)")
    if not (isinstance(alpha, (int, float, np.floating)) and 0.0 < alpha < 1.0):
        problems.append(f"alpha={alpha!r} (in (0, 1))")
    if not (isinstance(sigma, (int, float, np.floating)) and math.isfinite(sigma) and sigma > 0):
        problems.append(f"sigma={sigma!r} (> 0)")
    if problems:
        raise CountsError("impossible counts: " + ", ".join(problems))


@dataclass(frozen=True)
class Certificate:
    """One smoothed prediction with the counts it rests on (radii at any alpha follow from them).

    ``prediction`` is ``ABSTAIN`` (-1) when the bound is <= 0.5; ``radius`` is then 0.
    ``c_a`` is the class chosen on the ``n0`` selection samples, ``n_a`` its count among the ``n``
    estimation samples. ``mode`` says how the counts were produced ("fp32", "bf16", "+compile").
    """

    prediction: int
    radius: float
    cA: int
    nA: int
    n: int
    n0: int
    sigma: float
    alpha: float
    seed: int = 0
    index: int = 0
    mode: str = "fp32"

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN

    @property
    def p_lower(self) -> float:
        return lower_confidence_bound(self.nA, self.n, self.alpha)

    def radius_at(self, alpha: float) -> float:
        """Certified radius at another ``alpha`` from the stored counts (0 if abstaining there).

        Raises:
            CountsError: the stored counts or ``alpha`` are impossible.
        """
        return self.at_alpha(alpha).radius

    def at_alpha(self, alpha: float) -> Certificate:
        """The certificate the same counts give at level ``alpha``."""
        return certificate_from_counts(
            self.cA, self.nA, self.n, self.n0, self.sigma, alpha, self.seed, self.index, self.mode
        )

    def to_dict(self) -> dict:
        return asdict(self)


def certificate_from_counts(
    c_a: int,
    n_a: int,
    n: int,
    n0: int,
    sigma: float,
    alpha: float,
    seed: int = 0,
    index: int = 0,
    mode: str = "fp32",
) -> Certificate:
    """Build a :class:`Certificate` from selection/estimation counts (DESIGN.md's CERTIFY rule).

    Raises:
        CountsError: counts outside ``0 <= nA <= n``, ``n0 >= 1``, ``0 < alpha < 1``, sigma > 0.
    """
    check_counts(c_a, n_a, n, n0, sigma, alpha)
    r = certified_radius(n_a, n, alpha, sigma)
    prediction = ABSTAIN if r is None else int(c_a)
    return Certificate(
        prediction, 0.0 if r is None else r, int(c_a), int(n_a), int(n), int(n0),
        float(sigma), float(alpha), int(seed), int(index), mode,
    )


_MT_WORDS = 624  # mt19937 state words (torch's CPU generator)
_MT_OFFSET = 24  # byte offset of the state words in torch's CPU generator state
_CPU_TEMPLATE: torch.Tensor | None = None


def stream_entropy(seed: int, index: int, stage: str) -> list[int]:
    """The fixed-width 32-bit words a stream's state is derived from (an injective encoding)."""
    if stage not in STAGES:
        raise ValueError(f"unknown noise stage {stage!r}; known: {sorted(STAGES)}")
    if int(index) < 0:
        raise ValueError(f"input index must be >= 0, got {index}")
    s, i = int(seed) & 0xFFFFFFFFFFFFFFFF, int(index) & 0xFFFFFFFFFFFFFFFF
    return [s & 0xFFFFFFFF, s >> 32, i & 0xFFFFFFFF, i >> 32, STAGES[stage]]


def stream_state(seed: int, index: int, stage: str, words: int = _MT_WORDS) -> np.ndarray:
    """``words`` 32-bit state words of the stream ``(seed, index, stage)`` (numpy SeedSequence)."""
    return np.random.SeedSequence(stream_entropy(seed, index, stage)).generate_state(words,
                                                                                     np.uint32)


def _cpu_template() -> torch.Tensor:
    """A seeded CPU generator's state bytes, with its layout checked once."""
    global _CPU_TEMPLATE
    if _CPU_TEMPLATE is None:
        state = torch.Generator().manual_seed(1).get_state()
        words = np.frombuffer(state.numpy().tobytes(), "<u8", _MT_WORDS, _MT_OFFSET)
        if state.numel() < _MT_OFFSET + 8 * _MT_WORDS or words[0] != 1 or words.max() >= 2**32:
            raise RuntimeError("this torch's CPU generator state has an unknown layout; rsrouter "
                               "cannot seed its noise streams (please report the torch version)")
        _CPU_TEMPLATE = state
    return _CPU_TEMPLATE


def noise_generator(seed: int, index: int, stage: str,
                    device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of stream ``(seed, index, stage)``.

    On the CPU the whole mt19937 state (624 words) is filled from a SeedSequence of the triple,
    so distinct triples share a state only if SeedSequence's 128-bit pool collides (probability
    below ``N**2 / 2**129`` for ``N`` streams); seeding through ``manual_seed`` would keep only 32
    bits. On CUDA, Philox takes a 63-bit seed derived the same way (below ``N**2 / 2**64``).
    """
    device = torch.device(device)
    gen = torch.Generator(device=device)
    if device.type != "cpu":
        hi, lo = (int(w) for w in stream_state(seed, index, stage, 2))
        gen.manual_seed((hi << 32 | lo) & 0x7FFFFFFFFFFFFFFF)
        return gen
    state = _cpu_template().clone()
    raw = state.numpy()
    raw[8:16] = np.frombuffer(np.array([1, 1], "<i4").tobytes(), np.uint8)  # left=1, seeded=1
    raw[16:24] = 0  # next
    raw[_MT_OFFSET:_MT_OFFSET + 8 * _MT_WORDS] = np.frombuffer(
        stream_state(seed, index, stage).astype("<u8").tobytes(), np.uint8)
    gen.set_state(state)
    return gen


class NoiseStream:
    """Standard normal noise for one (seed, index, stage), drawn in fixed blocks.

    Drawing the same block size each time makes the stream independent of how it is consumed:
    ``take(3); take(5)`` returns the same values as ``take(8)``. Memory: one block.
    """

    def __init__(self, shape: Sequence[int], generator: torch.Generator) -> None:
        self.shape = tuple(shape)
        self.device = generator.device
        self.generator = generator
        self._block: torch.Tensor | None = None
        self._pos = NOISE_BLOCK

    def fill(self, out: torch.Tensor) -> None:
        """Write the next ``len(out)`` noise samples into ``out`` (whole blocks in place)."""
        pos, k = 0, len(out)
        while pos < k:
            if self._pos == NOISE_BLOCK and k - pos >= NOISE_BLOCK:
                dest = out[pos : pos + NOISE_BLOCK]
                torch.randn(dest.shape, generator=self.generator, out=dest)
                pos += NOISE_BLOCK
                continue
            if self._pos == NOISE_BLOCK:
                self._block = torch.randn(
                    (NOISE_BLOCK, *self.shape), generator=self.generator, device=self.device
                )
                self._pos = 0
            m = min(k - pos, NOISE_BLOCK - self._pos)
            out[pos : pos + m].copy_(self._block[self._pos : self._pos + m])
            self._pos += m
            pos += m


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")


def check_settings(n0: int, n: int, alpha: float, batch_size: int) -> None:
    """Raise ValueError unless ``n0, n, batch_size >= 1`` and ``0 < alpha < 1``."""
    for name, value in (("n0", n0), ("n", n), ("batch_size", batch_size)):
        _check_count(name, value)
    _check_alpha(alpha)


def _check_count(name: str, value: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


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
        _check_alpha(alpha)
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
        if stages[0] == stages[1]:
            raise ValueError(f"selection and estimation must use different noise stages, got "
                             f"{stages[0]!r} twice")
        _check_count("n0", n0)
        _check_count("n", n)
        xs, indices = self._check_inputs(xs, indices)
        select = self.sample_counts(xs, n0, batch_size=batch_size, seed=seed, indices=indices,
                                    stage=stages[0])
        estimate = self.sample_counts(xs, n, batch_size=batch_size, seed=seed, indices=indices,
                                      stage=stages[1])
        return select.argmax(dim=1), estimate

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
        _check_count("n", n)
        _check_alpha(alpha)
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

    def _classify(self, batch: torch.Tensor, batch_size: int) -> torch.Tensor:
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
    ([B], None: all). Returns one ``[B, num_classes]`` int64 CPU tensor per model (zeros off its
    mask). Each input's draws come from its own stream ``(seed, index, stage)`` in fixed blocks,
    so a model's counts are those it gets alone; the draws are made once, however many models
    use them. Memory is bounded by ``batch_size`` noisy copies.
    """
    _check_count("batch_size", batch_size)
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
    alone = len(models) == 1  # one model: make the noisy batch in place, no second buffer
    noisy = z if alone else torch.empty_like(z)
    for owners, sizes in _batches(b, num, batch_size):
        start = 0
        for j, k in zip(owners, sizes):
            streams[j].fill(z[start : start + k])
            start += k
        for (smooth, _), mask, count in zip(models, masks, counts):
            pos, kept, kept_sizes = 0, [], []
            offset = 0
            for j, k in zip(owners, sizes):
                if mask[j]:
                    torch.add(xs[j], z[offset : offset + k], alpha=smooth.sigma,
                              out=noisy[pos : pos + k])
                    kept.append(j)
                    kept_sizes.append(k)
                    pos += k
                offset += k
            if not pos:
                continue
            predictions = smooth._classify(noisy[:pos], batch_size)
            owner_ids = torch.repeat_interleave(torch.tensor(kept, device=device),
                                                torch.tensor(kept_sizes, device=device))
            count += torch.bincount(owner_ids * smooth.num_classes + predictions,
                                    minlength=b * smooth.num_classes)
    return [c.view(b, s.num_classes).cpu() for c, (s, _) in zip(counts, models)]


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
    (certified) or r is out of reach: above the radius of its upper bound, or above the best
    radius the last look could give. The stopping rule may depend on anything: the certificate at
    the stopping look holds because the bounds at all looks hold together with probability at
    least ``1 - alpha`` (a union over the looks; docs/theory.md).
    """
    seq.check(seq.looks[-1])
    _check_count("n0", n0)
    _check_alpha(alpha)
    xs, indices = model._check_inputs(xs, indices)
    c_a = model.sample_counts(xs, n0, batch_size=batch_size, seed=seed, indices=indices,
                              stage=stages[0]).argmax(dim=1)
    b, shares = len(xs), seq.shares()
    streams = [NoiseStream(xs.shape[1:], noise_generator(seed, i, stages[1], model.device))
               for i in indices]
    counts = torch.zeros((b, model.num_classes), dtype=torch.long)
    used, share = torch.zeros(b, dtype=torch.long), torch.zeros(b)
    active = np.ones(b, bool)
    grid = np.asarray(radii, dtype=float)
    final = seq.looks[-1]
    cap = model.sigma * norm.ppf(lower_confidence_bound(final, final, alpha * shares[-1]))
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
        a = alpha * part
        with np.errstate(all="ignore"):
            low = np.where(n_a > 0, beta.ppf(a, np.maximum(n_a, 1), look - n_a + 1), 0.0)
            high = np.where(n_a < look, beta.ppf(1 - a, n_a + 1, np.maximum(look - n_a, 1)), 1.0)
            r_low = np.where(low > 0.5, model.sigma * norm.ppf(np.clip(low, 0.5, 1)), -np.inf)
            r_high = np.where(high > 0.5, model.sigma * norm.ppf(np.clip(high, 0.5, 1)), -np.inf)
        reach = np.minimum(r_high, cap)
        decided = ((r_low[:, None] >= grid[None, :]) | (reach[:, None] < grid[None, :])).all(1)
        active[rows[decided]] = False
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


__all__ = [
    "ABSTAIN", "Certificate", "Smooth", "certificate_from_counts", "certified_radius",
    "check_counts", "lower_confidence_bound", "noise_generator", "predict_from_counts",
    "stream_state",
]
