"""Expert training: the folder it writes, and resume after an interruption."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rsrouter.cards.expert import read_card
from rsrouter.errors import ResumeError
from rsrouter.registry.expert import load_expert_folder
from rsrouter.training.expert import TrainConfig, train_expert
from rsrouter.training.fit import CHECKPOINT


def _config(**kw):
    return TrainConfig("digits", "cnn_tiny", 0.5, epochs=3, batch_size=64, **kw)


def test_expert_folder_and_smoothed_accuracy(digits_expert):
    card = read_card(digits_expert)
    assert card.sigma == 0.25 and card.dataset == "digits" and card.num_classes == 10
    assert card.training["epochs"] == 3 and "Gaussian" in card.training["method"]
    expert = load_expert_folder(digits_expert)
    from rsrouter.data import load_dataset

    test = load_dataset("digits", "test")
    preds = expert.predict_batch(test.images[:100], n=100, alpha=0.001, batch_size=2000)
    acc = sum(p == int(y) for p, y in zip(preds, test.labels[:100])) / 100
    assert acc > 0.6  # a real (if tiny) expert, far above chance (0.1)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    straight = train_expert(_config(), tmp_path / "straight", progress=False)
    resumed = tmp_path / "resumed"
    train_expert(_config(), resumed, progress=False, stop_after_epoch=1)
    assert (resumed / CHECKPOINT).is_file() and not (resumed / "config.json").exists()
    train_expert(_config(), resumed, progress=False)
    assert not (resumed / CHECKPOINT).exists()
    a = load_file(straight / "model.safetensors")
    b = load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert read_card(straight).weights_sha256 == read_card(resumed).weights_sha256


def test_rerun_with_other_settings_is_refused(tmp_path):
    train_expert(_config(), tmp_path / "e", progress=False, stop_after_epoch=1)
    with pytest.raises(ResumeError, match="other settings"):
        train_expert(_config(lr=0.2), tmp_path / "e", progress=False)


def test_a_router_starts_from_an_expert_backbone(digits_expert, digits_expert_wide):
    """router.backbone: every tensor but the last layer comes from the expert; the expert must
    share the router's architecture and sigma."""
    from rsrouter.cards.header import Header
    from rsrouter.errors import ConfigError
    from rsrouter.registry.weights import build_model
    from rsrouter.training.router import init_from_backbone

    wide = load_expert_folder(digits_expert_wide)
    router = build_model(Header("cnn_tiny", 2, (1, 8, 8), (0.3,), (0.37,)), True, "test")
    record = init_from_backbone(router, "cnn_tiny", wide, 0.5)
    mine, theirs = router.net.state_dict(), wide.model.net.state_dict()
    same = [k for k in mine if torch.equal(mine[k], theirs[k].to(mine[k].dtype))
            if mine[k].shape == theirs[k].shape]
    assert record["tensors_new"] == 2 and len(same) == len(mine) - 2  # the last Linear is new
    assert record["weights_sha256"] == wide.pin.weights_sha256
    with pytest.raises(ConfigError, match="same architecture at the same sigma"):
        init_from_backbone(router, "cnn_tiny", load_expert_folder(digits_expert), 0.5)
