"""``rsrouter router train`` and ``rsrouter router certificate``."""

from __future__ import annotations

import argparse

from .common import (
    CERTIFICATES,
    add_hub_opts,
    add_trust_opt,
    device_name,
    pick_device,
    registry_of,
    warn,
)


def add_router(sub) -> None:
    """``router`` and its subcommand ``train``."""
    router = sub.add_parser("router", help="train a smoothed router from a plugin config")
    rsub = router.add_subparsers(dest="router_command", required=True)
    p = rsub.add_parser("train", help="label, train and save a router (resumable)")
    p.add_argument("--config", required=True, help="plugin config (YAML)")
    p.add_argument("--out", required=True, help="router folder to write")
    p.add_argument("--device", type=device_name, default=None)
    p.add_argument("--no-progress", action="store_true")
    add_hub_opts(p)
    add_trust_opt(p)
    p.set_defaults(func=cmd_router_train)
    p = rsub.add_parser("certificate", help="record in a router's card the certificate chosen "
                                            "for it (the default of certify --router and bench)")
    p.add_argument("router", help="router folder")
    p.add_argument("--kind", required=True, choices=CERTIFICATES)
    p.add_argument("--margin", type=float,
                   help="lazy-set(+cascade): the plan's margin (radius units)")
    p.add_argument("--fallback-share", type=float,
                   help="lazy-set+cascade: the share of alpha given to the cascade behind the "
                        "lazy set certificate (default 0.1)")
    p.add_argument("--alpha-split", type=float, default=0.5)
    p.add_argument("--chosen-on", required=True,
                   help="where the choice was made, e.g. the validation benchmark's folder")
    p.set_defaults(func=cmd_router_certificate)


def cmd_router_train(args: argparse.Namespace) -> None:
    from ..cards.router import read_router_card
    from ..routing.config import load_config
    from ..training.router import train_router

    cfg = load_config(args.config)
    out = train_router(cfg, args.out, registry=registry_of(args), device=pick_device(args.device),
                       progress=not args.no_progress)
    card = read_router_card(out)
    names = [e.name for e in card.experts]
    labels = card.labels
    shares = ", ".join(f"{n} {100 * s:.0f}%" for n, s in zip(names, labels.get("best_share", [])))
    print(f"labels: {labels.get('kept')} of {labels.get('inputs')} training inputs kept (certified "
          f"by at least one expert); best expert: {shares}")
    routes = card.training.get("routing", {})
    if routes:
        print("the trained router sends training inputs to: "
              + ", ".join(f"{n} {100 * s:.0f}%" for n, s in routes.items()))
        top, share = max(routes.items(), key=lambda kv: kv[1])
        if share >= 0.95:
            warn(f"the router sends {100 * share:.0f}% of its training inputs to {top}: the "
                 "routed ensemble will behave like that one expert. Try a lower "
                 "labels.temperature, train.class_weights: true or more labels.n (see "
                 "docs/routers.md)")
    print(f"router written to {out}; certify with: rsrouter certify --router {out} "
          f"--dataset {cfg.data.dataset} --out routed.tsv")


def cmd_router_certificate(args: argparse.Namespace) -> None:
    from ..cards.router import LAZY_KINDS, check_certificate, read_router_card, write_router_card
    from ..certify.fallback import DEFAULT_SHARE
    from ..errors import CardError, RsrouterError

    if args.margin is not None and args.kind not in LAZY_KINDS:
        raise RsrouterError("--margin applies to --kind lazy-set and lazy-set+cascade only")
    if args.fallback_share is not None and args.kind != "lazy-set+cascade":
        raise RsrouterError("--fallback-share applies to --kind lazy-set+cascade only")
    card = read_router_card(args.router)
    spec = {"kind": args.kind, "alpha_split": args.alpha_split, "chosen_on": args.chosen_on}
    if args.kind in LAZY_KINDS:
        spec["margin"] = args.margin if args.margin is not None else 0.0
    if args.kind == "lazy-set+cascade":
        spec["fallback_share"] = args.fallback_share if args.fallback_share is not None \
            else DEFAULT_SHARE
    try:
        check_certificate(spec, args.router)
    except CardError as e:
        raise RsrouterError(str(e)) from None
    card.certificate = spec
    write_router_card(args.router, card)
    print(f"{args.router}: certificate {args.kind} recorded (certify --router and bench run use "
          "it unless told otherwise)")
