"""The leaderboard: entries merged once, published idempotently, and a real browser test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import ROOT

from rsrouter.certify.bounds import radii_from_counts
from rsrouter.cli import main
from rsrouter.errors import ResultsError
from rsrouter.leaderboard.board import build_site, collect_entries, merge
from rsrouter.leaderboard.entries import read_entry
from rsrouter.leaderboard.logs import import_tsv
from rsrouter.results.logs import counts_from_radii

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
    assert external["kind"].startswith("external: counts stored in the log")
    assert external["inputs"]["count"] == 500 and external["radii_recomputed"]
    md = (site / "leaderboard.md").read_text()
    assert "## digits" in md and "## fashion-mnist" in md and "not a certificate" in md
    assert "| choices made on |" in md and "| none |" in md  # where each choice was made
    index = (site / "index.html").read_text()  # the overview links a page per dataset
    assert '<a href="digits.html">' in index and '<a href="fashion-mnist.html">' in index
    digits, fashion = ((site / f"{d}.html").read_text() for d in ("digits", "fashion-mnist"))
    for page in (index, digits, fashion):
        assert " src=" not in page and "<link" not in page  # nothing fetched
    assert digits.count("<svg") == 2 and '<div class="cost"><svg' in digits  # curves, cost
    assert "Not drawn" not in digits  # every bench entry has its forward count
    # the routing headroom of the digits family: best expert, envelope, oracle
    headroom = digits.split('<table class="headroom">')[1].split("</table>")[0]
    assert "best single expert" in headroom and "oracle (not a certificate)" in headroom
    # an imported log has no forward count: no cost plane, and the caption says why
    assert fashion.count("<svg") == 1 and 'class="cost"' not in fashion
    assert "Not drawn, without a forward count (1): zoo sigma 1.0 (log) [" in fashion
    assert "Routing headroom" not in fashion  # one log is no family
    assert len(merge(collect_entries([site]))) == 5  # a built site is a source too
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "other"}')
    with pytest.raises(ResultsError, match="not a leaderboard entry"):
        collect_entries([bad])


def test_the_cost_plane_draws_certificates_and_references_apart(results, tmp_path,
                                                                 monkeypatch):
    """One point per certificate with a forward count, in units of one expert's n0 + n; the
    oracle's ACR a reference line; the envelope no point; the benchmark named by colour."""
    from rsrouter.leaderboard import plots

    drawn = []
    real = plots.cost_figure

    def spy(points, **kw):
        drawn.append((points, kw))
        return real(points, **kw)

    monkeypatch.setattr(plots, "cost_figure", spy)
    assert main(["leaderboard", "build", str(results / "out"), str(results / "external"),
                 "--out", str(tmp_path / "site")]) == 0
    [(points, kw)] = drawn  # digits only: the imported log has no forward count
    entries = {e["method"]: e for e in
               json.loads((tmp_path / "site" / "leaderboard.json").read_text())["entries"]}
    experts = sorted(m for m, e in entries.items() if e["type"] == "expert")
    assert sorted(p.label for p in points) == experts and len(experts) == 2
    assert all(p.cost == entries[p.label]["forwards_per_input"] / 220 for p in points)
    assert all(p.cost == 1.0 for p in points)  # an expert spends n0 + n
    assert kw["oracles"] == ((entries["oracle"]["acr"], "C0"),)
    assert kw["groups"] == (("tiny-digits", "C0"),)


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
    the overview links a page per dataset; its rows, headroom, curves and cost plane are shown,
    sorting by a radius column reorders rows, and reported-only numbers stay apart."""
    from playwright.sync_api import sync_playwright

    site = tmp_path / "site"
    hostile = tmp_path / "hostile"
    log = ROOT / "benchmarks" / "results" / "cards" / "digits" / "digits-sigma0.25.tsv"
    assert main(["leaderboard", "import-tsv", str(log), "--dataset", "digits", "--benchmark",
                 "x');alert(1);//", "--method", "<script>alert(2)</script>|", "--paper",
                 "<img src=x onerror=alert(3)>", "--out", str(hostile)]) == 0
    assert main(["leaderboard", "build", str(results / "out"), str(results / "external"),
                 str(hostile), "--out", str(site)]) == 0
    assert "\\|" in (site / "leaderboard.md").read_text()
    field = tmp_path / "field"  # the field's published logs and reported numbers
    assert main(["leaderboard", "build", str(ROOT / "benchmarks" / "external" / "entries"),
                 "--out", str(field)]) == 0
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
        assert page.locator("nav a").all_inner_texts() == ["overview", "digits",
                                                           "fashion-mnist"]
        page.locator("table a", has_text="digits").first.click()  # the overview links each page
        assert page.url.endswith("/digits.html")
        table = page.locator("table.sortable")
        assert table.locator("tbody tr").count() == 5  # with the hostile import
        assert page.locator("table.headroom").is_visible()
        assert page.locator(".curves svg").first.is_visible()
        assert page.locator(".cost svg").is_visible()  # the cost plane, below the curves
        assert page.locator(".cost svg").bounding_box()["y"] > \
            page.locator(".curves svg").last.bounding_box()["y"]

        def column(name):
            index = table.locator("thead th").all_inner_texts().index(name)
            return [cell.get_attribute("data-v") for cell in
                    table.locator(f"tbody tr td:nth-child({index + 1})").all()]

        table.locator("thead th", has_text="r=0.25").click()
        values = [float(v) for v in column("r=0.25")]
        assert values == sorted(values, reverse=True)
        table.locator("thead th", has_text="r=0.25").click()
        assert [float(v) for v in column("r=0.25")] == sorted(values)
        page.screenshot(path=str(ARTIFACTS / "leaderboard-digits.png"), full_page=True)
        hostile_row = table.locator("tbody tr.external").inner_text()  # text, never code
        assert "<script>alert(2)</script>|" in hostile_row and "x');alert(1);//" in hostile_row
        assert "paper: <img src=x onerror=alert(3)>" in hostile_row
        page.locator("nav a", has_text="fashion-mnist").click()
        assert page.url.endswith("/fashion-mnist.html")
        assert page.locator("table.sortable tbody tr.external").count() == 1
        assert page.locator(".cost svg").count() == 0  # only an imported log: no forwards
        assert "Not drawn, without a forward count (1)" in page.locator(".caption").last \
            .inner_text()
        page.screenshot(path=str(ARTIFACTS / "leaderboard-fashion-mnist.png"), full_page=True)
        # the published CIFAR-10 page: families' headroom, recomputed rows sortable, the
        # reported-only rows in their own table, never sorted among them
        page.goto((field / "cifar10.html").as_uri())
        headroom = page.locator("table.headroom").inner_text()
        assert "ACES macer-sigma0.50 + core, threshold 0.50" in headroom
        assert headroom.count("oracle (not a certificate)") >= 4
        rows = page.locator("table.sortable").first.locator("tbody tr")
        count = rows.count()
        page.locator("table.sortable").first.locator("thead th", has_text="r=0.5").first.click()
        assert rows.count() == count and "Dual RS" not in page.locator(
            "table.sortable").first.inner_text()
        reported = page.locator("h2", has_text="Reported, not recomputed")
        assert reported.is_visible()
        apart = page.locator("table:not(.sortable):not(.headroom)").last
        assert apart.locator("tbody tr").count() == 2 and "Dual RS" in apart.inner_text()
        assert "reported, not recomputed" in apart.inner_text()
        page.screenshot(path=str(ARTIFACTS / "leaderboard-cifar10.png"), full_page=False)
        browser.close()
    assert dialogs == []
    assert all(url.startswith("file://") for url in requests)
    assert (ARTIFACTS / "leaderboard-digits.png").stat().st_size > 20_000


# ---- a board others publish to: nothing forged, nothing wiped --------------------------------


def _variant(log: Path, tmp: Path, k: int) -> Path:
    """A copy of ``log`` that differs in its first row's ``time`` only: another file (another
    sha256) with the same certificates, so that one log may be imported under several names."""
    lines = log.read_text().splitlines()
    header, first = lines[0].split("\t"), lines[1].split("\t")
    first[header.index("time")] = str(100 + k)
    path = tmp / f"variant{k}-{log.name}"
    path.write_text("\n".join([lines[0], "\t".join(first), *lines[2:]]) + "\n")
    return path


def _cohen_log(path: Path, n_a: np.ndarray, n: int, alpha: float, sigma: float, fmt: str) -> None:
    """A log in Cohen et al.'s format (no counts; radii printed with ``fmt``) from counts."""
    radius = radii_from_counts(n_a, n, alpha, sigma)
    predict = np.where(radius > 0, 1, -1)
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    lines += [f"{i}\t1\t{p}\t{format(r, fmt)}\t{int(p == 1)}\t0.1"
              for i, (p, r) in enumerate(zip(predict, radius))]
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", [".3", ".4f"])
def test_import_tsv_recomputes_every_radius_from_counts(tmp_path, fmt):
    """A published log's radii are turned back into counts under the declared protocol (the
    smallest nA whose radius prints as logged: Cohen's certify.py prints {:.3}, so "1.0" and
    "0.5" are 3 significant digits, not 1) and recomputed; a radius that no count can give is
    refused with its row."""
    n, alpha, sigma = 100_000, 0.001, 0.5
    n_a = np.random.default_rng(0).integers(45_000, n + 1, 300)
    n_a[:4] = [99_996, 99_300, 89_160, 69_150]  # radii that print as "1.0"-like round numbers
    exact = radii_from_counts(n_a, n, alpha, sigma)
    log = tmp_path / "cohen.tsv"
    _cohen_log(log, n_a, n, alpha, sigma, fmt)
    out = tmp_path / "entries"
    assert main(["leaderboard", "import-tsv", str(log), "--dataset", "cifar10", "--method",
                 "cohen", "--n", str(n), "--alpha", str(alpha), "--sigma", str(sigma),
                 "--out", str(out)]) == 0
    entry = read_entry(next(out.glob("*.json")))
    assert "recovered from published radii" in entry["kind"] and not entry["counts_available"]
    logged = [line.split("\t")[3] for line in log.read_text().splitlines()[1:]]
    recovered = counts_from_radii(logged, np.where(exact > 0, 1, -1), n, alpha, sigma, "log")
    again = radii_from_counts(recovered, n, alpha, sigma)
    assert all(format(r, fmt) == t for r, t, e in zip(again, logged, exact) if e > 0)
    assert (again <= exact + 1e-12).all()  # the smallest count that prints as logged
    assert entry["acr"] == round(float(np.mean(again)), 3)
    curve = [float(np.mean((again >= r) & (exact > 0))) for r in entry["radii"]]
    assert entry["accuracy"] == [round(a, 4) for a in curve]
    assert entry["protocol"] == {"n0": None, "n": n, "alpha": alpha, "sigma": sigma}
    # 100 rows of radius 1e6 at n = 100: no count gives that (today: ACR 1,000,000)
    forged = tmp_path / "forged.tsv"
    forged.write_text("idx\tlabel\tpredict\tradius\tcorrect\ttime\n" + "".join(
        f"{i}\t1\t1\t1000000.0\t1\t0.1\n" for i in range(100)))
    with pytest.raises(ResultsError, match=r"row 1: radius 1000000.0 is beyond the largest "
                                           r"radius n = 100 samples can certify at sigma 0.5 "
                                           r"\(0.750.*needs sigma >= 6.66e\+05"):
        import_tsv(forged, dataset="cifar10", method="forged", out=tmp_path / "f", n=100,
                   alpha=0.001, sigma=0.5)
    with pytest.raises(ResultsError, match="a noise level in pixel units"):  # nor via sigma
        import_tsv(forged, dataset="cifar10", method="forged", out=tmp_path / "f", n=100,
                   alpha=0.001, sigma=666455.6)
    assert not (tmp_path / "f").exists()
    with pytest.raises(ResultsError, match="--sigma"):  # no protocol: nothing to recompute
        import_tsv(log, dataset="cifar10", method="x", out=tmp_path / "g", n=n, alpha=alpha)
    with pytest.raises(ResultsError, match=r"every row fits .*n = 100000, alpha = 0.001"):
        import_tsv(log, dataset="cifar10", method="x", out=tmp_path / "g", n=1000, alpha=alpha,
                   sigma=sigma)  # a wrong n: the error says which usual protocol fits


