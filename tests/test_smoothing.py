"""The certification engine: bounds, coverage, batching invariance, clear errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import beta, norm
from torch import nn
from toymodels import Halfspace

import rsrouter
from rsrouter.certify.bounds import (
    ABSTAIN,
    certificate_from_counts,
    certified_radius,
    lower_confidence_bound,
    radii_from_counts,
)
from rsrouter.certify.noise import NOISE_BLOCK, STAGES, NoiseStream, noise_generator, stream_state
from rsrouter.certify.smoothing import Smooth
from rsrouter.errors import CountsError


def test_radius_matches_clopper_pearson_formula():
    for n_a, n, alpha, sigma in [(990, 1000, 0.001, 0.5), (9000, 10000, 0.01, 0.25),
                                 (100, 100, 0.001, 1.0), (70, 100, 0.05, 0.12)]:
        cert = certificate_from_counts(3, n_a, n, 100, sigma, alpha)
        expected = sigma * norm.ppf(beta.ppf(alpha, n_a, n - n_a + 1))
        assert cert.prediction == 3
        assert cert.radius == pytest.approx(expected, rel=1e-12)
        assert cert.radius_at(alpha) == pytest.approx(expected, rel=1e-12)


def test_abstains_when_lower_bound_at_most_half():
    # 55 of 100: the 99.9% lower bound is far below 0.5
    assert lower_confidence_bound(55, 100, 0.001) <= 0.5
    cert = certificate_from_counts(2, 55, 100, 100, 0.5, 0.001)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.abstained
    # 0 successes gives a bound of exactly 0
    assert lower_confidence_bound(0, 100, 0.001) == 0.0


def test_radius_at_other_alpha_from_stored_counts():
    cert = certificate_from_counts(1, 960, 1000, 100, 0.5, 0.001)
    looser = cert.at_alpha(0.05)
    assert looser.radius > cert.radius
    assert looser.radius == pytest.approx(
        0.5 * norm.ppf(beta.ppf(0.05, 960, 41)), rel=1e-12)
    assert cert.radius_at(0.05) == looser.radius
    with pytest.raises(ValueError, match="alpha"):
        cert.radius_at(1.5)


def test_coverage_on_halfspace_with_known_radius():
    """Share of certificates that overstate the true radius <= alpha + 3 standard errors."""
    alpha, sigma, n0, n, m = 0.05, 0.5, 32, 400, 2400
    rng = np.random.default_rng(0)
    # margins spread so that pA ranges over (0.5, 0.995): where the bound is tight
    margins = rng.uniform(0.0, 1.3, size=m) * sigma
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0] = torch.from_numpy(margins).float()
    smooth = Smooth(Halfspace(0), num_classes=2, sigma=sigma)
    certs = smooth.certify_batch(xs, n0, n, alpha, batch_size=4096, seed=11)
    true_radius = xs[:, 0, 0, 0].double().numpy()
    violations = [c.prediction != ABSTAIN and (c.prediction != 1 or c.radius > r + 1e-6)
                  for c, r in zip(certs, true_radius)]
    rate = float(np.mean(violations))
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert rate <= alpha + 3 * se, f"coverage violated: {rate:.4f} > {alpha} + 3 * {se:.4f}"
    # power check: the same counts with the plug-in estimate (no confidence bound) overstate the
    # radius about half the time, so this test can tell a sound bound from an unsound one
    naive = [c.prediction != ABSTAIN and sigma * norm.ppf(min(c.nA / c.n, 1 - 1e-9)) > r
             for c, r in zip(certs, true_radius)]
    assert np.mean(naive) > alpha + 10 * se
    # and most inputs are certified at all
    assert np.mean([c.prediction == 1 for c in certs]) > 0.8


def test_selection_and_estimation_samples_are_disjoint():
    seen: list[torch.Tensor] = []

    class Recorder(nn.Module):
        def forward(self, x):
            seen.append(x.clone())
            return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], dim=1)

    x = torch.full((1, 2, 2), 0.5)
    cert = Smooth(Recorder(), 2, 0.3).certify(x, n0=5, n=9, alpha=0.01, batch_size=4, seed=1)
    batches = torch.cat(seen)
    assert len(batches) == 5 + 9  # each draw used once
    first, second = batches[:5].flatten(1), batches[5:].flatten(1)
    assert torch.cdist(first, second).min() > 1e-3  # no estimation sample reuses a selection one
    assert cert.n0 == 5 and cert.n == 9
    assert len({tuple(stream_state(1, 0, s, 4)) for s in ("select", "estimate", "predict")}) == 3


def test_noise_stream_independent_of_consumption():
    a = NoiseStream((3,), noise_generator(123, 4, "select"))
    b = NoiseStream((3,), noise_generator(123, 4, "select"))
    one = torch.empty(300, 3)
    a.fill(one)
    parts = [torch.empty(k, 3) for k in (1, 6, 128, 165)]  # blocks split, whole and straddled
    for part in parts:
        b.fill(part)
    assert torch.equal(one, torch.cat(parts))
    reference = noise_generator(123, 4, "select")  # the stream is fixed blocks of NOISE_BLOCK
    blocks = torch.cat([torch.randn((NOISE_BLOCK, 3), generator=reference) for _ in range(3)])
    assert torch.equal(one, blocks[:300])


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    from rsrouter.models import create_classifier

    return create_classifier("cnn_tiny", 10, (1, 8, 8), (0.3,), (0.4,)).eval()


def test_same_certificate_for_any_batch_size():
    smooth = Smooth(_small_cnn(), 10, 0.25)
    torch.manual_seed(1)
    xs = torch.rand(3, 1, 8, 8)
    results = [smooth.certify_batch(xs, 30, 150, 0.01, batch_size=bs, seed=5, indices=[4, 9, 2])
               for bs in (1, 7, 1000)]
    assert results[0] == results[1] == results[2]
    # one input certified alone, under its index, gives the same certificate as in a batch
    alone = smooth.certify(xs[1], 30, 150, 0.01, batch_size=13, seed=5, index=9)
    assert alone == results[0][1]
    # a different seed gives different counts
    noisy = Smooth(smooth.base_model, 10, 2.0)  # counts spread over classes at this sigma
    counts = [noisy.sample_counts(xs, 150, batch_size=64, seed=s, indices=[4, 9, 2],
                                  stage="estimate") for s in (5, 6)]
    assert not torch.equal(*counts)


def test_predict_abstains_on_a_coin_and_answers_when_confident():
    smooth = Smooth(Halfspace(0, 0.5), 2, 0.1)
    on_boundary = torch.full((1, 1, 4), 0.5)  # P(class 1) = 1/2
    assert smooth.predict(on_boundary, n=2000, alpha=0.001, seed=0) == ABSTAIN
    above, below = torch.full((1, 1, 4), 1.0), torch.zeros(1, 1, 4)  # 5 sigma from the boundary
    assert smooth.predict(above, n=200, alpha=0.001, seed=0) == 1
    assert smooth.predict_batch(torch.stack([above, below]), n=200, alpha=0.001) == [1, 0]


def test_counts_memory_is_bounded_by_batch(monkeypatch):
    """Largest tensor the model sees is one batch, whatever n is."""
    sizes = []

    class Probe(nn.Module):
        def forward(self, x):
            sizes.append(x.shape[0])
            return torch.zeros(x.shape[0], 2)

    Smooth(Probe(), 2, 0.1).certify(torch.zeros(1, 2, 2), 10, 10_000, 0.01, batch_size=256)
    assert max(sizes) == 256 and sum(sizes) == 10_010


def test_bf16_and_compile_are_labelled():
    smooth = Smooth(_small_cnn(), 10, 0.25, precision="bf16")
    cert = smooth.certify(torch.rand(1, 8, 8), 10, 50, 0.01, batch_size=30)
    assert cert.mode == "bf16"
    assert Smooth(_small_cnn(), 10, 0.25, compile=True).mode == "fp32+compile"


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sigma": 0.0}, "sigma"), ({"sigma": -1.0}, "sigma"), ({"sigma": float("nan")}, "sigma"),
     ({"num_classes": 1}, "num_classes"), ({"precision": "fp8"}, "precision")],
)
def test_constructor_errors(kwargs, match):
    args = {"num_classes": 10, "sigma": 0.25, **kwargs}
    with pytest.raises(ValueError, match=match):
        Smooth(_small_cnn(), args.pop("num_classes"), args.pop("sigma"), **args)


@pytest.mark.parametrize(
    "call, match",
    [(lambda s, x: s.certify(x, 0, 100, 0.01), "n0"),
     (lambda s, x: s.certify(x, 10, 0, 0.01), "n must"),
     (lambda s, x: s.certify(x, 10, 100, 0.0), "alpha"),
     (lambda s, x: s.certify(x, 10, 100, 1.0), "alpha"),
     (lambda s, x: s.certify(x[0], 10, 100, 0.01), r"\[C, H, W\]"),
     (lambda s, x: s.certify(torch.rand(1, 9, 9), 10, 100, 0.01), "input shape"),
     (lambda s, x: s.certify(torch.full((1, 8, 8), float("nan")), 10, 100, 0.01), "NaN"),
     (lambda s, x: s.predict(x, 0, 0.01), "n must"),
     (lambda s, x: s.certify(x, 10, 100, 0.01, batch_size=0), "batch_size")],
)
def test_call_errors(call, match):
    smooth = Smooth(_small_cnn(), 10, 0.25, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match=match):
        call(smooth, torch.rand(1, 8, 8))


def test_num_classes_mismatch_is_reported():
    smooth = Smooth(_small_cnn(), 3, 0.25)
    with pytest.raises(ValueError, match="num_classes=3"):
        smooth.certify(torch.rand(1, 8, 8), 10, 20, 0.01)


def test_public_api():
    assert rsrouter.ABSTAIN == -1
    assert rsrouter.Smooth is Smooth
    assert {"prediction", "radius", "cA", "nA", "n", "n0", "sigma", "alpha"} <= set(
        rsrouter.Certificate.__dataclass_fields__)


@pytest.mark.parametrize("counts, bad", [
    (dict(n_a=101, n=100), "nA=101"),
    (dict(n_a=-1), "nA=-1"),
    (dict(n0=0), "n0=0"),
    (dict(alpha=0.0), "alpha=0.0"),
    (dict(alpha=1.5), "alpha=1.5"),
    (dict(sigma=0.0), "sigma=0.0"),
    (dict(sigma=float("nan")), "sigma=nan"),
    (dict(c_a=-1), "cA=-1"),
    (dict(n=0, n_a=0), "n=0"),
])
def test_impossible_counts_are_refused(counts, bad):
    good = dict(c_a=3, n_a=90, n=100, n0=10, sigma=0.5, alpha=0.01)
    with pytest.raises(CountsError, match=bad):
        certificate_from_counts(**{**good, **counts})
    cert = certificate_from_counts(**good)
    forged = dataclasses.replace(cert, **{{"c_a": "cA", "n_a": "nA"}.get(k, k): v
                                          for k, v in counts.items() if k != "alpha"})
    if forged != cert:  # counts stored in a certificate are checked when reused
        with pytest.raises(CountsError):
            forged.radius_at(0.01)
    with pytest.raises(CountsError, match="alpha"):
        cert.radius_at(1.0)


def test_a_nan_bound_abstains():
    # nA > n makes the Clopper-Pearson bound NaN; `p <= 0.5` would be False and certify it
    assert math.isnan(lower_confidence_bound(101, 100, 0.01))
    assert certified_radius(101, 100, 0.01, 0.25) is None
    assert radii_from_counts(np.array([101, 90]), 100, 0.01, 0.25)[0] == 0.0


def test_distinct_triples_give_distinct_streams():
    """(seed, index, stage) -> a 128-bit state prefix, all distinct over 100,000 inputs and every
    stage; torch's manual_seed would keep only the low 32 bits of a 64-bit seed."""
    seen = {tuple(stream_state(0, i, stage, 4)) for i in range(100_000) for stage in STAGES}
    assert len(seen) == 100_000 * len(STAGES)
    a = torch.randn(8, generator=torch.Generator().manual_seed(5))
    b = torch.randn(8, generator=torch.Generator().manual_seed(5 + 2**32))
    assert torch.equal(a, b)  # why rsrouter fills the whole generator state instead
    draws = {tuple(torch.randn(4, generator=noise_generator(s, i, "select")).tolist())
             for s in (0, 2**32) for i in (0, 1, 2**32)}
    assert len(draws) == 6


