"""``rsrouter dualrs train`` and ``rsrouter dualrs export``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RsrouterError
from .common import COUNT, device_name, pick_device


def add_dualrs(sub) -> None:
    """``dualrs`` and its subcommands ``train`` and ``export``."""
    dualrs = sub.add_parser("dualrs", help="full Dual RS: one classifier for every sigma and its "
                                           "variance estimator, trained in rounds")
    dsub = dualrs.add_subparsers(dest="dualrs_command", required=True)
    p = dsub.add_parser("train", help="run rounds 0..R-1 (each benchmarked on validation; "
                                      "resumable, round by round)")
    p.add_argument("--config", required=True, help="Dual RS config (YAML, docs/dualrs.md)")
    p.add_argument("--rounds", "--num-rounds", dest="rounds", type=COUNT, default=2,
                   help="rounds to run (default 2: round 0 and one fine-tuning round)")
    p.add_argument("--out", required=True, help="run folder (rerun with more rounds to go on)")
    p.add_argument("--device", type=device_name, default=None)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_dualrs_train)
    p = dsub.add_parser("export", help="copy one round's classifier and estimator elsewhere, "
                                       "the estimator pointing at the copied classifier")
    p.add_argument("run", help="the run folder of rsrouter dualrs train")
    p.add_argument("--round", type=int, default=None,
                   help="round to export (default: the best on validation, rounds.json)")
    p.add_argument("--classifier-out", required=True)
    p.add_argument("--estimator-out", required=True)
    p.set_defaults(func=cmd_dualrs_export)


def cmd_dualrs_train(args: argparse.Namespace) -> None:
    from ..distributed import current
    from ..dualrs.config import load_dualrs_config
    from ..dualrs.loop import train_dualrs
    from ..dualrs.rounds import best_round

    cfg = load_dualrs_config(args.config)
    results = train_dualrs(cfg, args.out, rounds=args.rounds, device=pick_device(args.device),
                           progress=not args.no_progress)
    if not current().is_main:
        return
    out = Path(args.out)
    print((out / "rounds.md").read_text())
    best = best_round(cfg, results)
    print(f"best round on validation ({cfg.select}): {best}; curves in {out / 'rounds.png'}\n"
          f"bundle it: rsrouter dualrs export {out} --round {best} --classifier-out CLS "
          "--estimator-out EST")


def cmd_dualrs_export(args: argparse.Namespace) -> None:
    import json

    from ..dualrs.loop import export_round

    k = args.round
    if k is None:
        rounds = Path(args.run) / "rounds.json"
        if not rounds.is_file():
            raise RsrouterError(f"{rounds} not found: run rsrouter dualrs train first, or pass "
                                "--round")
        k = json.loads(rounds.read_text())["best_round"]
    cls, est = export_round(args.run, k, args.classifier_out, args.estimator_out)
    print(f"round {k}: classifier {cls} (serves every sigma: {cls}#sigma=S), estimator {est}\n"
          f"certify: rsrouter certify --router {est} --dataset DATASET --out dualrs.tsv")