def test_import_tsv_with_counts_checks_and_shows_them(tmp_path):
    """A log with its counts: the protocol (sigma included) comes from them, a declared value
    must agree, and an absurd sigma is refused."""
    card = ROOT / "benchmarks" / "results" / "cards" / "digits" / "digits-sigma0.25.tsv"
    with pytest.raises(ResultsError, match="--n 500 but its counts were made with n = 10000"):
        import_tsv(card, dataset="digits", method="x", out=tmp_path / "h", n=500)
    with pytest.raises(ResultsError, match="--sigma 0.5 but its counts were made with sigma"):
        import_tsv(card, dataset="digits", method="x", out=tmp_path / "h", sigma=0.5)
    entry = read_entry(import_tsv(card, dataset="digits", method="x", out=tmp_path / "h"))
    assert entry["protocol"] == {"n0": 100, "n": 10000, "alpha": 0.001, "sigma": 0.25}
    assert entry["counts_available"]
    df = pd.read_csv(card, sep="\t")
    df = df.assign(sigma=666667.0, nA=df["n"], cA=df["label"], predict=df["label"], correct=1)
    df["radius"] = radii_from_counts(df["nA"], df["n"], df["alpha"], df["sigma"])
    forged = tmp_path / "forged.tsv"
    df.to_csv(forged, sep="\t", index=False)
    with pytest.raises(ResultsError, match="made at sigma 666667"):
        import_tsv(forged, dataset="digits", method="forged", out=tmp_path / "f")
    site = tmp_path / "site"
    build_site([tmp_path / "h"], site)
    assert "sigma = 0.25" in (site / "leaderboard.md").read_text()  # shown with n and alpha