def test_selection_and_estimation_stages_must_differ():
    smooth = Smooth(_small_cnn(), 10, 0.25)
    with pytest.raises(ValueError, match="different noise stages"):
        smooth.certify_batch(torch.rand(1, 1, 8, 8), 10, 20, 0.01, stages=("select", "select"))


def test_sequential_looks_keep_coverage_and_save_samples():
    """Sequential mode on the halfspace: the radius reported at the stopping look overstates the
    true radius on at most alpha + 3 SE of the inputs, however the stopping rule chose the look;
    and easy inputs stop early."""
    from rsrouter.certify.sequential import Sequential
    from rsrouter.certify.smoothing import sequential_counts

    alpha, sigma, m = 0.05, 0.5, 2400
    seq = Sequential((50, 100, 200, 400, 800), final_share=0.5)
    rng = np.random.default_rng(1)
    margins = rng.uniform(-0.2, 1.3, size=m) * sigma
    xs = torch.zeros(m, 1, 1, 4)
    xs[:, 0, 0, 0] = torch.from_numpy(margins).float() + 0.5  # pixels in [0, 1]
    smooth = Smooth(Halfspace(0, 0.5), num_classes=2, sigma=sigma)
    grid = [0.0, 0.25, 0.5]
    c_a, counts, used, share = sequential_counts(smooth, xs, 32, seq, alpha, grid,
                                                 batch_size=4096, seed=5, indices=range(m))
    n_a = counts.gather(1, c_a[:, None])[:, 0].numpy()
    radius = radii_from_counts(n_a, used.numpy(), alpha * share.numpy(), sigma)
    certified = radius > 0
    true_class, true_radius = (margins > 0).astype(int), np.abs(margins)
    violations = certified & ((c_a.numpy() != true_class) | (radius > true_radius + 1e-6))
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert violations.mean() <= alpha + 3 * se
    # power: plug-in radii at the stopping look overstate the radius far more often
    plug = sigma * norm.ppf(np.clip(n_a / used.numpy(), 1e-9, 1 - 1e-9))
    naive = (plug > 0) & ((c_a.numpy() != true_class) | (plug > true_radius + 1e-6))
    assert naive.mean() > alpha + 10 * se
    assert set(share.tolist()) <= {0.125, 0.5}  # (1 - 0.5) / 4 early, 0.5 at the last look
    assert used.float().mean() < 0.85 * 800  # many inputs stop before the last look
    assert (used == 50).any() and (used == 800).any()
    # the first n_used estimation draws are those a fixed-n run counts
    fixed = smooth.certify_batch(xs[:8], 32, 800, alpha, batch_size=4096, seed=5,
                                 indices=range(8))
    full = used[:8] == 800
    assert [c.nA for c, f in zip(fixed, full) if f] == [int(v) for v, f in zip(n_a[:8], full)
                                                          if f]
