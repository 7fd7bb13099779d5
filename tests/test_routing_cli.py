"""The routed flow through the command line: router train -> certify --router, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import untrusted
import yaml
from helpers import edit_json

from rsrouter.certify.smoothing import Smooth
from rsrouter.cli import main
from rsrouter.errors import CardError, ConfigError, IntegrityError
from rsrouter.models import create_classifier
from rsrouter.registry.core import Registry
from rsrouter.results.tsv import read_tsv
from rsrouter.routing.config import parse_config
from rsrouter.routing.load import load_routed, load_router
from rsrouter.routing.routed import check_compatible
from rsrouter.training.router import load_config_experts

CONFIG = {
    "experts": ["d025", "d050"],
    "router": {"arch": "cnn_tiny"},
    "labels": {"n": 50, "alpha": 0.01, "subset": 300},
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "schedule": {"type": "constant"},
              "consistency": {"lambda": 1.0, "eta": 0.5}},
    "data": {"dataset": "digits"},
}


@pytest.fixture
def registered(digits_expert, digits_expert_wide):
    reg = Registry()  # project file = the repo's zoo; user file under RSROUTER_CONFIG_DIR (tmp)
    reg.register(digits_expert, "d025")
    reg.register(digits_expert_wide, "d050")
    return reg


def test_router_train_then_certify_routed(registered, tmp_path, capsys):
    cfg = tmp_path / "router.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "router"
    assert main(["router", "train", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    card = json.loads((out / "config.json").read_text())["rs_router"]
    labels, routing = card["labels"], card["training"]["routing"]
    assert f"labels: {labels['kept']} of 300 training inputs kept" in printed
    assert "best expert: d025" in printed and "sends training inputs to: d025" in printed
    assert set(routing) == {"d025", "d050"} and abs(sum(routing.values()) - 1) < 1e-3
    assert card["sigma"] == 0.5  # defaults to the largest expert sigma
    assert [e["name"] for e in card["experts"]] == ["d025", "d050"]
    assert all(len(e["weights_sha256"]) == 64 for e in card["experts"])
    assert (out / "README.md").read_text().startswith("---")
    assert not (out / ".train").exists() and (out / ".labels").is_dir()
    # the same command again finds the finished router
    assert main(["router", "train", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0
    tsv = tmp_path / "routed.tsv"
    args = ["certify", "--router", str(out), "--dataset", "digits", "--n0", "20", "--n", "200",
            "--alpha", "0.01", "--skip", "25", "--batch-size", "1000", "--out", str(tsv),
            "--no-progress"]
    assert main(args) == 0
    df = read_tsv(tsv)
    assert list(df.columns[:6]) == ["idx", "label", "predict", "radius", "correct", "time"]
    assert {"expert", "router_radius", "expert_radius", "router_cA", "router_nA"} <= set(df)
    routed = df[df["predict"] != -1]
    assert (routed["radius"] <= routed["router_radius"] + 1e-9).all()
    assert (routed["radius"] <= routed["expert_radius"] + 1e-9).all()
    assert ((df["alpha_router"] + df["alpha_expert"] - 0.01).abs() < 1e-12).all()
    assert set(df["expert"]) <= {"d025", "d050", "-"}
    assert "routed" in capsys.readouterr().out


def test_router_whose_expert_changed_is_refused(registered, digits_expert, digits_expert_wide,
                                                tmp_path, capsys):
    copy = tmp_path / "wide-copy"
    shutil.copytree(digits_expert_wide, copy)
    registered.remove("d050")
    registered.register(str(copy), "d050")
    cfg = tmp_path / "router.yaml"
    quick = {**CONFIG, "train": {**CONFIG["train"], "epochs": 1}}
    cfg.write_text(yaml.safe_dump(quick))
    out = tmp_path / "router"
    assert main(["router", "train", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0
    assert len(load_routed(out).experts) == 2
    registered.remove("d050")
    registered.register(digits_expert, "d050")  # same name, other weights
    # the router loads the folder it recorded, whatever the name now means ...
    assert load_routed(out).experts[1].pin.weights_sha256 != registered.get("d050").weights_sha256
    # ... and when that folder is gone, the registered name is checked against its record
    recorded = json.loads((out / "config.json").read_text())["rs_router"]["experts"][1]
    assert (out / recorded["source"]).resolve() == copy.resolve()
    shutil.move(copy, tmp_path / "moved-away")
    with pytest.raises(Exception, match="does not match.*recorded by router"):
        load_routed(out)
    tsv = tmp_path / "x.tsv"
    assert main(["certify", "--router", str(out), "--dataset", "digits", "--n", "50",
                 "--max", "5", "--out", str(tsv), "--no-progress"]) == 2
    assert "recorded by router" in capsys.readouterr().err
    assert not tsv.exists()


def test_config_expert_errors(registered, digits_expert, tmp_path):
    with pytest.raises(ConfigError, match=r"experts\[1\] \(nope\): 'nope' is neither"):
        load_config_experts(parse_config({**CONFIG, "experts": ["d025", "nope"]}))
    other = tmp_path / "other"
    shutil.copytree(digits_expert, other)
    config = json.loads((other / "config.json").read_text())
    config["rs_expert"]["dataset"] = "fashion-mnist"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="differ in dataset"):
        load_config_experts(parse_config({**CONFIG, "experts": ["d025", str(other)]}))
    with pytest.raises(ConfigError, match="data.dataset is 'fashion-mnist'"):
        load_config_experts(parse_config({**CONFIG, "data": {"dataset": "fashion-mnist"}}))
    m10 = create_classifier("cnn_tiny", 10, (1, 8, 8), (0.3,), (0.4,))
    m3 = create_classifier("cnn_tiny", 3, (1, 8, 8), (0.3,), (0.4,))
    with pytest.raises(ConfigError, match="class count"):
        check_compatible([Smooth(m10, 10, 0.25), Smooth(m3, 3, 0.5)])
    with pytest.raises(ConfigError, match="input size"):
        check_compatible([Smooth(m10, 10, 0.25, input_shape=(1, 8, 8)),
                          Smooth(m10, 10, 0.5, input_shape=(1, 28, 28))])


def test_router_folder_is_publishable(registered, tmp_path, capsys):
    import subprocess

    cfg = tmp_path / "router.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "epochs": 1}}))
    out = tmp_path / "router"
    assert main(["router", "train", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    assert main(["experts", "push", str(out), "--repo", "org/router",
                 "--git-remote", str(remote)]) == 0
    sha = capsys.readouterr().out.split("at commit ")[1].split()[0]
    files = subprocess.run(["git", "-C", str(remote), "ls-tree", "--name-only", sha],
                           capture_output=True, text=True, check=True).stdout.split()
    assert files == ["README.md", "config.json", "model.safetensors"]  # no .labels, no .train


def _quick_router(tmp_path, experts=("d025", "d050")) -> Path:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(yaml.safe_dump({**CONFIG, "experts": list(experts),
                                   "train": {**CONFIG["train"], "epochs": 1}}))
    out = tmp_path / "router"
    assert main(["router", "train", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0
    return out


def test_a_router_card_naming_code_imports_nothing_without_the_opt_in(registered, tmp_path):
    out = _quick_router(tmp_path)
    edit_json(out / "config.json", lambda c: c.update(architecture="evilmod:factory"))
    marker = untrusted.plant(tmp_path)
    args = ("certify", "--router", str(out), "--dataset", "digits", "--n0", "10", "--n", "50",
            "--max", "3", "--out", str(tmp_path / "routed.tsv"), "--no-progress")
    refused = untrusted.rsrouter(*args, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "evilmod:factory" in refused.stderr and "--trust-code" in refused.stderr
    assert not marker.exists() and not (tmp_path / "routed.tsv").exists()
    done = untrusted.rsrouter(*args, "--trust-code", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert marker.exists() and len(read_tsv(tmp_path / "routed.tsv")) == 3


def test_swapped_expert_weights_are_refused_even_with_blank_card_hashes(registered,
                                                                         digits_expert,
                                                                         digits_expert_wide,
                                                                         tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(digits_expert, a)
    shutil.copytree(digits_expert_wide, b)
    out = _quick_router(tmp_path, [str(a), str(b)])
    assert [e.name for e in load_routed(out).experts] == ["digits-tiny", "digits-tiny-wide"]
    shutil.copy(b / "model.safetensors", a / "model.safetensors")  # a swap, same shapes
    for folder in (a, b):  # and the cards' own claims blanked, so that they cannot object
        edit_json(folder / "config.json", lambda c: c["rs_expert"].update(weights_sha256=""))
    with pytest.raises(IntegrityError, match="model.safetensors.*recorded by router"):
        load_routed(out)


def test_router_records_are_checked(registered, digits_expert, tmp_path):
    out = _quick_router(tmp_path)
    card = out / "config.json"
    original = card.read_text()
    edit_json(card, lambda c: c["rs_router"]["experts"][1].update(sigma=0.3))
    with pytest.raises(IntegrityError, match="sigma 0.3.*has sigma 0.5"):
        load_routed(out)
    for key in ("weights_sha256", "config_sha256"):
        card.write_text(original)
        edit_json(card, lambda c, key=key: c["rs_router"]["experts"][0].update({key: ""}))
        with pytest.raises(CardError, match=rf"experts\[0\]\.{key}: missing"):
            load_routed(out)
    card.write_text(original)
    edit_json(card, lambda c: c["rs_router"].update(weights_sha256=""))
    with pytest.raises(IntegrityError, match="rs_router.weights_sha256: missing"):
        load_routed(out)
    # router training refuses an expert whose card does not pin its weights
    blank = tmp_path / "blank"
    shutil.copytree(digits_expert, blank)
    edit_json(blank / "config.json", lambda c: c["rs_expert"].update(weights_sha256=""))
    with pytest.raises(ConfigError, match=r"experts\[0\].*weights_sha256: missing"):
        load_config_experts(parse_config({**CONFIG, "experts": [str(blank), "d050"]}))


def test_a_router_card_is_checked_like_an_expert_card_before_building(registered, tmp_path,
                                                                      monkeypatch):
    """A router card's header (sizes, normalization) and its number of experts against the
    weights' head are checked before any network is built."""
    from rsrouter.routing import load as load_mod

    out = _quick_router(tmp_path)
    card = out / "config.json"
    original = card.read_text()

    def no_build(*args, **kw):
        raise AssertionError("a network was built")

    monkeypatch.setattr(load_mod, "build_network", no_build)
    for edit, message in [
        (lambda c: c["pretrained_cfg"].update(std=[0]), "std must be positive"),
        (lambda c: c["pretrained_cfg"].update(input_size=[1, 8]), r"must be \[C, H, W\]"),
        (lambda c: c["pretrained_cfg"].update(input_size=[1, 100_000, 100_000]), "beyond"),
        (lambda c: c.update(num_classes=3) or c["rs_router"]["experts"].append(
            dict(c["rs_router"]["experts"][0], name="third")), "num_classes=3"),
    ]:
        card.write_text(original)
        edit_json(card, edit)
        with pytest.raises(CardError, match=message):
            load_router(out)
