"""What the pages show of entries: each entry's role, the families of experts on the same
inputs and their headroom (envelope and oracle over exactly the family's experts), flags for
choices made on the test inputs, references drawn apart from certificates, and stale pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsrouter.errors import ResultsError
from rsrouter.leaderboard import plots
from rsrouter.leaderboard.board import build_site, collect_entries
from rsrouter.leaderboard.entries import check_entry
from rsrouter.leaderboard.site import markdown, pages
from rsrouter.leaderboard.views import families, role

ENTRIES = Path(__file__).resolve().parents[1] / "benchmarks" / "external" / "entries"


@pytest.fixture(scope="module")
def field():
    return [{k: v for k, v in e.items() if not k.startswith("_")}
            for e in collect_entries([ENTRIES])]


def _family(entries, benchmark):
    return next(f for f in families(entries) if f.benchmark == benchmark)


def test_roles_and_families_of_the_published_logs(field):
    by = {e["method"]: e for e in field}
    assert role(by["cohen2019-cifar10-resnet110-sigma0.25"]) == "expert"
    assert role(by["ACES macer-sigma0.50 + core, threshold 0.50"]) == "method"
    assert {role(e) for e in field if e["type"] == "reported"} == {"reported"}
    aces = _family(field, "aces2022-cifar10")
    assert aces.experts == 12 and len(aces.methods) == 12
    assert aces.best["method"] == "aces2022-cifar10-smoothadv-sigma1.00"
    assert set(aces.oracle["pool"]) == {e["method"] for e in field if e["benchmark"] ==
                                        "aces2022-cifar10" and role(e) == "expert"}
    # Cohen et al.'s ImageNet logs: 427 inputs at sigma 0.25, 500 at the others: the family
    # of the 500 has no envelope or oracle (none was composed over those inputs)
    cohen = [f for f in families(field) if f.benchmark == "cohen2019-imagenet"]
    assert [f.experts for f in cohen] == [2] and cohen[0].oracle is None
    # no family holds a paper's printed numbers
    assert all(e["type"] != "reported" for f in families(field)
               for e in [f.best, *f.methods, f.envelope, f.oracle] if e)


def test_an_oracle_over_other_experts_is_not_the_familys(field):
    rows = [e for e in field if e["benchmark"] == "cohen2019-cifar10"]
    oracle = next(e for e in rows if e["type"] == "oracle")
    assert _family(rows, "cohen2019-cifar10").oracle is oracle
    partial = {**oracle, "pool": oracle["pool"][:2]}  # composed over a subset: not the family's
    rows = [e for e in rows if e is not oracle] + [partial]
    assert _family(rows, "cohen2019-cifar10").oracle is None


def test_methods_chosen_on_the_test_inputs_are_flagged_in_the_headroom(field):
    rows = [e for e in field if e["benchmark"] == "aces2022-cifar10"]
    top = max((e for e in rows if role(e) == "method"), key=lambda e: e["acr"])
    rows = [e for e in rows if e is not top] + [{**top, "kind": "certificate",
                                                 "chosen_on_test": True}]
    md = markdown(rows)
    line = next(x for x in md.splitlines() if "routed or composed" in x and top["method"] in x)
    assert "| choices made on the test inputs" in line
    page = pages(rows)["cifar10.html"]
    headroom = page.split('<table class="headroom">')[1].split("</table>")[0]
    assert "choices made on the test inputs" in headroom
    overview = pages(rows)["index.html"]  # never the family's best method on the overview
    assert top["method"] not in overview.split("Routing headroom")[1]


def test_kind_must_say_what_type_an_entry_is(field):
    oracle = next(e for e in field if e["type"] == "oracle")
    reported = next(e for e in field if e["type"] == "reported")
    for entry, message in [
            ({**oracle, "kind": "certificate"}, "an oracle is"),
            ({**oracle, "type": "envelope"}, "an envelope is"),
            ({**reported, "type": "external"}, "exactly when type is reported"),
            ({**reported, "acr": 0.5}, "a reported entry has none"),
            ({**reported, "paper": ""}, "paper"),
            ({**oracle, "radii_recomputed": False}, "radii_recomputed")]:
        with pytest.raises(ResultsError, match=message):
            check_entry(json.loads(json.dumps(entry)), "forged")


def test_references_are_drawn_apart_from_certificates(field, monkeypatch):
    """An oracle (of imported logs too) is drawn dashed grey, an envelope as dotted points, a
    paper's printed numbers as crosses; each log as a dash-dotted step curve."""
    axes = []
    real = plots.accuracy_figure

    def spy(*args, **kw):
        fig, ax = real(*args, **kw)
        axes.append(ax)
        return fig, ax

    monkeypatch.setattr(plots, "accuracy_figure", spy)
    rows = [e for e in field if e["benchmark"] in ("cohen2019-cifar10", "sun2026-dualrs-cifar10")]
    plots.curves(rows, "cifar10")
    lines = {line.get_label(): line for ax in axes for line in ax.get_lines()}
    oracle = next(v for k, v in lines.items() if k.startswith("oracle"))
    assert oracle.get_linestyle() == "--" and oracle.get_color() == "0.5"
    envelope = next(v for k, v in lines.items() if k.startswith("envelope"))
    assert envelope.get_linestyle() == "None" and envelope.get_marker() == "o"
    dual = next(v for k, v in lines.items() if k.startswith("Dual RS"))
    assert dual.get_linestyle() == "None" and dual.get_marker() == "x"
    log = next(v for k, v in lines.items() if k.startswith("cohen2019-cifar10-resnet110"))
    assert log.get_linestyle() == "-."