def _entry_file(results: Path) -> Path:
    return sorted((results / "out" / "entries").glob("*.json"))[0]


def test_keys_come_from_content_and_dates_decide_nothing(results, tmp_path):
    """A copied key cannot replace another team's row: keys are derived from what an entry
    measured, a different entry under a taken name or key is refused unless --replace, and a
    date in the future is refused."""
    site = tmp_path / "site"
    assert main(["leaderboard", "build", str(results / "out"), "--out", str(site)]) == 0
    board = json.loads((site / "leaderboard.json").read_text())["entries"]
    victim = json.loads(_entry_file(results).read_text())
    forged = {**victim, "accuracy": [1.0] * len(victim["accuracy"]), "date": "2026-01-01"}
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "e.json").write_text(json.dumps(forged))  # its step curve gives it away
    with pytest.raises(ResultsError, match="curve: not the accuracy the entry reports at r = 0"):
        collect_entries([evil])
    forged = {k: v for k, v in forged.items() if k != "curve"} | {"date": "9999-12-31"}
    (evil / "e.json").write_text(json.dumps(forged))
    with pytest.raises(ResultsError, match="date '9999-12-31' is not a past ISO date"):
        collect_entries([evil])
    forged["date"] = "2026-01-01"
    (evil / "e.json").write_text(json.dumps(forged))
    assert main(["leaderboard", "publish", str(_site(evil, tmp_path)), "--to", str(site)]) == 2
    assert json.loads((site / "leaderboard.json").read_text())["entries"] == board
    with pytest.raises(ResultsError, match="same measurement .* with other results"):
        merge([*board, *collect_entries([evil])])
    # the same name for another measurement (a key of its own, whatever the file says)
    other = {**victim, "key": victim["key"], "protocol": {**victim["protocol"], "n0": 7}}
    (evil / "e.json").write_text(json.dumps(other))
    assert collect_entries([evil])[0]["key"] != victim["key"]
    with pytest.raises(ResultsError, match="another measurement under the same name"):
        merge([*board, *collect_entries([evil])])
    # --replace replaces; an identical copy with another date is one row
    assert main(["leaderboard", "publish", str(_site(evil, tmp_path)), "--to", str(site),
                 "--replace"]) == 0
    after = json.loads((site / "leaderboard.json").read_text())["entries"]
    assert len(after) == len(board) and {"n0": 7, "n": 200, "alpha": 0.01, "seed": 0} in [
        e["protocol"] for e in after]
    copy = {**victim, "date": "2020-01-01", "rsrouter_version": "0.0.1"}
    assert len(merge([victim, copy])) == 1


