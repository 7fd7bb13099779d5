"""Every published result folder re-reads and recomposes to identical certificates.

Each benchmark under benchmarks/results/ (and each round's benchmark of the Dual RS run) is
copied, its report removed and rebuilt with `rsrouter bench report` (every row re-checked
against its counts and the count store, the oracle recomputed): the summary and the leaderboard
entries must come back byte for byte (entries of an earlier report: every field they have).
Each expert card's certified accuracy must follow from its published log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rsrouter.bench.expert_runs import certified_record
from rsrouter.cli.main import main
from rsrouter.leaderboard.entries import read_entry
from rsrouter.protocol import Protocol
from rsrouter.results.tsv import read_tsv, settings_path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
BENCHMARKS = sorted(path.parent for path in RESULTS.glob("**/bench.json"))
REPORT = ("summary.csv", "summary.json", "summary.md", "envelope.tsv")
CARD_LOGS = sorted(RESULTS.glob("cards/*/*.tsv"))


def test_every_published_folder_is_checked():
    names = {path.relative_to(RESULTS).parts[0] for path in [*BENCHMARKS, *CARD_LOGS]}
    assert names == {path.name for path in RESULTS.iterdir() if path.is_dir()}


@pytest.mark.parametrize("folder", BENCHMARKS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_a_published_benchmark_rebuilds_to_the_same_report(folder, tmp_path, capsys):
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    for name in REPORT:
        (copy / name).unlink(missing_ok=True)
    shutil.rmtree(copy / "entries")
    assert main(["bench", "report", str(copy)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == (folder / "summary.md").read_text() + "\n"
    for name in REPORT:
        if (folder / name).exists():
            assert (copy / name).read_bytes() == (folder / name).read_bytes(), name
    published = sorted(p.name for p in (folder / "entries").iterdir())
    assert sorted(p.name for p in (copy / "entries").iterdir()) == published
    for name in published:
        old, new = (read_entry(f / "entries" / name) for f in (folder, copy))
        assert _within(_results(old), _results(new)), name  # keys recomputed from content
        if set(old) == set(new):
            assert (copy / "entries" / name).read_bytes() == \
                (folder / "entries" / name).read_bytes()


def _results(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if not k.startswith("_")}


def _within(old, new) -> bool:
    """Every field of ``old`` is in ``new`` with the same value (an entry of an earlier report,
    such as the Dual RS rounds', lacks fields added since: ``certificate``, ``inputs.sha256``)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _within(v, new[k])
                                             for k, v in old.items())
    return old == new


@pytest.mark.parametrize("log", CARD_LOGS, ids=lambda p: p.name)
def test_a_cards_certified_accuracy_follows_from_its_log(log):
    """benchmarks/results/cards/DATASET/DATASET-sigmaS.tsv is experts/DATASET/sigma-S's log."""
    dataset, sigma = log.stem.rsplit("-sigma", 1)
    card = json.loads((ROOT / "experts" / dataset / f"sigma-{sigma}" / "config.json").read_text())
    settings = json.loads(settings_path(log).read_text())
    rows = read_tsv(log)
    protocol = Protocol(n0=settings["n0"], n=settings["n"], alpha=settings["alpha"])
    assert certified_record(rows, protocol, num_inputs=len(rows),
                            step=max(1, settings["data"]["length"] // len(rows))) == \
        card["rs_expert"]["certified"]
