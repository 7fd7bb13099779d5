"""Expert cards: schema errors name the field; weights are checked before they are used."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from helpers import edit_json

from rsrouter.cards.expert import read_card
from rsrouter.cards.pins import Pin
from rsrouter.errors import CardError, IntegrityError
from rsrouter.files import sha256_file
from rsrouter.registry.expert import load_expert_folder


@pytest.fixture
def expert_copy(digits_expert, tmp_path):
    folder = tmp_path / "expert"
    shutil.copytree(digits_expert, folder)
    return folder


def test_card_round_trip_and_model_card(expert_copy):
    card = read_card(expert_copy)
    assert card.to_config()["pretrained_cfg"]["input_size"] == [1, 8, 8]
    text = (expert_copy / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["rs_expert"]["sigma"] == card.sigma
    assert front["rs_expert"]["weights_sha256"] == card.weights_sha256
    assert front["library_name"] == "rsrouter"


@pytest.mark.parametrize("change, field", [
    (lambda c: c["rs_expert"].pop("sigma"), "rs_expert.sigma"),
    (lambda c: c["rs_expert"].update(sigma=0), "rs_expert.sigma"),
    (lambda c: c["rs_expert"].update(sigma=-0.5), "rs_expert.sigma"),
    (lambda c: c.update(architecture=""), "architecture"),
    (lambda c: c.update(architecture="os:system; rm"), "architecture"),
    (lambda c: c.pop("num_classes"), "num_classes"),
    (lambda c: c["pretrained_cfg"].update(input_size=[1, 8]), "input_size"),
    (lambda c: c["rs_expert"].update(input_range=[0, 255]), "input_range"),
    (lambda c: c["pretrained_cfg"].update(std=[0.0]), "std"),
])
def test_schema_errors_name_the_field(expert_copy, change, field):
    edit_json(expert_copy / "config.json", change)
    with pytest.raises(CardError, match=field.replace(".", r"\.")):
        read_card(expert_copy)


def test_unknown_architecture_is_a_card_error_at_load(expert_copy):
    edit_json(expert_copy / "config.json", lambda c: c.update(architecture="no_such_net"))
    read_card(expert_copy)  # reading a card resolves (and imports) nothing
    with pytest.raises(CardError, match="architecture.*no_such_net"):
        load_expert_folder(expert_copy)


def test_class_count_mismatch_between_card_and_weights(expert_copy):
    edit_json(expert_copy / "config.json",
              lambda c: c.update(num_classes=7) or c["rs_expert"].update(label_names=[]))
    with pytest.raises(CardError, match="class-count mismatch.*num_classes=7.*10 outputs"):
        load_expert_folder(expert_copy)


def test_input_size_mismatch(expert_copy):
    edit_json(expert_copy / "config.json",
              lambda c: c["pretrained_cfg"].update(input_size=[1, 28, 28]))
    with pytest.raises(CardError, match="input_size"):
        load_expert_folder(expert_copy)


def test_sha256_mismatch_is_never_loaded(expert_copy):
    good = read_card(expert_copy).weights_sha256
    edit_json(expert_copy / "config.json", lambda c: c["rs_expert"].update(weights_sha256="0" * 64))
    with pytest.raises(IntegrityError) as e:
        load_expert_folder(expert_copy)
    assert "0" * 64 in str(e.value) and good in str(e.value) and "model.safetensors" in str(e.value)


def test_pinned_hashes_are_checked_too(expert_copy):
    config = sha256_file(expert_copy / "config.json")
    weights = read_card(expert_copy).weights_sha256
    with pytest.raises(IntegrityError, match="recorded by my registration.*weights changed"):
        load_expert_folder(expert_copy, pin=Pin("f" * 64, config, "my registration"))
    with pytest.raises(IntegrityError, match="recorded by my registration.*card.*was edited"):
        load_expert_folder(expert_copy, pin=Pin(weights, "e" * 64, "my registration"))
    assert load_expert_folder(expert_copy, pin=Pin(weights, config, "me")).pin.config_sha256 \
        == config


@pytest.mark.parametrize("claim", ["", None, "abc"])
def test_an_empty_or_malformed_hash_is_an_error_not_a_skipped_check(expert_copy, claim):
    edit_json(expert_copy / "config.json", lambda c: c["rs_expert"].update(weights_sha256=claim))
    with pytest.raises(IntegrityError, match="weights_sha256"):
        load_expert_folder(expert_copy)
    with pytest.raises(IntegrityError, match="sha256 of model.safetensors: missing"):
        load_expert_folder(expert_copy, pin=Pin("", "", "a registration"))


def test_truncated_weights_file(expert_copy):
    weights = expert_copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    edit_json(expert_copy / "config.json",
              lambda c: c["rs_expert"].update(weights_sha256=sha256_file(weights)))
    with pytest.raises(IntegrityError, match="truncated or corrupt"):
        load_expert_folder(expert_copy)


def test_weights_are_loaded_from_the_bytes_that_were_hashed(expert_copy, monkeypatch):
    """No second read: swapping the file after the hash check cannot change what is loaded."""
    import rsrouter.cards.pins as pins_module

    good = load_expert_folder(expert_copy)
    real = pins_module.read_hashed
    weights = expert_copy / "model.safetensors"

    def read_then_swap(path):
        out = real(path)
        if path.name == "model.safetensors":  # an attacker replaces it right after the read
            weights.write_bytes(b"\0" * len(out[0]))
        return out

    monkeypatch.setattr(pins_module, "read_hashed", read_then_swap)
    swapped = load_expert_folder(expert_copy)
    for a, b in zip(good.model.state_dict().values(), swapped.model.state_dict().values()):
        assert torch.equal(a, b)
    assert weights.read_bytes().count(0) == weights.stat().st_size


def test_missing_config(tmp_path):
    with pytest.raises(CardError, match="config.json not found"):
        read_card(tmp_path)


@pytest.mark.parametrize("change, field", [
    (lambda c: c["rs_expert"].update(input_range=1), "rs_expert.input_range"),
    (lambda c: c["pretrained_cfg"].update(std=["a"]), "pretrained_cfg.std"),
    (lambda c: c["pretrained_cfg"].update(input_size=[1, 8.5, 8]), "pretrained_cfg.input_size"),
    (lambda c: c["rs_expert"].update(training=[1]), "rs_expert.training"),
    (lambda c: c["rs_expert"].update(label_names=[1] * 10), "rs_expert.label_names"),
    (lambda c: c["rs_expert"].update(weights_sha256=5), "rs_expert.weights_sha256"),
    (lambda c: c["rs_expert"].update(resize=[16, 16]), "rs_expert.resize"),
    (lambda c: c["rs_expert"].update(resize={"size": [16, 0]}), "rs_expert.resize.size"),
    (lambda c: c["rs_expert"].update(resize={"size": [16, 16], "mode": "area"}),
     "rs_expert.resize.mode"),
    (lambda c: c["rs_expert"].update(resize={"size": [16, 16], "antialias": 1}),
     "rs_expert.resize.antialias"),
    (lambda c: c["rs_expert"].update(resize={"size": [16, 16], "mode": "nearest",
                                             "antialias": True}), "rs_expert.resize.antialias"),
    (lambda c: c["rs_expert"].update(resize={"size": []}), "rs_expert.resize.size"),
    (lambda c: c["rs_expert"].update(resize={"size": [16, 16], "blur": 1}), "rs_expert.resize"),
])
def test_malformed_card_fields_are_card_errors_not_tracebacks(expert_copy, change, field):
    edit_json(expert_copy / "config.json", change)
    with pytest.raises(CardError, match=field.replace(".", r"\.")):
        read_card(expert_copy)


def test_trust_is_per_call_and_never_sticks(expert_copy, tmp_path, monkeypatch):
    """A card naming `module:factory` loads with trust_code=True for that call only."""
    import untrusted

    from rsrouter import load_expert
    from rsrouter.errors import UntrustedCodeError
    from rsrouter.registry.core import Registry

    marker = untrusted.plant(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    edit_json(expert_copy / "config.json", lambda c: c.update(architecture="evilmod:factory"))
    registry = Registry()
    with pytest.raises(UntrustedCodeError, match="evilmod"):
        load_expert(str(expert_copy), registry=registry)
    assert not marker.exists()
    assert load_expert(str(expert_copy), trust_code=True, registry=registry).card.architecture \
        == "evilmod:factory"
    assert marker.exists()
    with pytest.raises(UntrustedCodeError):  # the registry did not keep the opt-in
        load_expert(str(expert_copy), registry=registry)
    with pytest.raises(UntrustedCodeError):
        load_expert_folder(expert_copy)
    with pytest.raises(TypeError, match="collection of module names"):
        load_expert_folder(expert_copy, trust_code="evilmod")
    user = Path(os.environ["RSROUTER_CONFIG_DIR"]) / "registry.yaml"
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text("trusted_modules: [evilmod]\n")  # honoured outside the registry too
    assert load_expert_folder(expert_copy).card.architecture == "evilmod:factory"


def _no_network_built(monkeypatch):
    """Make every real (not meta-device) network build fail the test."""
    import rsrouter.registry.weights as weights

    real = weights.create_model

    def create_model(*args, **kw):
        assert torch.get_default_device().type == "meta", "a network was built"
        return real(*args, **kw)

    monkeypatch.setattr(weights, "create_model", create_model)


@pytest.mark.parametrize("change, field", [
    (lambda c: c.update(num_classes=10**9), "num_classes must be between 2 and 1,000,000"),
    (lambda c: c["pretrained_cfg"].update(input_size=[1, 8, 10**6]), "input_size"),
    (lambda c: c["rs_expert"].update(resize={"size": [10**5, 8]}), "resize.size"),
])
def test_absurd_sizes_are_refused_before_anything_is_built(expert_copy, monkeypatch, change,
                                                          field):
    import rsrouter.models as models

    monkeypatch.setattr(models, "resolve_architecture", lambda *a, **k: pytest.fail("built"))
    edit_json(expert_copy / "config.json",
              lambda c: change(c) or c["rs_expert"].update(label_names=[]))
    with pytest.raises(CardError, match=field):
        load_expert_folder(expert_copy)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(num_classes=11),
     r"num_classes=11, the weights' classifier head head\.3\.weight has 10 outputs"),
    (lambda c: c["pretrained_cfg"].update(input_size=[3, 8, 8], mean=[0.5] * 3, std=[0.5] * 3),
     r"input_size has 3 channels but the weights' first convolution features\.0\.weight takes 1"),
    # a size that would make a 33M-parameter layer of a 5k-parameter network: refused on the
    # meta device, before any memory is allocated
    (lambda c: c["pretrained_cfg"].update(input_size=[1, 1024, 1024]), "input size"),
])
def test_card_sizes_are_checked_against_the_weights_before_building(expert_copy, monkeypatch,
                                                                    change, message):
    _no_network_built(monkeypatch)
    edit_json(expert_copy / "config.json",
              lambda c: change(c) or c["rs_expert"].update(label_names=[]))
    with pytest.raises(CardError, match=message):
        load_expert_folder(expert_copy)


def test_a_timm_card_is_checked_by_its_pretrained_config_layer_names(tmp_path, monkeypatch):
    from rsrouter.cards.expert import ExpertCard
    from rsrouter.models import create_model, known_layers
    from rsrouter.registry.weights import save_expert

    assert known_layers("test_efficientnet") == (("classifier",), "conv_stem")
    card = ExpertCard(architecture="test_efficientnet", num_classes=10, input_size=(1, 32, 32),
                      mean=(0.5,), std=(0.5,), sigma=0.25, dataset="digits")
    save_expert(tmp_path, create_model("test_efficientnet", 10, (1, 32, 32)), card)
    assert load_expert_folder(tmp_path).card.architecture == "test_efficientnet"
    _no_network_built(monkeypatch)
    edit_json(tmp_path / "config.json", lambda c: c.update(num_classes=11))
    with pytest.raises(CardError, match=r"num_classes=11, .*classifier\.weight has 10 outputs"):
        load_expert_folder(tmp_path)


def _router_config(**pretrained) -> dict:
    """A router card's config.json choosing between two pinned expert folders."""
    ref = {"name": "a", "source": "a", "revision": None, "weights_sha256": "0" * 64,
           "config_sha256": "1" * 64, "sigma": 0.25}
    return {"architecture": "cnn_tiny", "num_classes": 2,
            "pretrained_cfg": {"input_size": [1, 8, 8], "mean": [0.5], "std": [0.5],
                               **pretrained},
            "rs_router": {"sigma": 0.5, "dataset": "digits",
                          "experts": [ref, {**ref, "name": "b", "source": "b"}]}}


