"""``rsrouter leaderboard build``, ``import-tsv`` and ``publish``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import COUNT, POSITIVE, PROBABILITY, REPLACE_HELP


def add_leaderboard(sub) -> None:
    """``leaderboard`` and its subcommands."""
    board = sub.add_parser("leaderboard", help="build, extend and publish a leaderboard")
    lsub = board.add_subparsers(dest="leaderboard_command", required=True)
    p = lsub.add_parser("build", help="merge entries into leaderboard.json/.md and index.html")
    p.add_argument("sources", nargs="+", help="results folders, entry folders or entry files")
    p.add_argument("--out", required=True, help="site folder to write")
    p.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    p.set_defaults(func=cmd_leaderboard_build)
    p = lsub.add_parser("import-tsv", help="add a published certification log (Cohen's format)")
    p.add_argument("log", help="TSV with idx label predict radius correct")
    p.add_argument("--dataset", required=True,
                   help="cifar10, imagenet, mnist, fashion-mnist or digits (checked: indices, "
                        "labels and predictions must fit its evaluation set)")
    p.add_argument("--inputs", help="the test images the log certifies: all, every-K or "
                   "every-K-from-S (Cohen et al.: every-20 on CIFAR-10, every-100 on ImageNet); "
                   "checked against the log's indices and recorded")
    p.add_argument("--paper", default="", help="the paper (and table) the log belongs to")
    p.add_argument("--method", required=True, help="name shown on the leaderboard")
    p.add_argument("--benchmark", help="benchmark name (default: DATASET-external)")
    p.add_argument("--source", default="", help="where the log comes from (paper, URL)")
    p.add_argument("--n", "--N", dest="n", type=COUNT,
                   help="estimation samples, as the source states (needed for a log without "
                   "counts: each radius is recomputed from the counts it implies)")
    p.add_argument("--n0", "--N0", dest="n0", type=COUNT, help="selection samples (recorded)")
    p.add_argument("--alpha", type=PROBABILITY, help="failure probability, as the source states")
    p.add_argument("--sigma", type=POSITIVE, help="the model's noise level, as the source states")
    p.add_argument("--out", required=True, help="folder for the entry")
    p.set_defaults(func=cmd_leaderboard_import)
    p = lsub.add_parser("compose", help="envelope and per-input oracle over imported logs on "
                                         "the same inputs")
    p.add_argument("sources", nargs="+", help="entries written by `import-tsv`, or their folders")
    p.add_argument("--benchmark", help="benchmark of the composed entries (default: the logs')")
    p.add_argument("--out", help="folder for the composed entries (default: the first log's)")
    p.set_defaults(func=cmd_leaderboard_compose)
    p = lsub.add_parser("import-sources", help="import every published log a sources manifest "
                                                "pins (benchmarks/external/sources.yaml)")
    p.add_argument("manifest", help="sources manifest (YAML); logs vendored under logs/ beside it")
    p.add_argument("--out", required=True, help="folder for the entries and sources.md")
    p.set_defaults(func=cmd_leaderboard_import_sources)
    p = lsub.add_parser("fetch-sources", help="fetch the logs a sources manifest pins from "
                                               "their repositories, at the pinned commits")
    p.add_argument("manifest", help="sources manifest (YAML)")
    p.add_argument("--into", help="folder for the logs (and a copy of the manifest); default: "
                                  "beside the manifest, where import-sources reads them")
    p.set_defaults(func=cmd_leaderboard_fetch_sources)
    p = lsub.add_parser("publish", help="publish a built site (merging what is already there)")
    p.add_argument("site", help="folder written by `leaderboard build`")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="a folder (e.g. a web root)")
    where.add_argument("--git-remote", help="a git remote (branch main)")
    where.add_argument("--hub", help="a Hub dataset repo: hf://datasets/org/name")
    p.add_argument("--endpoint")
    p.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    p.set_defaults(func=cmd_leaderboard_publish)


def cmd_leaderboard_build(args: argparse.Namespace) -> None:
    from ..leaderboard.board import build_site

    site = build_site(args.sources, args.out, replace=args.replace)
    print(f"leaderboard: {site / 'index.html'} ({site / 'leaderboard.md'})")


def cmd_leaderboard_import(args: argparse.Namespace) -> None:
    from ..leaderboard.logs import import_tsv

    path = import_tsv(args.log, dataset=args.dataset, method=args.method,
                      benchmark=args.benchmark, source=args.source, n=args.n, n0=args.n0,
                      alpha=args.alpha, sigma=args.sigma, out=args.out, inputs=args.inputs,
                      paper=args.paper)
    print(f"entry written to {path}")


def cmd_leaderboard_compose(args: argparse.Namespace) -> None:
    from ..leaderboard.compose import compose

    (envelope, oracle), out = compose(args.sources, args.out, benchmark=args.benchmark)
    print(f"{len(envelope['pool'])} logs on {envelope['inputs']['count']} inputs "
          f"({envelope['benchmark']}): certified accuracy (%)")
    print(f"{'radius':>8} {'envelope':>9} {'oracle':>7}")
    for r, a, b in zip(envelope["radii"], envelope["accuracy"], oracle["accuracy"]):
        print(f"{r:>8g} {100 * a:>9.1f} {100 * b:>7.1f}")
    print(f"oracle ACR {oracle['acr']:.3f}. Neither is a certificate: the envelope picks the "
          "best log per radius on the test inputs, the oracle the best per input using its "
          f"label. Entries written to {out}")


def cmd_leaderboard_import_sources(args: argparse.Namespace) -> None:
    from ..leaderboard.sources import import_sources

    done = import_sources(args.manifest, args.out)
    for r in done:
        status = "refused" if r.frame is None else "imported"
        print(f"{r.source.name}: {status}" + (f" ({r.problem})" if r.problem else ""))
    print(f"entries and sources.md in {args.out}")
    refused = [r.source.name for r in done if r.frame is None]
    if refused:
        from ..errors import RsrouterError

        raise RsrouterError(f"{len(refused)} log(s) refused, no protocol producing them: "
                            f"{', '.join(refused)} (see {args.out}/sources.md)")


def cmd_leaderboard_fetch_sources(args: argparse.Namespace) -> None:
    from ..leaderboard.fetching import fetch_sources

    written = fetch_sources(args.manifest, args.into)
    target = Path(args.into) / Path(args.manifest).name if args.into else Path(args.manifest)
    print(f"{len(written)} pinned file(s) fetched and checked; next: rsrouter leaderboard "
          f"import-sources {target} --out DIR")


def cmd_leaderboard_publish(args: argparse.Namespace) -> None:
    from ..leaderboard.publishing import publish

    where = publish(args.site, to=args.to, git_remote=args.git_remote, hub=args.hub,
                    endpoint=args.endpoint, replace=args.replace)
    print(f"published to {where}")
