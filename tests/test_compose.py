"""Envelope and per-input oracle over any imported logs (``rsrouter leaderboard compose``): each
log's recomputed radii kept beside its entry, pinned by sha256, composed only on the same
inputs, never labelled a certificate."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rsrouter.cli import main
from rsrouter.errors import IntegrityError, ResultsError
from rsrouter.leaderboard.board import build_site
from rsrouter.leaderboard.compose import compose

LOGS = Path(__file__).resolve().parents[1] / "benchmarks" / "external" / "logs"
COHEN = LOGS / "locuslab-smoothing" / "data" / "certify"


def _import(out: Path, sigma: str, dataset: str = "cifar10", method: str | None = None) -> Path:
    model, inputs = ("cifar10/resnet110", "every-20") if dataset == "cifar10" else \
        ("imagenet/resnet50", "every-100")
    log = COHEN / model / f"noise_{sigma}" / "test" / f"sigma_{sigma}"
    assert main(["leaderboard", "import-tsv", str(log), "--dataset", dataset, "--sigma", sigma,
                 "--n", "100000", "--n0", "100", "--alpha", "0.01", "--inputs", inputs,
                 "--method", method or f"cohen-{sigma}", "--out", str(out)]) == 0
    return next(out.glob(f"*--{method or f'cohen-{sigma}'}.json"))


@pytest.fixture
def two(tmp_path):
    out = tmp_path / "logs"
    return out, [_import(out, "0.25"), _import(out, "1.00")]


def test_compose_gives_the_envelope_and_oracle_of_the_logs(two, capsys):
    out, files = two
    assert main(["leaderboard", "compose", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 logs on 500 inputs" in printed and "Neither is a certificate" in printed
    composed = {e["type"]: e for e in map(json.loads, map(Path.read_text, out.glob("*.json")))
                if e["type"] in ("envelope", "oracle")}
    members = [json.loads(f.read_text()) for f in files]
    frames = [pd.read_csv(out / m["per_input"]["path"], sep="\t") for m in members]
    envelope, oracle = composed["envelope"], composed["oracle"]
    assert envelope["pool"] == oracle["pool"] == ["cohen-0.25", "cohen-1.00"]
    assert envelope["chosen_on_test"] and oracle["chosen_on_test"]
    assert envelope["kind"].startswith("not a classifier")
    assert oracle["kind"].startswith("not a certificate")
    for i, r in enumerate(envelope["radii"]):
        shares = [((f["correct"] == 1) & (f["radius"] >= r)).mean() for f in frames]
        assert envelope["accuracy"][i] == round(max(shares), 4)
        # by hand: an input counts when some log is right on it with a radius of at least r
        either = ((frames[0]["correct"] == 1) & (frames[0]["radius"] >= r)) | (
            (frames[1]["correct"] == 1) & (frames[1]["radius"] >= r))
        assert oracle["accuracy"][i] == round(either.mean(), 4)
    # the two sigmas trade off, so the oracle is strictly above the envelope somewhere
    assert any(o > e for o, e in zip(oracle["accuracy"], envelope["accuracy"]))
    best = np.maximum(*[np.where(f["correct"] == 1, f["radius"], 0.0) for f in frames])
    assert oracle["acr"] == round(best.mean(), 3)
    site = build_site([out], out.parent / "site")  # the board takes them as they are
    board = json.loads((site / "leaderboard.json").read_text())["entries"]
    assert {e["method"] for e in board} == {"cohen-0.25", "cohen-1.00",
                                            "envelope (not a classifier)",
                                            "oracle (not a certificate)"}
    before = sorted(p.name for p in out.glob("*.json"))
    # again: the composed entries are not inputs
    assert main(["leaderboard", "compose", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.json")) == before


def test_per_input_radii_are_pinned(two):
    out, files = two
    per_input = out / json.loads(files[0].read_text())["per_input"]["path"]
    text = per_input.read_text()
    per_input.write_text(text.replace("\t1\n", "\t0\n", 1))  # one input turned wrong
    with pytest.raises(IntegrityError, match="not the per-input radii"):
        compose([out])
    per_input.unlink()
    with pytest.raises(IntegrityError, match="are missing"):
        compose([out])
    per_input.write_text(text)
    entry = json.loads(files[0].read_text())
    entry["per_input"]["path"] = "../elsewhere.tsv"
    files[0].write_text(json.dumps(entry))
    with pytest.raises(ResultsError, match="leaves"):
        compose([out])
    # forged pairs (file and sha256 agree) that are not the entry's radii: every input right
    # at radius 3, or each right radius moved up to just below the next grid radius (the grid
    # accuracies kept, the ACR and the curve not)
    frame = pd.read_csv(per_input, sep="\t")
    grid = np.array(entry["radii"])
    below_next = grid[np.minimum(np.searchsorted(grid, frame["radius"], side="right"),
                                 len(grid) - 1)] - 1e-4
    moved = frame.assign(radius=np.where(frame["correct"] == 1, np.maximum(
        frame["radius"], np.minimum(below_next, 0.9)), frame["radius"]))
    for forged, message in ((frame.assign(radius=3.0, correct=1), "no certificate gives"),
                            (moved, "another ACR")):
        text = forged.to_csv(sep="\t", index=False)
        (out / "per-input" / "forged.tsv").write_text(text)
        entry["per_input"] = {"path": "per-input/forged.tsv",
                              "sha256": hashlib.sha256(text.encode()).hexdigest()}
        files[0].write_text(json.dumps(entry))
        with pytest.raises(ResultsError, match=message):
            compose([out])


def test_only_logs_on_the_same_inputs_compose(tmp_path, capsys):
    out = tmp_path / "logs"
    one = _import(out, "0.25")
    with pytest.raises(ResultsError, match="at least two logs"):
        compose([out])
    # Cohen et al.'s ImageNet sigma 0.25 log holds 427 of the 500 inputs of the others
    a = _import(tmp_path / "in", "0.25", "imagenet")
    b = _import(tmp_path / "in", "0.50", "imagenet")
    with pytest.raises(ResultsError, match="other inputs"):
        compose([a, b])
    with pytest.raises(ResultsError, match="several datasets"):
        compose([one, b])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResultsError, match="no imported logs"):
        compose([empty])
    # a new user's first try: `bench report` on the folder names the command that does it
    assert main(["bench", "report", str(out)]) == 2
    assert "rsrouter leaderboard compose" in capsys.readouterr().err
