"""``rsrouter experts push`` (an expert or router folder to the Hub or a git remote) and
``rsrouter experts certify-card`` (an expert's certified accuracy written into its card)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RsrouterError
from .common import COUNT, PROBABILITY, add_trust_opt, protocol_of, registry_of, warn


def add_publish(esub) -> None:
    """``experts push`` and ``experts certify-card``."""
    p = esub.add_parser("push", help="publish an expert or router folder to the Hub or a git "
                                     "remote")
    p.add_argument("folder")
    p.add_argument("--repo", help="Hub repo org/name (optional with --git-remote)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--git-remote", help="push to this git remote (path or URL) instead of the Hub")
    p.add_argument("--endpoint")
    add_trust_opt(p)
    p.set_defaults(func=cmd_experts_push)
    p = esub.add_parser("certify-card", help="certify an expert and write the results in its card")
    p.add_argument("folder", help="expert folder (its config.json and README.md are updated)")
    p.add_argument("--num", "--num-inputs", dest="num", type=COUNT, default=500,
                   help="test inputs, evenly spaced (500)")
    p.add_argument("--n0", "--N0", type=COUNT, default=100)
    p.add_argument("--n", "--N", type=COUNT, default=10_000)
    p.add_argument("--alpha", type=PROBABILITY, default=0.001)
    p.add_argument("--batch-size", type=COUNT, default=2500)
    p.add_argument("--data-root")
    p.add_argument("--out", required=True, help="per-input TSV (resumable)")
    p.add_argument("--no-progress", action="store_true")
    add_trust_opt(p)
    p.set_defaults(func=cmd_experts_certify_card)


def cmd_experts_push(args: argparse.Namespace) -> None:
    from ..routing.push import is_router_folder, push_folder
    from ..sources.git import git_uri_for

    if not args.repo and not args.git_remote:
        raise RsrouterError("give --repo ORG/NAME (the Hub) or --git-remote URL (any git remote)")
    is_router = is_router_folder(args.folder)
    reg = registry_of(args)
    sha = push_folder(args.folder, args.repo, private=args.private, git_remote=args.git_remote,
                      endpoint=args.endpoint, trust_code=reg.trust)
    name = Path(args.folder).resolve().name
    if name in reg.entries():  # the folder's own registration: suggest a new name
        name = f"{name}-{sha[:7]}"
    if is_router:
        print(f"pushed router {args.folder} to {args.git_remote or args.repo} at commit {sha}")
        return
    if args.git_remote:
        print(f"pushed {args.folder} to {args.git_remote} at commit {sha}\n"
              f"register it with: rsrouter experts register {git_uri_for(args.git_remote)}@{sha} "
              f"--name {name}")
        if args.repo:
            print(f"(where that remote is served as the Hub repo {args.repo}: rsrouter experts "
                  f"register hf://{args.repo}@{sha} --name {name})")
        return
    print(f"pushed {args.folder} to {args.repo} at commit {sha}\n"
          f"register it with: rsrouter experts register hf://{args.repo}@{sha} --name {name}")


def cmd_experts_certify_card(args: argparse.Namespace) -> None:
    from ..bench.expert_runs import certify_card, registrations_of

    reg = registry_of(args)
    acc = certify_card(args.folder, args.out, protocol_of(args), num=args.num,
                       data_root=args.data_root, trust_code=reg.trust,
                       progress=not args.no_progress)
    print(" ".join(f"r={r}: {100 * a:.1f}%" for r, a in acc.items()))
    for entry in registrations_of(reg, args.folder):
        warn(f"{args.folder}/config.json now records these results, so its sha256 changed "
             f"and the registration {entry.name!r} no longer matches it; redo it: rsrouter "
             f"experts remove {entry.name} && rsrouter experts register {args.folder} "
             f"--name {entry.name}")
