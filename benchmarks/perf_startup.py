"""Start-up time of the `rsrouter` command: what a user waits for before an answer.

    python benchmarks/perf_startup.py [--rounds 5]

Each command runs as a fresh process ROUNDS times (wall clock, median and fastest) on the
published results (benchmarks/results/), next to baselines measured in the same run: a process
that only imports rsrouter, `rsrouter --help`, and a process that imports torch and timm (what a
command that loads a model pays). Targets: every command below, the ones that run no model
(summary, leaderboard import-tsv and build, bench report) and their error messages included,
answers in under 1 s; those never import torch (tests/test_commands_without_torch.py). `bench
report` is timed twice: on a benchmark whose curves.png and cost.png are current (a re-report:
each PNG carries the key of what it shows, and is not drawn again) and with both deleted before
each round (what drawing new plots adds).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
CARD_LOG = RESULTS / "cards" / "digits" / "digits-sigma0.25.tsv"
RSROUTER = [sys.executable, "-m", "rsrouter"]


def commands(tmp: Path) -> dict[str, list[str]]:
    """Label -> argv, on real inputs; outputs go under ``tmp`` (a copy of a results folder for
    `bench report`, which rewrites its summary)."""
    bench = tmp / "digits"
    shutil.copytree(RESULTS / "digits", bench)
    (tmp / "empty").mkdir()
    return {
        "rsrouter --version": ["--version"],
        "rsrouter experts list": ["experts", "list"],
        "rsrouter experts show digits-sigma0.25": ["experts", "show", "digits-sigma0.25"],
        "rsrouter certify ... --alpha 2 (argument error)":
            ["certify", "--model", "x", "--dataset", "digits", "--alpha", "2", "--out", "x.tsv"],
        "rsrouter summary (a card's log, a routed benchmark TSV)":
            ["summary", str(CARD_LOG), str(RESULTS / "digits" / "routed.tsv")],
        "rsrouter summary (error: no such file)": ["summary", str(tmp / "missing.tsv")],
        "rsrouter leaderboard import-tsv (a card's log)":
            ["leaderboard", "import-tsv", str(CARD_LOG), "--dataset", "digits", "--method",
             "digits sigma 0.25", "--out", str(tmp / "entries")],
        "rsrouter leaderboard import-tsv (error: no counts, no protocol)":
            ["leaderboard", "import-tsv", str(tmp / "cohen.tsv"), "--dataset", "digits",
             "--method", "x", "--out", str(tmp / "entries")],
        "rsrouter leaderboard build (digits, fashion-mnist)":
            ["leaderboard", "build", str(RESULTS / "digits"), str(RESULTS / "fashion-mnist"),
             "--out", str(tmp / "site")],
        "rsrouter leaderboard build (error: no entries)":
            ["leaderboard", "build", str(tmp / "empty"), "--out", str(tmp / "site2")],
        "rsrouter bench report (digits; curves.png, cost.png unchanged, not drawn again)":
            ["bench", "report", str(bench)],
        "rsrouter bench report (digits; curves.png, cost.png drawn)":
            ["bench", "report", str(bench)],
        "rsrouter bench report (error: no benchmark)": ["bench", "report", str(tmp / "empty")],
    }


def _cohen_log(path: Path) -> None:
    """Cohen's columns only (no counts): import-tsv refuses it without --n, --alpha, --sigma."""
    lines = CARD_LOG.read_text().splitlines()
    path.write_text("\n".join("\t".join(line.split("\t")[:6]) for line in lines) + "\n")


def timings(argv: list[str], rounds: int, cwd: Path, before=None) -> list[float]:
    """Wall-clock seconds of ``rounds`` fresh processes running ``argv`` (each after calling
    ``before``, untimed, if given)."""
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False, cwd=cwd)
        times.append(time.perf_counter() - start)
    return times


def row(label: str, times: list[float], base: float) -> str:
    median = statistics.median(times)
    return (f"| `{label}` | {median:.2f} | {min(times):.2f} | {median / base:.1f} | "
            f"{'yes' if median < 1 else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsrouter-startup-") as tmp:
        tmp = Path(tmp)
        _cohen_log(tmp / "cohen.tsv")
        base = timings([sys.executable, "-c", "import rsrouter"], args.rounds, tmp)
        median = statistics.median(base)
        torch = timings([sys.executable, "-c", "import torch, timm"], args.rounds, tmp)
        print(f"{args.rounds} fresh processes each; ratio: the median over that of a process "
              f"importing rsrouter ({median:.2f} s)\n")
        print("| command | median s | fastest s | ratio | under 1 s |")
        print("| --- | --- | --- | --- | --- |")
        print(row('python -c "import rsrouter" (baseline)', base, median))
        print(row("rsrouter --help (baseline)", timings([*RSROUTER, "--help"], args.rounds, tmp),
                  median))
        print(row('python -c "import torch, timm" (what loading a model adds)', torch, median))
        for label, argv in commands(tmp).items():
            before = None
            if "cost.png drawn" in label:  # a report whose plots are new (a fresh benchmark)
                def before():
                    for name in ("curves.png", "cost.png"):
                        (tmp / "digits" / name).unlink(missing_ok=True)
            print(row(label, timings([*RSROUTER, *argv], args.rounds, tmp, before), median))


if __name__ == "__main__":
    main()
