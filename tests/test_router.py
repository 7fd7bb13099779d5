"""Routing: composition rules, coverage of the routed certificate, a router that learns the best
expert on a problem built for it, label caching and resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn
from toymodels import Halfspace

from rsrouter.cards.expert import ExpertCard
from rsrouter.cards.pins import Pin
from rsrouter.certify.bounds import ABSTAIN
from rsrouter.certify.smoothing import Smooth
from rsrouter.data import DatasetInfo, TensorImageDataset
from rsrouter.errors import ConfigError
from rsrouter.registry.expert import Expert
from rsrouter.routing import labels as labels_mod
from rsrouter.routing.config import LabelSpec, parse_config
from rsrouter.routing.load import load_router
from rsrouter.routing.routed import RoutedClassifier
from rsrouter.training.router import train_router


def _routed(alpha_split=0.5):
    router = Smooth(Halfspace(0, 0.5), 2, 0.3)
    experts = [Smooth(Halfspace(1, 0.5), 2, 0.2), Smooth(Halfspace(1, 0.5), 2, 0.3)]
    return RoutedClassifier(router, experts, alpha_split=alpha_split)


def test_routed_coverage_with_known_part_probabilities():
    """Share of routed certificates that are wrong or overstate min(true router radius, true
    expert radius) <= alpha_r + alpha_e + 3 standard errors."""
    alpha, m = 0.1, 2000
    rng = np.random.default_rng(1)
    xs = torch.zeros(m, 1, 1, 4)
    x0 = 0.5 + rng.uniform(-1.4, 1.4, m) * 0.3  # router margin, router sigma 0.3
    x1 = 0.5 + rng.uniform(-1.0, 1.0, m) * 0.45  # expert margin
    xs[:, 0, 0, 0], xs[:, 0, 0, 1] = torch.tensor(x0), torch.tensor(x1)
    routed = _routed()
    certs = routed.certify_batch(xs, 32, 300, alpha, batch_size=5000, seed=3)
    true_route = (x0 > 0.5).astype(int)
    true_class = (x1 > 0.5).astype(int)
    true_radius = np.minimum(np.abs(x0 - 0.5), np.abs(x1 - 0.5))
    bad = [c.prediction != ABSTAIN and (c.expert != r or c.prediction != y or c.radius > t + 1e-6)
           for c, r, y, t in zip(certs, true_route, true_class, true_radius)]
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert np.mean(bad) <= alpha + 3 * se
    # power: plug-in radii (no confidence bounds) overstate the radius far more often
    def plug(c, nA, n, s):
        return s * norm.ppf(min(nA / n, 1 - 1e-9))
    naive = [c.prediction != ABSTAIN and min(plug(c, c.router.nA, c.router.n, 0.3),
                                             plug(c, c.expert_cert.nA, c.expert_cert.n,
                                                  c.expert_cert.sigma)) > t
             for c, t in zip(certs, true_radius)]
    assert np.mean(naive) > alpha + 10 * se
    # the composition rules, on every certificate
    for c in certs:
        assert c.alpha_router + c.alpha_expert == pytest.approx(alpha)
        assert c.alpha_router == pytest.approx(alpha / 2)
        if c.prediction != ABSTAIN:
            assert c.radius <= c.router_radius and c.radius <= c.expert_radius
            assert c.radius == min(c.router_radius, c.expert_radius)


def test_routed_coverage_when_router_and_expert_read_the_same_noise():
    """Router and experts read the same coordinate, so with shared draws the router's and the
    expert's noise are the same standard normal scaled by each sigma (fully dependent): the
    union bound still holds (docs/theory.md), within alpha + 3 standard errors."""
    alpha, m = 0.1, 2000
    rng = np.random.default_rng(2)
    xs = torch.zeros(m, 1, 1, 4)
    x0 = 0.5 + rng.uniform(-1.2, 1.2, m) * 0.3
    xs[:, 0, 0, 0] = torch.tensor(x0)
    router = Smooth(Halfspace(0, 0.5), 2, 0.4)  # route 1 iff x0 > 0.5
    experts = [Smooth(Halfspace(0, 0.45), 2, 0.2), Smooth(Halfspace(0, 0.6, flip=True), 2, 0.4)]
    certs = RoutedClassifier(router, experts).certify_batch(xs, 32, 300, alpha, batch_size=5000,
                                                            seed=4)
    route = (x0 > 0.5).astype(int)
    t = np.where(route == 0, 0.45, 0.6)
    cls = np.where(route == 0, x0 > 0.45, x0 <= 0.6).astype(int)
    true_radius = np.minimum(np.abs(x0 - 0.5), np.abs(x0 - t))
    bad = [c.prediction != ABSTAIN and (c.expert != r or c.prediction != y or c.radius > r_ + 1e-6)
           for c, r, y, r_ in zip(certs, route, cls, true_radius)]
    se = math.sqrt(alpha * (1 - alpha) / m)
    assert np.mean(bad) <= alpha + 3 * se
    assert sum(c.prediction != ABSTAIN for c in certs) > m / 3  # it does certify

    def plug(nA, n, s):
        return s * norm.ppf(min(nA / n, 1 - 1e-9))
    naive = [c.prediction != ABSTAIN and min(plug(c.router.nA, c.router.n, 0.4),
                                             plug(c.expert_cert.nA, c.expert_cert.n,
                                                  c.expert_cert.sigma)) > r_
             for c, r_ in zip(certs, true_radius)]
    assert np.mean(naive) > alpha + 10 * se  # the check has power


def test_alpha_split_is_configurable():
    routed = _routed(alpha_split=0.2)
    assert routed.split(0.001) == pytest.approx((0.0002, 0.0008))
    cert = routed.certify(torch.tensor([[[0.9, 0.9, 0, 0]]]), 32, 200, 0.01)
    assert cert.alpha_router == pytest.approx(0.002) and cert.alpha_expert == pytest.approx(0.008)
    assert cert.router.alpha == pytest.approx(0.002)
    assert cert.expert_cert.alpha == pytest.approx(0.008)


def test_abstain_propagation_and_only_the_chosen_expert_runs():
    routed = _routed()
    on_router_boundary = torch.tensor([[[0.5, 0.9, 0, 0]]])  # router choice is a coin flip
    cert = routed.certify(on_router_boundary, 32, 500, 0.01)
    assert cert.prediction == ABSTAIN and cert.expert_cert is None
    # the expert chosen on the selection draws shares the router's estimation draws (one pass);
    # the other expert never runs
    calls = sorted(e.base_model.calls for e in routed.experts)
    assert calls == [0, 532]
    for e in routed.experts:
        e.base_model.calls = 0
    on_expert_boundary = torch.tensor([[[0.9, 0.5, 0, 0]]])  # router sure (expert 1), expert not
    cert = routed.certify(on_expert_boundary, 32, 500, 0.01)
    assert cert.expert == 1 and cert.router_radius > 0
    assert cert.expert_cert.prediction == ABSTAIN and cert.prediction == ABSTAIN
    assert routed.experts[0].base_model.calls == 0 and routed.experts[1].base_model.calls == 532
    assert routed.predict(on_router_boundary, 500, 0.01) == ABSTAIN
    assert routed.predict(torch.tensor([[[0.9, 0.9, 0, 0]]]), 500, 0.01) == 1


# ---- a toy task where the best expert is known by construction ---------------------------------

INFO = DatasetInfo("toy", 2, (1, 8, 8), (0.5,), (0.25,), ("down", "up"))


def toy_data(m: int, seed: int) -> TensorImageDataset:
    """Bright or dark images; class 1 iff the top half is brighter than the bottom half."""
    g = torch.Generator().manual_seed(seed)
    bright = torch.rand(m, generator=g) < 0.5
    label = (torch.rand(m, generator=g) < 0.5).long()
    x = torch.where(bright, 0.65, 0.15).view(m, 1, 1, 1).expand(m, 1, 8, 8).clone()
    x[:, :, :4] += 0.2 * label.view(m, 1, 1, 1)
    x[:, :, 4:] += 0.2 * (1 - label).view(m, 1, 1, 1)
    return TensorImageDataset(x, label, INFO)


class HalfExpert(nn.Module):
    """Right on bright images (or on dark ones with ``dark=True``), systematically wrong else."""

    def __init__(self, dark: bool) -> None:
        super().__init__()
        self.dark = dark

    def forward(self, x):
        diff = x[:, 0, :4].mean((1, 2)) - x[:, 0, 4:].mean((1, 2))
        right_here = (x.mean((1, 2, 3)) < 0.5) if self.dark else (x.mean((1, 2, 3)) >= 0.5)
        s = torch.where(right_here, diff, -diff)
        return torch.stack([-s, s], dim=1)


def toy_experts() -> list[Expert]:
    out = []
    for name, dark in (("bright", False), ("dark", True)):
        card = ExpertCard("cnn_tiny", 2, (1, 8, 8), (0.5,), (0.25,), 0.25, "toy", name=name,
                          weights_sha256=("d" if dark else "b") * 64)
        pin = Pin(card.weights_sha256, "c" * 64, "toy")
        out.append(Expert(HalfExpert(dark), card, uri=name, pin=pin))
    return out


TOY_CONFIG = {
    "experts": ["bright", "dark"],
    "router": {"arch": "cnn_tiny"},
    "labels": {"n": 100, "alpha": 0.01, "subset": 600},
    "train": {"epochs": 6, "batch_size": 64, "lr": 0.01, "noise_copies": 2,
              "schedule": {"type": "cosine"}, "consistency": {"lambda": 1.0, "eta": 0.1}},
    "data": {"dataset": "toy"},
    "seed": 0,
}


def test_router_learns_the_best_expert_on_a_toy_problem(tmp_path):
    cfg = parse_config(TOY_CONFIG)
    out = train_router(cfg, tmp_path / "router", experts=toy_experts(),
                       dataset=toy_data(800, seed=1), progress=False)
    router = load_router(out)
    assert router.sigma == 0.25 and router.card.labels["kept"] > 500
    test = toy_data(200, seed=2)
    best = (test.images.mean((1, 2, 3)) < 0.5).long()  # bright -> expert 0, dark -> expert 1
    certs = router.certify_batch(test.images, 32, 300, 0.001, batch_size=5000, seed=0)
    choice = torch.tensor([c.prediction for c in certs])
    assert float((choice == best).float().mean()) >= 0.9
    routed = RoutedClassifier(router, toy_experts())
    routed_certs = routed.certify_batch(test.images, 32, 300, 0.001, batch_size=5000)
    acc = np.mean([c.prediction == int(y) for c, y in zip(routed_certs, test.labels)])
    single = [np.mean([p == int(y) for p, y in zip(
        e.predict_batch(test.images, 300, 0.001, batch_size=5000), test.labels)])
        for e in toy_experts()]
    assert acc >= 0.9 and max(single) < 0.6  # routing beats each expert alone


def test_labels_cache_and_resume(tmp_path, monkeypatch):
    data = toy_data(40, seed=3)
    experts = toy_experts()
    spec = LabelSpec(n=50, alpha=0.01, subset=30, batch_size=500)
    key = {"test": 1}
    cache = tmp_path / "labels.safetensors"
    monkeypatch.setattr(labels_mod, "CHUNK", 8)
    full = labels_mod.compute_labels(experts, data, spec, seed=0, progress=False)

    calls = {"n": 0}
    original = Expert.sample_counts

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # the third chunk's first expert: interrupt
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(Expert, "sample_counts", flaky)
    with pytest.raises(KeyboardInterrupt):
        labels_mod.compute_labels(experts, data, spec, seed=0, cache=cache, key=key,
                                  progress=False)
    calls["n"] = 100  # no more interruptions; count the calls of the resumed run
    resumed = labels_mod.compute_labels(experts, data, spec, seed=0, cache=cache, key=key,
                                        progress=False)
    assert calls["n"] - 100 == 2 * 2  # only the two missing chunks (of 4), two experts each
    assert torch.equal(resumed.counts, full.counts) and torch.equal(resumed.indices, full.indices)
    calls["n"] = 100
    again = labels_mod.compute_labels(experts, data, spec, seed=0, cache=cache, key=key,
                                      progress=False)
    assert calls["n"] == 100 and torch.equal(again.counts, full.counts)  # served from cache
    other = labels_mod.compute_labels(experts, data, spec, seed=0, cache=cache,
                                      key={"test": 2}, progress=False)
    assert calls["n"] == 100 + 2 * 4 and torch.equal(other.counts, full.counts)  # recomputed


def test_soft_labels_and_class_weights_follow_the_recipe():
    counts = torch.tensor([[100, 100, 100], [100, 40, 0], [10, 20, 30], [99, 100, 60]])
    lab = labels_mod.RouterLabels(torch.arange(4), counts, 100, 0.001, (0.25, 0.5, 1.0))
    radii = lab.radii
    assert radii[2].eq(0).all() and lab.kept.tolist() == [True, True, False, True]
    cap = norm.ppf(0.001 ** (1 / 100))  # all 100 right: pA_lower = alpha^(1/n)
    assert radii[0].tolist() == pytest.approx([0.25 * cap, 0.5 * cap, 1.0 * cap])
    soft = lab.soft_labels(temperature=0.5)
    assert soft.sum(1).tolist() == pytest.approx([1, 1, 1])
    assert soft[0].tolist() == pytest.approx(torch.softmax(radii[0] / 0.5, 0).tolist(), rel=1e-5)
    assert lab.best_share().tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert lab.class_weights().tolist() == pytest.approx([1, 1, 1])


def test_band_labels_share_each_radius_among_the_experts_that_reach_it():
    """Counts [100, 100, 100]: radii 0.25c, 0.5c, c with c = Phi^-1(0.001^(1/100)) = 1.50.
    Bands [0, 0.5, 1.0, 2.0]: all three certify at 0; sigma 0.5 and 1.0 at 0.5; only 1.0 at 1.0;
    nobody at 2.0 -> credits (1/3, 1/3 + 1/2, 1/3 + 1/2 + 1) / 3. Counts [100, 40, 0]: only
    sigma 0.25 certifies, at band 0 only -> (1, 0, 0)."""
    counts = torch.tensor([[100, 100, 100], [100, 40, 0]])
    lab = labels_mod.RouterLabels(torch.arange(2), counts, 100, 0.001, (0.25, 0.5, 1.0))
    soft = lab.soft_labels(target="bands", bands=[0.0, 0.5, 1.0, 2.0])
    assert soft[0].tolist() == pytest.approx([1 / 9, 5 / 18, 11 / 18])
    assert soft[1].tolist() == pytest.approx([1, 0, 0])
    with pytest.raises(ValueError, match="labels.target"):
        lab.soft_labels(target="radius")
    with pytest.raises(ValueError, match="must include 0"):
        lab.soft_labels(target="bands", bands=[1.0, 2.0])  # some inputs would earn nothing
    with pytest.raises(ConfigError, match="labels.target"):
        parse_config({**TOY_CONFIG, "labels": {"target": "radius"}})
    with pytest.raises(ConfigError, match="labels.bands"):
        parse_config({**TOY_CONFIG, "labels": {"target": "bands", "bands": [1.0, 2.0]}})


def test_label_cost_weighs_down_the_experts_whose_pass_is_not_shared():
    """cost c with shared expert s: every other expert's weight times exp(-c) before normalizing.
    Bands [0, 0.5, 1.0, 2.0] on counts [100, 100, 100] give credits (1/3, 5/6, 11/6); with s = 2
    and c = ln 2: (1/6, 5/12, 11/6). Softmax: the same as subtracting c from the others' logits.
    An input that only sigma 0.25 certifies ([100, 40, 0]) still goes to it."""
    counts = torch.tensor([[100, 100, 100], [100, 40, 0]])
    lab = labels_mod.RouterLabels(torch.arange(2), counts, 100, 0.001, (0.25, 0.5, 1.0))
    bands = [0.0, 0.5, 1.0, 2.0]
    soft = lab.soft_labels(target="bands", bands=bands, cost=math.log(2), shared=2)
    credit = torch.tensor([1 / 6, 5 / 12, 11 / 6])
    assert soft[0].tolist() == pytest.approx((credit / credit.sum()).tolist())
    assert soft[1].tolist() == pytest.approx([1, 0, 0])
    logits = lab.radii[0] / 0.5 - torch.tensor([1.0, 1.0, 0.0])
    assert lab.soft_labels(0.5, cost=1.0, shared=2)[0].tolist() == pytest.approx(
        torch.softmax(logits, 0).tolist(), rel=1e-5)
    assert torch.equal(lab.soft_labels(0.5, cost=0.0), lab.soft_labels(0.5))
    with pytest.raises(ValueError, match="shares a forward"):
        lab.soft_labels(0.5, cost=1.0)
    with pytest.raises(ConfigError, match="labels.cost: only a router that shares"):
        parse_config({**TOY_CONFIG, "labels": {"cost": 1.0}})  # not frozen: nothing is saved
    frozen = {**TOY_CONFIG, "router": {"arch": "cnn_tiny", "backbone": "dark", "frozen": True}}
    for bad in (-1.0, 1e9):  # exp(-cost) must stay a positive weight
        with pytest.raises(ConfigError, match=r"labels.cost: must be in \[0, 100\)"):
            parse_config({**frozen, "labels": {"cost": bad}})
    assert parse_config({**frozen, "labels": {"cost": 1.5}}).to_dict()["labels"]["cost"] == 1.5
    assert "cost" not in parse_config(TOY_CONFIG).to_dict()["labels"]  # old settings kept


def test_labels_projected_to_the_certification_n():
    """With n = 100 label samples every radius is capped at sigma * Phi^-1(alpha^(1/100)); with
    certify_n the counts are scaled to that n (same fraction) and bounded there, so an input
    that sigma 0.5 gets 100/100 and sigma 1.0 95/100 goes to sigma 0.5 (its cap at 10,000 is
    0.5 * Phi^-1(alpha^(1/10000)) = 1.60 > Phi^-1(CP lower of 9,500/10,000) = 1.58)."""
    from statsmodels.stats.proportion import proportion_confint

    counts = torch.tensor([[100, 100, 95], [100, 100, 100], [60, 55, 0]])
    plain = labels_mod.RouterLabels(torch.arange(3), counts, 100, 0.001, (0.25, 0.5, 1.0))
    proj = labels_mod.RouterLabels(torch.arange(3), counts, 100, 0.001, (0.25, 0.5, 1.0),
                                   certify_n=10000)
    assert plain.radii[0].argmax() == 2 and proj.radii[0].argmax() == 1
    cap = norm.ppf(0.001 ** (1 / 10000))
    assert proj.radii[1].tolist() == pytest.approx([0.25 * cap, 0.5 * cap, cap])
    low = proportion_confint(9500, 10000, alpha=2 * 0.001, method="beta")[0]
    assert float(proj.radii[0, 2]) == pytest.approx(norm.ppf(low), rel=1e-6)
    # 60/100 is not certified at n = 100 but is at 10,000 (6,000 of them): kept only projected
    assert not plain.kept[2] and proj.kept[2] and proj.radii[2, 1] > 0
    assert torch.equal(plain.counts, proj.counts)  # the counts (and their cache) are unchanged
    assert proj.summary()["radii_projected_to"] == 10000  # the card says what its radii are
    assert "radii_projected_to" not in plain.summary()
    with pytest.raises(ConfigError, match="labels.certify_n"):
        parse_config({**TOY_CONFIG, "labels": {"certify_n": 0}})
    assert "certify_n" not in parse_config(TOY_CONFIG).to_dict()["labels"]  # old settings kept


def test_router_training_resumes_to_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    cfg = parse_config({**TOY_CONFIG, "train": {**TOY_CONFIG["train"], "epochs": 3}})
    kw = dict(experts=toy_experts(), dataset=toy_data(300, seed=1), progress=False)
    straight = train_router(cfg, tmp_path / "straight", **kw)
    resumed = tmp_path / "resumed"
    train_router(cfg, resumed, stop_after_epoch=1, **kw)
    assert (resumed / ".train").is_dir() and not (resumed / "config.json").exists()
    train_router(cfg, resumed, **kw)
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_routed_predict_draws_the_router_noise_from_its_own_stream():
    from rsrouter.certify.noise import NoiseStream, noise_generator

    class Recorder(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(x.clone())
            return torch.stack([x.flatten(1)[:, 0] * 0 + 5, x.flatten(1)[:, 0] * 0], 1)

    router_net, expert_net = Recorder(), Recorder()
    routed = RoutedClassifier(Smooth(router_net, 2, 0.5),
                              [Smooth(expert_net, 2, 0.5), Smooth(Halfspace(0, 0.5), 2, 0.5)])
    x = torch.full((1, 1, 3), 0.5)
    assert routed.predict(x, 40, 0.01, seed=3, index=7) == 0
    expected = {}
    for stage in ("router-predict", "predict"):
        noise = torch.empty(40, 1, 1, 3)
        NoiseStream((1, 1, 3), noise_generator(3, 7, stage)).fill(noise)
        expected[stage] = noise
    router_noise = (torch.cat(router_net.seen) - x) / 0.5
    expert_noise = (torch.cat(expert_net.seen) - x) / 0.5
    assert torch.allclose(router_noise, expected["router-predict"], atol=1e-5)
    assert torch.allclose(expert_noise, expected["predict"], atol=1e-5)