def _site(entries: Path, tmp_path: Path) -> Path:
    site = tmp_path / f"site-of-{entries.name}"
    build_site([entries], site)
    return site


def _git_shim(tmp_path: Path, fail: str) -> Path:
    """A ``git`` first on PATH that fails the first command containing ``fail`` once (a
    transient network error), then runs the real git."""
    shim = tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("git")
    (shim / "git").write_text(
        f'#!/bin/sh\ncase " $* " in *" {fail} "*)\n'
        f'  if [ ! -e "{shim}/failed" ]; then touch "{shim}/failed"; '
        'echo "fatal: unable to access remote (transient)" >&2; exit 128; fi;;\nesac\n'
        f'exec {real} "$@"\n')
    (shim / "git").chmod(0o755)
    return shim


def test_git_publish_aborts_on_a_failed_fetch_and_passes_the_remote_after_dashdash(
        results, tmp_path, monkeypatch):
    site = _site(results / "out", tmp_path)
    remote = tmp_path / "board.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    assert main(["leaderboard", "publish", str(site), "--git-remote", str(remote)]) == 0
    before = _remote_board(remote)
    other = _site(results / "external", tmp_path)
    monkeypatch.setenv("PATH", f"{_git_shim(tmp_path, 'fetch')}:{os.environ['PATH']}")
    assert main(["leaderboard", "publish", str(other), "--git-remote", str(remote)]) == 2
    assert _remote_board(remote) == before  # nothing published over a board it could not read
    assert main(["leaderboard", "publish", str(other), "--git-remote", str(remote)]) == 0
    assert len(_remote_board(remote)) == len(before) + 1
    pwned = tmp_path / "pwned"
    for remote_arg in (f"--git-remote=--upload-pack=touch {pwned}", "--git-remote=-x"):
        assert main(["leaderboard", "publish", str(site), remote_arg]) == 2
    assert not pwned.exists()


