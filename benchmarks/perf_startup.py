"""Start-up time of the `rsrouter` command: what a user waits for before anything is printed.

    python benchmarks/perf_startup.py [--rounds 5]

Each command runs as a fresh process, best of ROUNDS, next to a baseline measured in the same
run: a process that only imports torch (what every command paid before rsrouter 0.2). Target:
--help, --version, experts list/show and an argument error under 1 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

COMMANDS = {
    "rsrouter --version": ["--version"],
    "rsrouter --help": ["--help"],
    "rsrouter experts list": ["experts", "list"],
    "rsrouter experts show digits-sigma0.25": ["experts", "show", "digits-sigma0.25"],
    "rsrouter certify ... --alpha 2 (argument error)":
        ["certify", "--model", "x", "--dataset", "digits", "--alpha", "2", "--out", "x.tsv"],
}


def best_of(argv: list[str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    baseline = best_of([sys.executable, "-c", "import torch, timm"], args.rounds)
    print(f"baseline: a process importing torch and timm: {baseline:.2f} s\n")
    print("| command | seconds | share of the baseline | under 1 s |")
    print("| --- | --- | --- | --- |")
    for label, argv in COMMANDS.items():
        t = best_of([sys.executable, "-m", "rsrouter", *argv], args.rounds)
        print(f"| `{label}` | {t:.2f} | {t / baseline:.2f} | {'yes' if t < 1 else 'NO'} |")


if __name__ == "__main__":
    main()
