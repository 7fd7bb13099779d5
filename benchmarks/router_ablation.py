"""Compare routers for the bundled Fashion-MNIST experts cheaply: certify each router alone and
compose with the experts' stored counts (bench.compose_from_counts gives exactly the routed
certificates an end-to-end run would).

    python benchmarks/router_ablation.py ROUTER_DIR [ROUTER_DIR ...] [--num 500] [--n 10000]

Needs the experts' TSVs of benchmarks/certify_zoo.sh (same inputs, n0, n, seed). Prints, per
router: certified accuracy on the grid, ACR, the router's mean radius and choices, and the gap to
the best single expert.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from rsrouter.bench import compose_from_counts, oracle_frame, routing_stats
from rsrouter.bench.compare import ORACLE
from rsrouter.data import data_identity, load_dataset, subset_indices
from rsrouter.results import RADII, markdown_table, read_tsv, summary_table
from rsrouter.router import load_router
from rsrouter.runs import certify_dataset, run_settings
from rsrouter.runtime import tune_allocator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fashion-mnist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("routers", nargs="+")
    parser.add_argument("--num", type=int, default=500)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--out", default=str(ROOT / "runs" / "ablation"))
    args = parser.parse_args()
    tune_allocator()
    data = load_dataset("fashion-mnist", "test")
    indices = subset_indices(len(data), len(data) // args.num)[: args.num]
    results: dict[str, pd.DataFrame] = {}
    stats = {}
    for folder in args.routers:
        router = load_router(folder)
        names = [e.name for e in router.card.experts]
        experts = [read_tsv(RESULTS / f"{name}.tsv") for name in names]
        for name, df in zip(names, experts):
            results.setdefault(name, df)
        tag = Path(folder).name
        path = Path(args.out) / f"router-{tag}.tsv"
        alpha_r = args.alpha / 2
        settings = run_settings({"router": router}, data_identity(data), n0=100, n=args.n,
                                alpha=alpha_r, seed=0, mode=router.mode)
        certify_dataset(router, data, indices, path, n0=100, n=args.n, alpha=alpha_r,
                        batch_size=2500, seed=0, settings=settings, desc=f"router {tag}")
        routed = compose_from_counts(read_tsv(path), experts, names, args.alpha)
        results[f"routed[{tag}]"] = routed
        stats[tag] = routing_stats(routed)
    expert_results = {k: v for k, v in results.items() if not k.startswith("routed")}
    results[ORACLE] = oracle_frame(expert_results)
    table = summary_table(results, RADII)
    print(markdown_table(table))
    cols = [f"r={r:g}" for r in RADII]
    best = table.loc[list(expert_results), cols].max()
    for tag, s in stats.items():
        row = table.loc[f"routed[{tag}]"]
        gap = best - row[cols]
        margins = {e: float((row[cols] - table.loc[e, cols]).max()) for e in expert_results}
        print(f"\n{tag}: router mean radius {s['router_mean_radius']}, abstain "
              f"{s['router_abstain']}, choices {s['choices']}")
        print(f"  largest gap to best single {gap.max():.1f} at {gap.idxmax()}; ACR "
              f"{row['ACR']:.3f} vs best single {table.loc[list(expert_results), 'ACR'].max():.3f};"
              f" margins over experts {margins}")


if __name__ == "__main__":
    main()
