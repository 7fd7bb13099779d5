"""Check the Dual RS paper's claims on a benchmark folder (its summary.json):

    python benchmarks/dualrs_bars.py benchmarks/results/fashion-mnist-dualrs \
        [--method dualrs] [--globals dualrs-sigma0.25,dualrs-sigma0.50,dualrs-sigma1.00] \
        [--cascade multiscale] [--oracle oracle]

1. dominated by no global sigma: for each global-sigma method, the grid radius where METHOD is
   furthest above it (the claim needs >= 2 points somewhere);
2. above the cascade at r = 0.5, 0.75 and 1.0;
3. the gap to the per-input oracle (not a certificate) at every radius and in ACR.
Prints a markdown table per claim; exits 0 either way (a report, not a test).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--method", default="dualrs")
    parser.add_argument("--globals", default="dualrs-sigma0.25,dualrs-sigma0.50,dualrs-sigma1.00")
    parser.add_argument("--cascade", default="multiscale")
    parser.add_argument("--oracle", default="oracle")
    args = parser.parse_args()
    table = json.loads((args.folder / "summary.json").read_text())["table"]
    rows = {row["method"].split(" (")[0]: row for row in table}
    radii = [k for k in rows[args.method] if k.startswith("r=") and not k.endswith(("low",
                                                                                   "high"))]
    me = rows[args.method]
    print(f"## {args.method} against each global sigma (claim: >= 2 points above each somewhere)\n")
    print("| global sigma | largest gain (points) | at | holds |\n| --- | --- | --- | --- |")
    for name in args.globals.split(","):
        gains = {k: float(me[k]) - float(rows[name][k]) for k in radii}
        at = max(gains, key=gains.get)
        print(f"| {name} | {gains[at]:+.1f} | {at} | {'yes' if gains[at] >= 2 else 'no'} |")
    print(f"\n## {args.method} against {args.cascade} (claim: above at r = 0.5, 0.75, 1.0)\n")
    print("| radius | " + args.method + " | " + args.cascade + " | difference |")
    print("| --- | --- | --- | --- |")
    for k in ("r=0.5", "r=0.75", "r=1"):
        a, b = float(me[k]), float(rows[args.cascade][k])
        print(f"| {k} | {a:.1f} | {b:.1f} | {a - b:+.1f} |")
    oracle = rows[args.oracle]
    print("\n## gap to the per-input oracle (not a certificate)\n")
    print("| " + " | ".join(radii) + " | ACR |\n|" + " --- |" * (len(radii) + 1))
    print("| " + " | ".join(f"{float(oracle[k]) - float(me[k]):.1f}" for k in radii)
          + f" | {float(oracle['ACR']) - float(me['ACR']):.3f} |")


if __name__ == "__main__":
    main()