def test_a_rebuild_removes_only_its_own_stale_pages(field, tmp_path):
    site = tmp_path / "site"
    build_site([], site, entries=[e for e in field if e["dataset"] in ("cifar10", "imagenet")])
    assert (site / "imagenet.html").is_file()
    (site / "notes.html").write_text("<html>mine</html>")
    (site / "folder.html").mkdir()
    build_site([], site, entries=[e for e in field if e["dataset"] == "cifar10"])
    assert not (site / "imagenet.html").exists()  # a dataset no longer on the board
    assert (site / "notes.html").read_text() == "<html>mine</html>"  # not one of ours
    assert (site / "folder.html").is_dir()


def test_a_bench_runs_references_count_only_over_exactly_its_experts():
    """A bench run's envelope and oracle name no pool: they are its family's when they are over
    the weights of exactly its experts (the Dual RS bench's are over 3 of its 9)."""
    results = ENTRIES.parents[1] / "results"
    rows = [{k: v for k, v in e.items() if not k.startswith("_")} for e in
            collect_entries([results / "fashion-mnist", results / "fashion-mnist-dualrs"])]
    zoo = _family(rows, "fashion-mnist-zoo")
    assert zoo.experts == 3 and zoo.oracle is not None and zoo.envelope is not None
    dual = _family(rows, "fashion-mnist-dualrs")
    assert dual.experts == 9 and dual.oracle is None and dual.envelope is None
    oracle = next(e for e in rows if e["benchmark"] == "fashion-mnist-dualrs"
                  and e["type"] == "oracle")
    assert len(oracle["experts"]) == 3 and dual.label == "fashion-mnist-dualrs (500 inputs)"


def test_entries_of_earlier_versions_and_malformed_pools(field):
    oracle = next(e for e in field if e["type"] == "oracle")
    older = {k: v for k, v in oracle.items() if k != "radii_recomputed"}  # written before it
    check_entry(json.loads(json.dumps(older)), "older")
    with pytest.raises(ResultsError, match="pool"):
        check_entry(json.loads(json.dumps({**oracle, "pool": [1, 2]})), "forged")
