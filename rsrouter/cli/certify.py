"""``rsrouter demo``, ``rsrouter certify`` and ``rsrouter summary``."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from ..errors import RsrouterError
from .common import (
    CERTIFICATES,
    COUNT,
    POSITIVE,
    PROBABILITY,
    add_hub_opts,
    add_trust_opt,
    check_sigma,
    device_name,
    int_at_least,
    pick_device,
    protocol_of,
    registry_of,
    warn,
)


def _add_certify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="digits | fashion-mnist | cifar10 | imagenet")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"),
                   help="test (default); validation: the fixed hold-out of the training set "
                        "(docs/benchmarks.md); train: the rest")
    p.add_argument("--data-root", help="folder holding the dataset (else $RSROUTER_DATA, system)")
    p.add_argument("--n0", "--N0", type=COUNT, default=100,
                   help="selection samples (default 100); --N0 as in Cohen et al.'s scripts")
    p.add_argument("--n", "--N", type=COUNT, default=100_000,
                   help="estimation samples (default 100000); under torchrun write --N (torchrun "
                        "reads --n as one of its own options) or put -- after -m rsrouter")
    p.add_argument("--alpha", type=PROBABILITY, default=0.001,
                   help="failure probability (0.001)")
    p.add_argument("--batch-size", type=COUNT, default=1000, help="noisy copies per forward")
    p.add_argument("--skip", type=COUNT, default=1, help="certify every SKIP-th input")
    p.add_argument("--max", "--max-index", dest="max", type=int_at_least(-1), default=-1,
                   help="stop before this index (-1: all); rerun with a larger one to grow a run "
                        "(--max-index under torchrun)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", type=device_name, default=None,
                   help="auto (default: cuda if any), cpu, cuda, cuda:1 ...; under torchrun one "
                        "GPU per process")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16 autocast is faster but not exact; labelled in every output")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    p.add_argument("--out", required=True, help="output TSV (rerun to resume)")
    p.add_argument("--no-progress", action="store_true")


def add_demo(sub) -> None:
    """``demo``."""
    p = sub.add_parser("demo", help="certify the bundled Fashion-MNIST experts and router, plot")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--num", "--num-inputs", dest="num", type=COUNT, default=100,
                   help="test images (default 100)")
    p.add_argument("--n", "--N", type=COUNT, default=2000, help="estimation samples (default 2000)")
    p.add_argument("--batch-size", type=COUNT, default=2500)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


def add_certify(sub) -> None:
    """``certify``."""
    p = sub.add_parser("certify", help="certify a dataset with an expert or a routed ensemble")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="expert: registered name, folder, hf://org/name[@rev] or "
                                       "git+URL[@rev]")
    which.add_argument("--router", help="router folder: certify the routed ensemble")
    p.add_argument("--alpha-split", type=PROBABILITY,
                   help="share of alpha given to the router (default: the router card's "
                        "certificate's, else 0.5)")
    p.add_argument("--certificate", choices=CERTIFICATES,
                   help="with --router (default: the one the router's card names, else "
                        "pinned): pinned (Dual RS: the router keeps its choice; only the chosen "
                        "expert runs), set (the router may switch among experts that agree; "
                        "every expert runs), lazy-set (the set certificate running other "
                        "experts only where their selection votes say they can matter) or "
                        "lazy-set+cascade (and the multiscale cascade where that abstains, with "
                        "the card's fallback_share of alpha, else 0.1). See docs/theory.md")
    p.add_argument("--margin", type=float,
                   help="with --certificate lazy-set(+cascade): the plan's margin in radius units "
                        "(default: the card's, else 0)")
    p.add_argument("--sigma", type=POSITIVE, help="noise level (default: the expert card's)")
    add_hub_opts(p)
    add_trust_opt(p)
    _add_certify_args(p)
    p.set_defaults(func=cmd_certify)


def add_summary(sub) -> None:
    """``summary``."""
    p = sub.add_parser("summary", help="certified accuracy table (and plot) of TSV files")
    p.add_argument("tsv", nargs="+", help="certification TSVs (name=path to label a curve)")
    p.add_argument("--plot", help="write the accuracy-versus-radius curves to this PNG")
    p.set_defaults(func=cmd_summary)


def print_summary(paths: dict[str, str], plot: str | None = None) -> None:
    """Print the summary of the TSVs in ``paths`` (by name) and write their curves to ``plot``."""
    from ..results.summary import read_results, summary_text

    results = read_results(paths)
    print(summary_text(results))
    if plot:
        from ..results.curves import plot_curves

        print(f"plot: {plot_curves(results, plot)}")


def cmd_demo(args: argparse.Namespace) -> None:
    from ..bench.demo import DEMO_PROTOCOL, run_demo

    run_demo(Path(args.out), num=args.num,
             protocol=replace(DEMO_PROTOCOL, n=args.n, batch_size=args.batch_size),
             progress=not args.no_progress)


def cmd_summary(args: argparse.Namespace) -> None:
    paths = {}
    for item in args.tsv:
        name, _, path = item.rpartition("=")
        paths[name or Path(path).stem] = path
    print_summary(paths, args.plot)


def cmd_certify(args: argparse.Namespace) -> None:
    if args.router:
        return _certify_routed(args)
    from ..bench.expert_runs import check_dataset, load_expert_at_sigma
    from ..data import data_identity, load_dataset, subset_indices
    from ..results.runs import certify_dataset, run_settings

    if args.certificate is not None or args.margin is not None:
        raise RsrouterError("--certificate and --margin apply to --router only (an expert's "
                            "certificate is Cohen et al.'s)")
    check_sigma(args.sigma)
    registry, kw = registry_of(args), dict(device=pick_device(args.device),
                                           compile=args.compile, precision=args.precision)
    expert, trained = load_expert_at_sigma(registry, args.model, args.sigma, **kw)
    if trained is not None:
        warn(f"certifying at sigma={args.sigma} but the expert was trained at sigma={trained}")
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    check_dataset(expert, dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    protocol = protocol_of(args)
    settings = run_settings({"expert": expert}, data_identity(dataset), protocol,
                            mode=expert.mode)
    if expert.mode != "fp32":
        print(f"note: {expert.mode} mode is not floating-point exact; the TSV's mode column "
              "says so", file=sys.stderr)
    certify_dataset(expert, dataset, indices, args.out, protocol, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    print_summary({expert.name: args.out})


def _certify_routed(args: argparse.Namespace) -> None:
    from ..bench.expert_runs import check_dataset
    from ..cards.router import LAZY_KINDS
    from ..certify.fallback import DEFAULT_SHARE, FALLBACK_EXTRAS, fallback_extras
    from ..certify.lazy_set import LAZY_SET_EXTRAS, lazy_set_extras
    from ..certify.routed import ROUTED_EXTRAS, routed_extras
    from ..certify.set_certificate import SET_EXTRAS, set_extras
    from ..data import data_identity, load_dataset, subset_indices
    from ..results.runs import certify_dataset, routed_models, run_settings
    from ..routing.load import load_routed

    if args.sigma is not None:
        raise RsrouterError("--sigma applies to --model only; a router's experts keep their own")
    routed = load_routed(args.router, device=pick_device(args.device),
                         registry=registry_of(args), alpha_split=args.alpha_split,
                         compile=args.compile, precision=args.precision)
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    check_dataset(routed.experts[0], dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    card = routed.router.card
    kind = args.certificate or card.certificate_kind
    margin = args.margin if args.margin is not None else float(card.certificate.get("margin", 0))
    if args.margin is not None and kind not in LAZY_KINDS:
        raise RsrouterError(f"--margin applies to the lazy-set certificates only, not {kind}")
    extra = {} if kind == "pinned" else {"certificate": kind}
    if kind in LAZY_KINDS:
        extra["margin"] = margin
    if kind == "lazy-set+cascade":
        extra["fallback_share"] = float(card.certificate.get("fallback_share", DEFAULT_SHARE))
    protocol = protocol_of(args)
    settings = run_settings(routed_models(routed), data_identity(dataset), protocol,
                            mode=routed.mode, alpha_split=routed.alpha_split, **extra)
    if kind == "set":
        certifier = SimpleNamespace(certify_batch=routed.certify_set_batch)
        extras, row_extras = SET_EXTRAS, set_extras
    elif kind == "lazy-set":
        certifier = SimpleNamespace(certify_batch=partial(routed.certify_lazy_batch,
                                                          margin=margin))
        extras, row_extras = LAZY_SET_EXTRAS, lazy_set_extras
    elif kind == "lazy-set+cascade":
        certifier = SimpleNamespace(certify_batch=partial(
            routed.certify_fallback_batch, margin=margin, share=extra["fallback_share"]))
        extras, row_extras = FALLBACK_EXTRAS, fallback_extras
    else:
        certifier = SimpleNamespace(certify_batch=routed.certify_pinned_batch)
        extras, row_extras = ROUTED_EXTRAS, routed_extras
    certify_dataset(certifier, dataset, indices, args.out, protocol, settings=settings,
                    extras=extras, row_extras=row_extras,
                    progress=not args.no_progress, desc=f"certify routed ({kind})")
    print_summary({"routed": args.out})
