"""The leaderboard: entries merged once, published idempotently, and a real browser test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from rsrouter.cli import main
from rsrouter.errors import ResultsError
from rsrouter.leaderboard import collect_entries, merge

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "runs" / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def results(tmp_path_factory, digits_expert, digits_expert_wide):
    """A small digits benchmark (experts, envelope, oracle) and an imported Fashion-MNIST log."""
    tmp = tmp_path_factory.mktemp("board")
    config = {"name": "tiny-digits", "data": {"dataset": "digits"}, "inputs": {"every": 25},
              "protocol": {"n0": 20, "n": 200, "alpha": 0.01}, "radii": [0.0, 0.25, 0.5],
              "methods": [{"type": "expert", "expert": digits_expert},
                          {"type": "expert", "expert": digits_expert_wide},
                          {"type": "envelope"}, {"type": "oracle"}]}
    (tmp / "bench.yaml").write_text(yaml.safe_dump(config))
    assert main(["bench", "run", "--config", str(tmp / "bench.yaml"), "--out",
                 str(tmp / "out"), "--no-progress"]) == 0
    log = ROOT / "benchmarks" / "results" / "cards" / "fashion-mnist"
    log = log / "fashion-mnist-sigma1.00.tsv"
    assert main(["leaderboard", "import-tsv", str(log), "--dataset", "fashion-mnist",
                 "--method", "zoo sigma 1.0 (log)", "--source", "rsrouter 0.1", "--n", "10000",
                 "--alpha", "0.001", "--out", str(tmp / "external")]) == 0
    return tmp


def test_build_merges_entries_once(results, tmp_path):
    site = tmp_path / "site"
    sources = [str(results / "out"), str(results / "external")]
    assert main(["leaderboard", "build", *sources, "--out", str(site)]) == 0
    board = json.loads((site / "leaderboard.json").read_text())["entries"]
    assert len(board) == 5
    assert main(["leaderboard", "build", *sources, *sources, "--out", str(site)]) == 0
    assert json.loads((site / "leaderboard.json").read_text())["entries"] == board
    external = next(e for e in board if e["external"])
    assert external["kind"] == "external, counts not available" and external["inputs"]["count"] \
        == 500
    md = (site / "leaderboard.md").read_text()
    assert "## digits" in md and "## fashion-mnist" in md and "not a certificate" in md
    assert "| choices made on |" in md and "| none |" in md  # where each choice was made
    page = (site / "index.html").read_text()
    assert "<svg" in page and " src=" not in page and "<link" not in page  # nothing fetched
    assert len(merge(collect_entries([site]))) == 5  # a built site is a source too
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ResultsError, match="not a leaderboard entry"):
        collect_entries([bad])


def test_publishing_twice_adds_nothing(results, tmp_path):
    site = tmp_path / "site"
    assert main(["leaderboard", "build", str(results / "out"), "--out", str(site)]) == 0
    web = tmp_path / "web"
    assert main(["leaderboard", "publish", str(site), "--to", str(web)]) == 0
    first = {p.name: p.read_bytes() for p in web.iterdir()}
    assert main(["leaderboard", "publish", str(site), "--to", str(web)]) == 0
    assert {p.name: p.read_bytes() for p in web.iterdir()} == first
    remote = tmp_path / "board.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    for _ in range(2):
        assert main(["leaderboard", "publish", str(site), "--git-remote", str(remote)]) == 0
    log = subprocess.run(["git", "-C", str(remote), "log", "--oneline", "main"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(log) == 1
    # another site merged into the published one: rows are added, none lost or doubled
    other = tmp_path / "other"
    assert main(["leaderboard", "build", str(results / "external"), "--out", str(other)]) == 0
    assert main(["leaderboard", "publish", str(other), "--git-remote", str(remote)]) == 0
    shown = subprocess.run(["git", "-C", str(remote), "show", "main:leaderboard.json"],
                           capture_output=True, text=True, check=True).stdout
    assert len(json.loads(shown)["entries"]) == 5


def test_the_page_in_a_real_browser(results, tmp_path):
    """Headless Chromium (Debian's, installed by the test set-up), an empty profile, no network:
    the tabs, the rows and the plot are shown, and sorting by a radius column reorders rows."""
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    hostile = tmp_path / "hostile"
    log = ROOT / "benchmarks" / "results" / "cards" / "digits" / "digits-sigma0.25.tsv"
    assert main(["leaderboard", "import-tsv", str(log), "--dataset", "x');alert(1);//",
                 "--method", "<script>alert(2)</script>|", "--out", str(hostile)]) == 0
    assert main(["leaderboard", "build", str(results / "out"), str(results / "external"),
                 str(hostile), "--out", str(site)]) == 0
    assert "\\|" in (site / "leaderboard.md").read_text()
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: run ./scripts/test"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_context(viewport={"width": 1300, "height": 1000}).new_page()
        requests, dialogs = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto((site / "index.html").as_uri())
        tabs = page.locator(".tabs button")
        assert tabs.all_inner_texts() == ["digits", "fashion-mnist", "x');alert(1);//"]
        digits = page.locator("section[data-tab='digits']")
        assert digits.is_visible() and not page.locator(
            "section[data-tab='fashion-mnist']").is_visible()
        assert digits.locator("tbody tr").count() == 4
        assert digits.locator(".curves svg").is_visible()

        def column(name):
            index = digits.locator("thead th").all_inner_texts().index(name)
            return [cell.get_attribute("data-v") for cell in
                    digits.locator(f"tbody tr td:nth-child({index + 1})").all()]

        digits.locator("thead th", has_text="r=0.25").click()
        values = [float(v) for v in column("r=0.25")]
        assert values == sorted(values, reverse=True)
        digits.locator("thead th", has_text="r=0.25").click()
        assert [float(v) for v in column("r=0.25")] == sorted(values)
        page.screenshot(path=str(ARTIFACTS / "leaderboard-digits.png"), full_page=True)
        tabs.nth(1).click()
        fashion = page.locator("section[data-tab='fashion-mnist']")
        assert fashion.is_visible() and fashion.locator("tbody tr.external").count() == 1
        page.screenshot(path=str(ARTIFACTS / "leaderboard-fashion-mnist.png"), full_page=True)
        tabs.nth(2).click()  # a hostile name is text, never code
        assert page.locator("section[data-tab=\"x');alert(1);//\"]").is_visible()
        browser.close()
    assert dialogs == []
    assert all(url.startswith("file://") for url in requests)
    assert (ARTIFACTS / "leaderboard-digits.png").stat().st_size > 20_000