@pytest.mark.parametrize("pretrained, message", [
    ({"std": [0, 1], "input_size": [1, 8]}, r"pretrained_cfg\.input_size must be \[C, H, W\]"),
    ({"std": [0, 1], "mean": [0.5, 0.5], "input_size": [2, 8, 8]},
     r"pretrained_cfg\.std must be positive, got \[0, 1\]"),
    ({"std": [0.5, 0.5]}, r"one value per input channel \(1\)"),
    ({"std": [float("nan")]}, r"pretrained_cfg\.std must be positive"),
    ({"mean": [float("inf")]}, r"pretrained_cfg\.mean must be finite"),
    ({"input_size": [1, 8, 10**6]}, "beyond rsrouter's limits"),
])
def test_a_router_card_gets_the_header_checks_of_an_expert_card(tmp_path, pretrained, message):
    """One header validator for every card kind: a router card with std [0, 1] and input_size
    [1, 8] is refused, by name, before anything is read beyond its JSON."""
    from rsrouter.cards.router import RouterCard, read_router_card

    assert RouterCard.from_config(_router_config(), "router").num_experts == 2
    (tmp_path / "config.json").write_text(json.dumps(_router_config(**pretrained)))
    with pytest.raises(CardError, match=message):
        read_router_card(tmp_path)


def test_a_router_sigma_must_be_a_positive_number():
    from rsrouter.cards.router import RouterCard

    config = _router_config()
    for sigma in (0, float("inf"), float("nan")):
        config["rs_router"]["sigma"] = sigma
        with pytest.raises(CardError, match=r"rs_router\.sigma must be > 0"):
            RouterCard.from_config(config, "router")
