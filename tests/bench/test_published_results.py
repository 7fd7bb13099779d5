"""Every published result folder re-reads and recomposes to identical certificates.

Each benchmark under benchmarks/results/ (and each round's benchmark of the Dual RS run) is
copied, its report removed and rebuilt with `rsrouter bench report` (every row re-checked
against its counts and the count store, the oracle recomputed): the summary and the leaderboard
entries must come back byte for byte (entries of an earlier report: every field they have).
Every certificate method's rows (and the oracle's) are recomposed from the folder's count store
with rsrouter.bench.methods, as `bench run` composed them, and written as it writes them: the
published TSV must be that text, every column but ``time``.
Each expert card's certified accuracy must follow from its published log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rsrouter.bench import methods
from rsrouter.bench.counts import read_counts
from rsrouter.bench.expert_runs import certified_record
from rsrouter.cli import main
from rsrouter.leaderboard.entries import read_entry
from rsrouter.protocol import Protocol
from rsrouter.results.tsv import read_tsv, settings_path, write_tsv

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


@pytest.mark.parametrize("folder", BENCHMARKS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_a_published_benchmarks_rows_recompose_from_its_counts(folder, tmp_path):
    differences = _recomposed_differences(folder, tmp_path)
    assert not differences, "\n".join(differences)


def _recomposed_differences(folder: Path, tmp: Path) -> list[str]:
    """Each method of the benchmark in ``folder`` whose published TSV is not, but for ``time``,
    the text of its rows recomposed from the count store (the first differing lines of each)."""
    bench = json.loads((folder / "bench.json").read_text())
    alpha = bench["config"]["protocol"]["alpha"]
    store = {}
    for name in bench["counts"]:
        settings = json.loads(settings_path(folder / name).read_text())
        store[_model_key(settings["model"])] = read_counts(folder / name, bench["inputs"])
    composed, differences = {}, []
    # experts first, as the harness composes them: an oracle is taken over their rows
    for spec in sorted(bench["config"]["methods"], key=lambda m: m["type"] != "expert"):
        info = json.loads((folder / f"{spec['name']}.method.json").read_text())
        frame = _recompose(info, spec, store, alpha, composed)
        if frame is None:  # an envelope: a selection the report rebuilds (checked above)
            continue
        composed[spec["name"]] = frame
        published = _without_time(folder / f"{spec['name']}.tsv")
        ours = _without_time(write_tsv(frame, tmp / f"{spec['name']}.tsv"))
        if published != ours:
            lines = [f"  line {i + 1}: published {a!r}\n          recomposed {b!r}"
                     for i, (a, b) in enumerate(zip(published, ours)) if a != b]
            differences.append(f"{spec['name']} ({info['type']}): {len(published)} lines "
                               f"published, {len(ours)} recomposed, {len(lines)} differ\n"
                               + "\n".join(lines[:3]))
    return differences


def _model_key(record: dict) -> tuple:
    """The count store's key of a model (as rsrouter.bench.readback keys it)."""
    return record.get("weights_sha256"), record.get("config_sha256"), record.get("sigma")


def _recompose(info: dict, spec: dict, store: dict, alpha: float, composed: dict):
    """A method's rows from the count store, as rsrouter.bench.harness composes them from the
    method's metadata (its models, in their recorded order) and its config."""
    kind = info["type"]
    if kind == "envelope":
        return None
    if kind == "oracle":
        pool = {name: composed[name] for name in info["pool"]}
        frame = methods.oracle_frame(pool)
        frame.insert(5, "time", sum(df["time"].to_numpy() for df in pool.values()))
        frame["forwards"] = sum(df["forwards"].to_numpy() for df in pool.values())
        return frame
    experts = [store[_model_key(e)] for e in info["experts"]]
    names = [e["name"] for e in info["experts"]]
    if kind == "expert":
        return methods.expert_frame(experts[0], alpha)
    if kind == "cascade":
        return methods.cascade_frame(experts, names, alpha, spec["threshold"],
                                     spec["alpha_rule"])
    router = info["router"]
    if kind == "tree":
        return _tree(router, store, experts, names, alpha, spec["alpha_split"])
    assert kind in ("router", "aces"), f"{info['method']}: no recomposition for a {kind}"
    shared = router.get("shares_forward_with")
    args = (store[_model_key(router)], experts, names, alpha,
            info.get("alpha_split", spec["alpha_split"]), router["sigma"])
    kw = {"shares": None if shared is None else names.index(shared)}
    if info.get("certificate") == "lazy-set":
        return methods.lazy_set_frame(*args, margin=info["margin"], **kw)
    if info.get("certificate") == "lazy-set+cascade":
        return methods.fallback_frame(*args, margin=info["margin"], share=info["fallback_share"],
                                      **kw)
    compose = methods.set_frame if info.get("certificate") == "set" else methods.routed_frame
    return compose(*args, **kw)


def _tree(router: dict, store: dict, experts: list, names: list, alpha: float, split: float):
    """A router tree. Its metadata records the groups, not each child's experts: a group of
    several experts is a child's (in the children's order), its experts in the root's order."""
    groups = [next(g for g, members in enumerate(router["groups"]) if name in members)
              for name in names]
    shared = [g for g, members in enumerate(router["groups"]) if len(members) > 1]
    assert len(shared) == len(router["children"]), router["groups"]
    children = [(store[_model_key(child)], child["sigma"],
                 [names.index(name) for name in router["groups"][g]])
                for child, g in zip(router["children"], shared)]
    return methods.tree_frame(store[_model_key(router)], router["sigma"], groups, names,
                              children, {g: i for i, g in enumerate(shared)}, experts, alpha,
                              split)


def _without_time(path: Path) -> list[list[str]]:
    """A TSV's lines as written (floats as text), split into fields, the ``time`` column left
    out."""
    lines = [line.split("\t") for line in path.read_text().splitlines()]
    drop = lines[0].index("time")
    return [fields[:drop] + fields[drop + 1:] for fields in lines]


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
