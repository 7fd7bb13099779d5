"""Commands that run no model (summary, leaderboard import-tsv and build, bench report) never
import torch, neither when they succeed nor on their error paths: each runs in a fresh process on
the published results, and the import chain that brought torch in, if any, is named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from helpers import ROOT

RESULTS = ROOT / "benchmarks" / "results"
CARD_LOG = RESULTS / "cards" / "digits" / "digits-sigma0.25.tsv"

# Runs `rsrouter ARGV` for each ARGV (a JSON list of argument lists) in this process and prints,
# as JSON: the exit statuses and, if torch was imported, the rsrouter frames (module names) on
# the stack of its import, outermost first.
RUNNER = r"""
import json, sys, traceback

chains = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            frames = [f.f_globals.get("__name__", "") for f, _ in traceback.walk_stack(None)]
            chain = []
            for module in reversed(frames):
                if module.startswith("rsrouter") and (not chain or chain[-1] != module):
                    chain.append(module)
            chains.append(chain)
        return None


sys.meta_path.insert(0, Watch())
from rsrouter.cli import main

codes = [main(argv) for argv in json.loads(sys.argv[1])]
print(json.dumps({"codes": codes, "torch": "torch" in sys.modules,
                  "chain": chains[-1] if chains and "torch" in sys.modules else []}))
"""


def run_without_torch(runs: list[list[str]], cwd: Path) -> dict:
    """Run each command of ``runs`` in one fresh process; returns its exit codes and the chain
    of rsrouter modules that imported torch (empty if none did)."""
    done = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(runs)], capture_output=True,
                          text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _log_without_counts(tmp: Path) -> Path:
    """A published-style log: Cohen's columns only, radii as printed."""
    log = tmp / "published.tsv"
    pd.read_csv(CARD_LOG, sep="\t", dtype={"radius": str})[
        ["idx", "label", "predict", "radius", "correct", "time"]].to_csv(log, sep="\t",
                                                                         index=False)
    return log


def _commands(tmp: Path) -> dict[str, tuple[list[list[str]], list[int]]]:
    """Each command on real inputs, then its error paths, with the exit codes expected."""
    bench = tmp / "digits"
    shutil.copytree(RESULTS / "digits", bench)
    (tmp / "empty").mkdir()
    bad = tmp / "bad.tsv"
    bad.write_text("idx\tlabel\n0\t1\n")
    entries = tmp / "entries"
    return {
        "summary": ([["summary", str(CARD_LOG), f"routed={RESULTS / 'digits' / 'routed.tsv'}",
                      "--plot", str(tmp / "curves.png")],
                     ["summary", str(bad)], ["summary", str(tmp / "missing.tsv")]], [0, 2, 2]),
        "leaderboard import-tsv": (
            [["leaderboard", "import-tsv", str(CARD_LOG), "--dataset", "digits", "--method",
              "card log", "--out", str(entries)],
             ["leaderboard", "import-tsv", str(_log_without_counts(tmp)), "--dataset", "digits",
              "--method", "published", "--n", "10000", "--alpha", "0.001", "--sigma", "0.25",
              "--out", str(entries)],
             ["leaderboard", "import-tsv", str(_log_without_counts(tmp)), "--dataset", "digits",
              "--method", "x", "--out", str(entries)]], [0, 0, 2]),
        "leaderboard import-sources": (
            [["leaderboard", "import-sources", str(RESULTS.parent / "external" / "sources.yaml"),
              "--out", str(tmp / "external")],
             ["leaderboard", "import-sources", str(bad), "--out", str(tmp / "external2")]],
            [0, 2]),
        "leaderboard build": ([["leaderboard", "build", str(RESULTS / "digits"),
                                "--out", str(tmp / "site")],
                               ["leaderboard", "build", str(tmp / "empty"), "--out",
                                str(tmp / "site2")]], [0, 2]),
        "bench report": ([["bench", "report", str(bench)], ["bench", "report", str(tmp / "empty")]],
                         [0, 2]),
    }


@pytest.mark.parametrize("command", ["summary", "leaderboard import-tsv", "leaderboard build",
                                     "leaderboard import-sources", "bench report"])
def test_commands_that_run_no_model_never_import_torch(command, tmp_path):
    runs, expected = _commands(tmp_path)[command]
    got = run_without_torch(runs, tmp_path)
    assert got["codes"] == expected
    assert not got["torch"], f"`rsrouter {command}` imported torch: {' -> '.join(got['chain'])}"


# Runs `rsrouter ARGV` (JSON) in this process; prints its exit status and which of the libraries
# that cost start-up time it imported.
IMPORTS = r"""
import json, sys
from rsrouter.cli import main
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "imported": sorted(m for m in ("pandas", "matplotlib", "torch")
                                                   if m in sys.modules)}))
"""


def _imports(argv: list[str], cwd: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", IMPORTS, json.dumps(argv)], capture_output=True,
                          text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["code"] == 0
    return got["imported"]


def test_leaderboard_build_draws_its_curves_without_pandas(tmp_path):
    site = tmp_path / "site"
    assert _imports(["leaderboard", "build", str(RESULTS / "digits"), "--out", str(site)],
                    tmp_path) == ["matplotlib"]
    assert "<svg" in (site / "digits.html").read_text()


def test_bench_report_draws_curves_png_again_only_when_its_lines_change(tmp_path):
    from PIL import Image

    bench = tmp_path / "digits"
    shutil.copytree(RESULTS / "digits", bench)
    png = bench / "curves.png"
    shutil.copy(RESULTS / "fashion-mnist" / "curves.png", png)  # drawn from other lines
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["matplotlib", "pandas"]
    with Image.open(png) as drawn, Image.open(RESULTS / "digits" / "curves.png") as published:
        assert drawn.tobytes() == published.tobytes()  # the digits curves, pixel for pixel
    before = png.read_bytes()
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["pandas"]  # not drawn again
    assert png.read_bytes() == before
    png.write_bytes(b"not a png")
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["matplotlib", "pandas"]
    assert png.read_bytes() == before


def test_bench_report_draws_cost_png_again_only_when_its_points_change(tmp_path):
    from PIL import Image

    bench = tmp_path / "digits"
    shutil.copytree(RESULTS / "digits", bench)
    png = bench / "cost.png"
    shutil.copy(RESULTS / "fashion-mnist" / "cost.png", png)  # drawn from other points
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["matplotlib", "pandas"]
    with Image.open(png) as drawn, Image.open(RESULTS / "digits" / "cost.png") as published:
        assert drawn.tobytes() == published.tobytes()  # the digits cost plane, pixel for pixel
    before, curves = png.read_bytes(), (bench / "curves.png").read_bytes()
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["pandas"]  # not drawn again
    assert png.read_bytes() == before
    rows = bench / "multiscale.tsv"  # the cascade's forwards doubled: a point moves
    df = pd.read_csv(rows, sep="\t", dtype=str, keep_default_na=False)
    df["forwards"] = (df["forwards"].astype(int) * 2).astype(str)
    df.to_csv(rows, sep="\t", index=False)
    assert _imports(["bench", "report", str(bench)], tmp_path) == ["matplotlib", "pandas"]
    assert png.read_bytes() != before and (bench / "curves.png").read_bytes() == curves
