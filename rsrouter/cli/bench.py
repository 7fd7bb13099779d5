"""``rsrouter bench run`` and ``rsrouter bench report``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_hub_opts, add_trust_opt, device_name, pick_device, registry_of


def add_bench(sub) -> None:
    """``bench`` and its subcommands ``run`` and ``report``."""
    bench = sub.add_parser("bench", help="benchmark every method on the same inputs")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    p = bsub.add_parser("run", help="run a benchmark config (resumable: counts are stored)")
    p.add_argument("--config", required=True, help="benchmark config (YAML)")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--device", type=device_name, default=None)
    p.add_argument("--no-progress", action="store_true")
    add_hub_opts(p)
    add_trust_opt(p)
    p.set_defaults(func=cmd_bench_run)
    p = bsub.add_parser("report", help="rebuild the summary, curves, cost plane and entries "
                        "from the TSVs")
    p.add_argument("dir", help="results folder of `bench run`")
    p.set_defaults(func=cmd_bench_report)
    p = bsub.add_parser("choose", help="apply the validation rule to a validation benchmark: "
                                       "the routed variant to ship")
    p.add_argument("dir", help="results folder of a benchmark on the validation split")
    p.add_argument("--methods", nargs="+", help="candidates (default: every router method)")
    p.add_argument("--acr-slack", type=float, default=0.02,
                   help="ACR may be this far below the best single expert's (default 0.02)")
    p.add_argument("--cost-cap", type=float, default=1.3,
                   help="at most this many times one expert's forwards per input (default 1.3)")
    p.set_defaults(func=cmd_bench_choose)


def cmd_bench_run(args: argparse.Namespace) -> None:
    from ..bench.config import load_bench_config
    from ..bench.harness import run_bench

    cfg = load_bench_config(args.config)
    device = pick_device(args.device)
    out = run_bench(cfg, args.out, registry=registry_of(args), progress=not args.no_progress,
                    device=device)
    print((Path(out) / "summary.md").read_text())
    print(f"results: {out} (summary.md, curves.png, cost.png, one TSV per method, entries/)")


def cmd_bench_report(args: argparse.Namespace) -> None:
    from ..bench.report import build_report

    build_report(args.dir)
    print((Path(args.dir) / "summary.md").read_text())


def cmd_bench_choose(args: argparse.Namespace) -> None:
    from ..bench.choose import choose

    print(choose(args.dir, args.methods, acr_slack=args.acr_slack,
                 cost_cap=args.cost_cap).text())
