"""``rsrouter router train``."""

from __future__ import annotations

import argparse

from .common import add_hub_opts, add_trust_opt, device_name, pick_device, registry_of, warn


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
