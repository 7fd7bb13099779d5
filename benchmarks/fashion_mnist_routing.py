"""The routed Fashion-MNIST result: every bundled expert and the routed ensemble on the same inputs.

    python benchmarks/fashion_mnist_routing.py [--router experts/routers/fashion-mnist]
        [--num 500] [--n 10000] [--name routed]

500 test images (every 20th), n0 = 100, n = 10,000, alpha = 0.001 (split 1/2 router, 1/2 expert).
Writes per-input TSVs, summary.{md,csv,json} and certified_accuracy.png to
benchmarks/results/fashion-mnist/ (resumable: experts certified by certify_zoo.sh are reused), and
prints the paper's bar: for every expert a grid radius where routing is >= 2 points above it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rsrouter.bench import certify_methods, report
from rsrouter.data import load_dataset, subset_indices
from rsrouter.results import RADII, markdown_table
from rsrouter.router import load_routed
from rsrouter.runtime import tune_allocator

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--router", default=str(ROOT / "experts" / "routers" / "fashion-mnist"))
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--name", default="routed", help="file name of the routed TSV")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fashion-mnist"))
    parser.add_argument("--batch-size", type=int, default=2500)
    args = parser.parse_args()
    tune_allocator()

    routed = load_routed(args.router)
    data = load_dataset("fashion-mnist", "test")
    indices = subset_indices(len(data), len(data) // args.num)[: args.num]
    experts_tsv, routed_tsv = certify_methods(routed.experts, routed, data, indices, args.out,
                                              n0=100, n=args.n, alpha=0.001,
                                              batch_size=args.batch_size, routed_name=args.name)
    routed_tsv = {"routed": routed_tsv[args.name]}
    title = (f"Fashion-MNIST, {len(indices)} test images, n0=100, n={args.n}, alpha=0.001 "
             f"({args.name})")
    out = Path(args.out) if args.name == "routed" else Path(args.out) / args.name
    out.mkdir(parents=True, exist_ok=True)
    table = report(experts_tsv, out, title=title, routed=routed_tsv)
    print(markdown_table(table))
    cols = [f"r={r:g}" for r in RADII]
    experts = [e.name for e in routed.experts]
    print("\nbar (routed >= expert + 2 points at some grid radius):")
    for name in experts:
        diff = table.loc["routed", cols] - table.loc[name, cols]
        print(f"  vs {name}: best margin {diff.max():+.1f} at {diff.idxmax()} -> "
              f"{'met' if diff.max() >= 2 else 'NOT met'}")
    best_single = table.loc[experts, cols].max()
    gap = (best_single - table.loc["routed", cols])
    print(f"largest gap to the best single expert: {gap.max():.1f} points at {gap.idxmax()} "
          f"(aim <= 5)")
    print(f"ACR routed {table.loc['routed', 'ACR']:.3f} vs best single "
          f"{table.loc[experts, 'ACR'].max():.3f}")


if __name__ == "__main__":
    main()