def _remote_board(remote: Path) -> list[dict]:
    shown = subprocess.run(["git", "-C", str(remote), "show", "main:leaderboard.json"],
                           capture_output=True, text=True, check=True).stdout
    return json.loads(shown)["entries"]


def test_concurrent_git_publishes_lose_nothing(results, tmp_path, monkeypatch):
    """Publisher A reads the board, B publishes in between, then A pushes: A's push is refused
    (compare-and-swap on the branch) and redone on B's commit, so both rows stay."""
    from rsrouter.leaderboard import publishing as leaderboard

    remote = tmp_path / "board.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    first, second = _site(results / "out", tmp_path), _site(results / "external", tmp_path)
    real, calls = leaderboard.build_site, []

    def build_site(*args, **kw):
        calls.append(1)
        if len(calls) == 1:  # A has read the (empty) board: B publishes now
            leaderboard.publish(second, git_remote=str(remote))
        return real(*args, **kw)

    monkeypatch.setattr(leaderboard, "build_site", build_site)
    leaderboard.publish(first, git_remote=str(remote))
    methods = {e["method"] for e in _remote_board(remote)}
    assert methods == {e["method"] for site in (first, second)
                       for e in json.loads((site / "leaderboard.json").read_text())["entries"]}
    log = subprocess.run(["git", "-C", str(remote), "log", "--oneline", "main"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(log) == 2


def test_names_are_plain_text_in_plots_and_markdown(results, tmp_path):
    """A method named with matplotlib math or HTML breaks nothing and runs nothing."""
    log = ROOT / "benchmarks" / "results" / "cards" / "digits" / "digits-sigma0.25.tsv"
    names = tmp_path / "names"
    for k, method in enumerate((r"$\frac{", "<img src=x onerror=alert(1)>", "_hidden",
                                "a [link](javascript:x)")):
        import_tsv(_variant(log, tmp_path, k), dataset="digits", method=method, out=names)
    site = tmp_path / "site"
    assert main(["leaderboard", "build", str(results / "out"), str(names), "--out",
                 str(site)]) == 0
    md = (site / "leaderboard.md").read_text()
    assert "<img" not in md and "&lt;img src=x onerror=alert\\(1\\)&gt;" not in md
    assert "&lt;img src=x onerror=alert(1)&gt;" in md and "\\[link\\]" in md
    assert r"\$\\frac{" not in md and "$\\\\frac{" in md  # plain text: escaped, not math
    page = (site / "digits.html").read_text()
    assert "<img src=x" not in page
    # a bench entry so named is a point of the cost plane: its name is text, not math or HTML
    entry = next(e for e in (json.loads(f.read_text()) for f in
                             sorted((results / "out" / "entries").glob("*.json")))
                 if e["type"] == "expert")
    named = tmp_path / "named.json"
    named.write_text(json.dumps({**entry, "method": r"$\frac{<script>alert(3)</script>"}))
    assert main(["leaderboard", "build", str(results / "out"), str(named), "--out",
                 str(site)]) == 0
    page = (site / "digits.html").read_text()
    assert "alert(3)" in page.split('<div class="cost">')[1]  # drawn
    assert "<script>alert(3)" not in page and "&lt;script&gt;alert(3)" in page
    # later publishes still work, and bench plots and `summary --plot` take such names too
    assert main(["leaderboard", "publish", str(site), "--to", str(tmp_path / "web")]) == 0
    tsv = tmp_path / "x.tsv"
    shutil.copy(log, tsv)
    assert main(["summary", f"$x^{{={tsv}", "--plot", str(tmp_path / "c.png")]) == 0


@pytest.mark.parametrize("forge, message", [
    (lambda e: e.update(acr=1e6), "ACR 1000000.0 exceeds what its protocol allows"),
    (lambda e: e.update(radii=[0.0, 5.0, 10.0], accuracy=[1.0] * 3, ci95=[[0, 1]] * 3),
     "certified at r = 5, beyond the largest radius"),
    (lambda e: e.update(accuracy=sorted(e["accuracy"])), "cannot grow with the radius"),
    (lambda e: e.update(abstain=-50), "malformed field.*abstain"),
    (lambda e: e["inputs"].update(count=True), "malformed field.*inputs"),
    (lambda e: e["accuracy"].__setitem__(0, 0.123456), "share of its 20 inputs"),
    (lambda e: e.update(data=[1, 2]), r"malformed field.*'data'"),
    (lambda e: e.update(router={"children": 3}), r"malformed field.*router.children"),
])
def test_a_hand_written_entry_with_impossible_numbers_is_refused(results, tmp_path, forge,
                                                                 message):
    entry = json.loads(_entry_file(results).read_text())
    forge(entry)
    path = tmp_path / "e.json"
    path.write_text(json.dumps(entry))
    with pytest.raises(ResultsError, match=message):
        collect_entries([path])


def test_intervals_are_recomputed_and_names_compared_as_read(results, tmp_path):
    entry = json.loads(_entry_file(results).read_text())
    wide = {**entry, "ci95": [[0.0, 1.0]] * len(entry["ci95"])}
    (tmp_path / "e.json").write_text(json.dumps(wide))
    assert collect_entries([tmp_path / "e.json"])[0]["ci95"] == entry["ci95"]
    lookalike = {**entry, "method": f"  {entry['method'].upper()} ", "note": "",
                 "protocol": {**entry["protocol"], "seed": 9}}
    (tmp_path / "e.json").write_text(json.dumps(lookalike))
    with pytest.raises(ResultsError, match="another measurement under the same name"):
        merge([*collect_entries([results / "out"]), *collect_entries([tmp_path / "e.json"])])


def test_a_board_of_the_previous_version_takes_the_same_results_again(results, tmp_path):
    """Entries written before keys were derived from content (no inputs hash, no certificate
    field, their own key): publishing the same results onto them adds nothing."""
    site = _site(results / "out", tmp_path)
    new = json.loads((site / "leaderboard.json").read_text())
    def before(e: dict) -> dict:
        inputs = {k: e["inputs"][k] for k in ("spec", "count")}
        return {**{k: v for k, v in e.items() if k != "certificate"},
                "key": "0123456789abcdef", "inputs": inputs, "seconds_per_input": 9.9}

    old = {**new, "entries": [before(e) for e in new["entries"]]}
    web = tmp_path / "web"
    web.mkdir()
    (web / "leaderboard.json").write_text(json.dumps(old))
    assert main(["leaderboard", "publish", str(site), "--to", str(web)]) == 0
    assert len(json.loads((web / "leaderboard.json").read_text())["entries"]) == len(
        new["entries"])


def test_entry_files_of_different_names_never_collide(tmp_path):
    log = ROOT / "benchmarks" / "results" / "cards" / "digits" / "digits-sigma0.25.tsv"
    out = tmp_path / "entries"
    for k, method in enumerate(("Cohen sigma=0.25", "Cohen sigma 0.25", "plain")):
        import_tsv(_variant(log, tmp_path, k), dataset="digits", method=method, out=out)
    names = sorted(p.name for p in out.glob("*.json"))
    assert len(names) == 3 and "digits-external--plain.json" in names


def test_what_an_entry_must_say_to_be_checked(results, tmp_path):
    """An entry without n, alpha and its sigmas cannot be checked, so it is refused; sigmas
    given as a list are checked and shown."""
    entry = json.loads(_entry_file(results).read_text())
    path = tmp_path / "e.json"
    for forge, message in [
        ({"protocol": {}}, r"protocol\.n"), ({"protocol": None}, "'protocol'"),
        ({"protocol": {**entry["protocol"], "n": "10000"}}, r"protocol\.n"),
        ({"protocol": {**entry["protocol"], "alpha": 1}}, r"protocol\.alpha"),
        ({"experts": [], "protocol": {**entry["protocol"], "sigma": [1, [2]]}}, "sigma"),
        ({"experts": [{**entry["experts"][0], "sigma": 1e6}]}, "sigma"),
        ({"method": "routed\u200b"}, "method"),
    ]:
        path.write_text(json.dumps({**entry, **forge}))
        with pytest.raises(ResultsError, match=message):
            collect_entries([path])
    shifted = {**entry, "radii": entry["radii"][1:], "accuracy": entry["accuracy"][1:],
               "ci95": entry["ci95"][1:], "acr": 50.0}  # the ACR is bounded without r = 0 too
    path.write_text(json.dumps(shifted))
    with pytest.raises(ResultsError, match="ACR 50.0 exceeds"):
        collect_entries([path])
    listed = {**entry, "experts": [], "protocol": {**entry["protocol"], "sigma": [0.25, 0.5]}}
    path.write_text(json.dumps(listed))
    site = tmp_path / "site"
    build_site([path], site)
    assert "sigma = 0.25, 0.5" in (site / "leaderboard.md").read_text()


def test_replace_takes_an_identical_copy_with_its_metadata(results, tmp_path):
    entry = json.loads(_entry_file(results).read_text())
    copy = {**entry, "note": "published by the real owner"}
    with pytest.warns(UserWarning, match="the board keeps its own"):
        assert merge([entry, copy])[0]["note"] == entry["note"]
    assert merge([entry, copy], replace=True)[0]["note"] == "published by the real owner"


def test_fixed_point_logs_and_names_that_look_like_separators(tmp_path):
    """A certified row printed "0.0000" by a %.4f log imports (its radius is below a digit);
    benchmark "a--b" + method "c" and benchmark "a" + method "b--c" get two files."""
    n, alpha, sigma = 100_000, 0.001, 0.12
    first = int(np.argmax(radii_from_counts(np.arange(n + 1), n, alpha, sigma) > 0))
    log = tmp_path / "fixed.tsv"
    _cohen_log(log, np.array([first, first + 3000, 40_000]), n, alpha, sigma, ".4f")
    assert "\t1\t0.0000\t" in log.read_text()
    for k, (benchmark, method) in enumerate((("a--b", "c"), ("a", "b--c"))):
        import_tsv(_variant(log, tmp_path, k), dataset="cifar10", method=method,
                   benchmark=benchmark, out=tmp_path / "e", n=n, alpha=alpha, sigma=sigma)
    assert len(list((tmp_path / "e").glob("*.json"))) == 2


def test_import_tsv_checks_what_the_user_declares(tmp_path, capsys):
    """A CIFAR-10-sized log under --dataset digits, a sigma 1.0 log under --sigma 0.25, an
    unknown dataset, a selection the indices do not follow and one log under two names are
    refused with the fix; the declared selection and paper are recorded."""
    n, alpha = 100_000, 0.001
    n_a = np.random.default_rng(1).integers(60_000, n + 1, 500)
    n_a[0] = n  # sigma 1.0's largest radius: 3.8
    log = tmp_path / "cohen.tsv"
    _cohen_log(log, n_a, n, alpha, 1.0, ".3")
    text = log.read_text().splitlines()  # every 20th test image, as Cohen et al. certify
    log.write_text("\n".join([text[0], *(
        "\t".join([str(20 * i), *line.split("\t")[1:]]) for i, line in enumerate(text[1:]))])
        + "\n")
    args = ["leaderboard", "import-tsv", str(log), "--method", "cohen-1.0", "--n", str(n),
            "--alpha", str(alpha), "--out", str(tmp_path / "e")]
    for extra, message in [
            (["--dataset", "digits", "--sigma", "1.0"],
             r"row 26 \(idx 500.*idx outside the 500 images of digits.*is --dataset right"),
            (["--dataset", "cifar-10", "--sigma", "1.0"], "taken on one of cifar10, imagenet"),
            (["--dataset", "cifar10", "--sigma", "0.25"],
             r"radius 3.81 is beyond the largest radius n = 100000 samples can certify at sigma "
             r"0.25 \(0.95\d.*needs sigma >= 1;"),
            (["--dataset", "cifar10", "--sigma", "1.0", "--inputs", "every-20-from-10"],
             r"idx 0, not on --inputs every-20-from-10"),
            (["--dataset", "cifar10", "--sigma", "1.0", "--inputs", "every-0"],
             "give all, every-K")]:
        assert main([*args, *extra]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "e").exists()
    assert main([*args, "--dataset", "cifar10", "--sigma", "1.0", "--inputs", "every-20",
                 "--paper", "Cohen et al. 2019, Table 1"]) == 0
    entry = read_entry(next((tmp_path / "e").glob("*.json")))
    assert entry["inputs"] == {"spec": "every 20th of the 10000 images from index 0",
                               "count": 500}
    assert entry["paper"] == "Cohen et al. 2019, Table 1"
    again = [a if a != "cohen-1.0" else "cohen-again" for a in args]
    assert main([*again, "--dataset", "cifar10", "--sigma", "1.0"]) == 2  # one log, one entry
    assert "already imported as cifar10-external/cohen-1.0" in capsys.readouterr().err
    other = [a if a != str(tmp_path / "e") else str(tmp_path / "f") for a in again]
    assert main([*other, "--dataset", "cifar10", "--sigma", "1.0"]) == 0  # another folder...
    assert main(["leaderboard", "build", str(tmp_path / "e"), str(tmp_path / "f"), "--out",
                 str(tmp_path / "site")]) == 2  # ...but never two rows on one board
    assert "one log is one row" in capsys.readouterr().err


def test_a_step_curve_is_the_exact_curve_or_just_below_it():
    """Drawn from the radii: every step of 500 inputs kept; 10,000 inputs merged into groups of
    under 0.1 point, each drawn at its first radius: never above the exact curve."""
    from rsrouter.leaderboard.entries import CURVE_RESOLUTION, curve_at, step_curve

    rng = np.random.default_rng(3)
    for count in (500, 10_000):
        radius = np.round(rng.uniform(0, 1, count), 3) * (rng.uniform(size=count) < 0.8)
        correct = rng.uniform(size=count) < 0.9
        curve = step_curve(radius, correct)
        exact = [float(np.mean(correct & (radius >= r)))  # as certified_accuracy counts
                 for r in np.linspace(0, 1.01, 400)]
        drawn = [curve_at(curve, r) for r in np.linspace(0, 1.01, 400)]
        gap = np.asarray(exact) - np.asarray(drawn)
        assert (gap >= -1e-4).all() and (gap < CURVE_RESOLUTION + 1e-4).all()
        assert len(curve["radius"]) <= 2 / CURVE_RESOLUTION + 1
        if count == 500:
            assert np.allclose(gap, 0, atol=1e-4)  # a step per input: exact
    assert step_curve(np.array([0.0, 0.5]), np.array([False, True])) == {
        "radius": [0.0, 0.5], "accuracy": [0.5, 0.0]}
    # a right input at radius 0 counts at r = 0 only
    assert step_curve(np.array([0.0, 0.5]), np.array([True, True])) == {
        "radius": [0.0, 0.0001, 0.5], "accuracy": [1.0, 0.5, 0.0]}


def test_a_curve_is_checked_and_drawn_never_above_itself(results, tmp_path):
    from rsrouter.leaderboard.plots import thin as _thin

    entry = json.loads(_entry_file(results).read_text())
    path = tmp_path / "e.json"
    top = entry["curve"]["radius"][-1]
    for curve, message in [
            ({**entry["curve"], "radius": [*entry["curve"]["radius"][:-1], 50.0]},
             "a step at r = 50, beyond the largest radius"),
            ({"radius": [0.0, 0.1], "accuracy": [0.5, 0.6]}, "accuracy never grow"),
            ({"radius": [0.0, top], "accuracy": [entry["accuracy"][0], 0.0]}, None)]:
        path.write_text(json.dumps({**entry, "curve": curve}))
        if message is None:  # one step: not the grid's accuracy past r = 0
            with pytest.raises(ResultsError, match="curve: not the accuracy"):
                collect_entries([path])
            continue
        with pytest.raises(ResultsError, match=message):
            collect_entries([path])
    xs, ys = [0.0, 0.1, 0.2, 0.3, 0.4], [90.0, 89.8, 89.6, 88.0, 0.0]
    thin_x, thin_y = _thin(xs, ys)
    assert thin_x == [0.0, 0.1, 0.3, 0.4] and thin_y == [90.0, 89.6, 88.0, 0.0]
    for r in np.linspace(0, 0.5, 51):  # drawn never above the curve, below by under 0.5 point
        drawn = thin_y[max(int(np.searchsorted(thin_x, r, side="right")) - 1, 0)]
        exact = ys[max(int(np.searchsorted(xs, r, side="right")) - 1, 0)]
        assert 0 <= exact - drawn < 0.5
