"""``rsrouter experts``: train, make-denoised, register, list, show, pull, verify and remove
(here); import and import-denoiser (:mod:`.experts_import`); push and certify-card
(:mod:`.experts_publish`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RsrouterError
from . import experts_import, experts_publish
from .common import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    SIGMA_HELP,
    add_hub_opts,
    add_trust_opt,
    catalog_of,
    check_sigma,
    device_name,
    pick_device,
    registry_of,
    sigma_list,
    table,
)


def add_experts(sub) -> None:
    """``experts`` and every subcommand, in the order ``--help`` lists them."""
    experts = sub.add_parser("experts", help="train, register, pull, verify, publish experts")
    esub = experts.add_subparsers(dest="experts_command", required=True)
    _add_train(esub)
    _add_registration(esub)
    experts_import.add_import(esub)
    experts_publish.add_publish(esub)


def _add_train(esub) -> None:
    p = esub.add_parser("train", help="train an expert with Gaussian noise augmentation")
    p.add_argument("--dataset", required=True)
    p.add_argument("--arch", required=True, help="cnn_small, cifar_resnet110, a timm name, ...")
    one = p.add_mutually_exclusive_group(required=True)
    one.add_argument("--sigma", type=POSITIVE, help=SIGMA_HELP)
    one.add_argument("--sigmas", type=sigma_list,
                     help="one classifier for every sigma of a comma list (0.25,0.5,1.0): each "
                          "example's sigma drawn from it; its card serves each (REF#sigma=S)")
    p.add_argument("--sigma-weights", type=sigma_list,
                   help="with --sigmas: the probability of drawing each (default uniform)")
    p.add_argument("--noise-copies", type=COUNT, default=1,
                   help="noisy copies per example (consistency regularization needs >= 2)")
    p.add_argument("--consistency", type=sigma_list, metavar="LAMBDA,ETA",
                   help="consistency regularization (Jeong & Shin 2020): lambda * KL to the "
                        "mean prediction + eta * its entropy, over the copies")
    p.add_argument("--epochs", type=COUNT, default=20)
    p.add_argument("--batch-size", type=COUNT, default=128)
    p.add_argument("--lr", type=POSITIVE, default=0.05)
    p.add_argument("--weight-decay", type=NON_NEGATIVE, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="name recorded in the card (default: OUT's name)")
    p.add_argument("--data-root")
    p.add_argument("--device", type=device_name, default=None)
    p.add_argument("--out", required=True, help="expert folder to write (rerun to resume)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_experts_train)

    p = esub.add_parser("make-denoised", help="a denoised-smoothing family: a diffusion "
                                              "denoiser in front of a classifier, every sigma")
    p.add_argument("--classifier", required=True,
                   help="the clean classifier: registered name, folder, hf:// or git+ source "
                        "(its card gives the architecture and normalization)")
    p.add_argument("--denoiser", required=True,
                   help="hf://org/name[@rev] (pinned to the commit) or a folder, in diffusers' "
                        "DDPMPipeline layout (unet/, scheduler/)")
    p.add_argument("--sigmas", type=sigma_list, required=True, help="e.g. 0.25,0.5,1.0")
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="the card folder to write")
    add_hub_opts(p)
    p.set_defaults(func=cmd_experts_make_denoised)


def _add_registration(esub) -> None:
    p = esub.add_parser("register", help="register a folder, hf://org/name[@rev] or "
                                         "git+URL[@rev]")
    p.add_argument("source", help="expert folder, hf://org/name[@branch|tag|sha] or "
                                  "git+URL[@branch|tag|sha]")
    p.add_argument("--name", required=True)
    p.add_argument("--project", action="store_true",
                   help="write to the project's experts/registry.yaml, not the user registry")
    p.add_argument("--replace", action="store_true",
                   help="replace the entry of a name registered with other pins (the same pins "
                        "are no error without it: the entry then points at SOURCE)")
    add_hub_opts(p)
    add_trust_opt(p)
    p.set_defaults(func=cmd_experts_register)
    p = esub.add_parser("list", help="table of registered experts (and where the files are)")
    add_hub_opts(p)
    p.set_defaults(func=cmd_experts_list)
    p = esub.add_parser("show", help="an expert's registration and card")
    p.add_argument("name", help="registered name")
    add_hub_opts(p)
    p.set_defaults(func=cmd_experts_show)
    for verb, helptext, func in (("pull", "download and verify", cmd_experts_pull),
                                 ("verify", "check card, both sha256 and a strict load",
                                  cmd_experts_verify)):
        p = esub.add_parser(verb, help=helptext)
        p.add_argument("name", help="registered name" + (", hf:// or git+ source"
                                                         if verb == "pull" else ""))
        add_hub_opts(p)
        add_trust_opt(p)
        p.set_defaults(func=func)
    p = esub.add_parser("remove", help="unregister an expert")
    p.add_argument("name", help="registered name")
    p.add_argument("--project", action="store_true",
                   help="remove from the project's experts/registry.yaml (the bundled zoo)")
    p.set_defaults(func=cmd_experts_remove)


def cmd_experts_train(args: argparse.Namespace) -> None:
    from ..training.expert import TrainConfig, train_expert

    for s in [args.sigma] if args.sigmas is None else args.sigmas:
        check_sigma(s)
    if args.consistency is not None and (len(args.consistency) != 2 or args.noise_copies < 2):
        raise RsrouterError("--consistency takes LAMBDA,ETA and needs --noise-copies >= 2")
    lam, eta = args.consistency or (0.0, 0.0)
    try:
        config = TrainConfig(dataset=args.dataset, arch=args.arch, sigma=args.sigma,
                             epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, seed=args.seed,
                             sigmas=tuple(args.sigmas) if args.sigmas else None,
                             sigma_weights=tuple(args.sigma_weights) if args.sigma_weights
                             else None, noise_copies=args.noise_copies,
                             consistency_lambda=lam, consistency_eta=eta)
        config.validate()
    except ValueError as e:
        raise RsrouterError(str(e)) from None
    out = train_expert(config, args.out, data_root=args.data_root,
                       device=pick_device(args.device), name=args.name,
                       progress=not args.no_progress)
    name = args.name or Path(out).name
    print(f"expert written to {out}\nnext: rsrouter experts register {out} --name {name}")


def cmd_experts_make_denoised(args: argparse.Namespace) -> None:
    from ..registry.denoised_card import make_denoised_card

    for s in args.sigmas:
        check_sigma(s)
    out = make_denoised_card(args.classifier, args.denoiser, args.sigmas, args.out,
                             registry=registry_of(args), name=args.name)
    print(f"denoised expert family written to {out} (every sigma: {out}#sigma=S)\n"
          f"next: rsrouter experts register {out} --name NAME")


def cmd_experts_register(args: argparse.Namespace) -> None:
    reg = registry_of(args)
    before = reg.entries().get(args.name)
    entry = reg.register(args.source, args.name, project=args.project, replace=args.replace)
    sigma = (f"sigma {entry.sigma}" if entry.sigmas is None else
             f"sigmas {', '.join(f'{v:g}' for v in entry.sigmas)}: {entry.name}#sigma=S")
    pins = (entry.weights_sha256, entry.config_sha256)
    if before is None:
        done = f"registered {entry.name}"
    elif (before.weights_sha256, before.config_sha256) != pins:
        done = (f"replaced {entry.name} (was {before.uri}, weights sha256 "
                f"{before.weights_sha256[:12]}...)")
    elif before.uri != entry.uri:
        done = (f"{entry.name} is already registered with the same pins; it now points at "
                f"{entry.uri} (was {before.uri})")
    else:
        done = f"{entry.name} is already registered with the same pins"
    print(f"{done}: {entry.uri} ({sigma}, {entry.dataset}, weights sha256 {pins[0][:12]}..., "
          f"config sha256 {pins[1][:12]}...) in {entry.registry}")


def cmd_experts_list(args: argparse.Namespace) -> None:
    reg = catalog_of(args)
    rows = [{"name": e.name, "dataset": e.dataset, "arch": e.architecture,
             "sigma": e.sigma if e.sigmas is None else ",".join(f"{s:g}" for s in e.sigmas)
             + (" (denoised)" if e.kind == "denoised" else ""),
             "source": e.source, "revision": (e.revision or "-")[:12],
             "cached": "yes" if reg.is_cached(e) else "no"} for e in reg.entries().values()]
    if not rows:
        print("no experts registered; `rsrouter experts register SOURCE --name NAME`")
        return
    print(table(rows))
    print(f"\nregistries: {reg.project_file} (project), {reg.user_file} (yours)")


def cmd_experts_show(args: argparse.Namespace) -> None:
    import json

    reg = catalog_of(args)
    entry = reg.get(args.name)
    card = reg.show(entry)
    print(f"name: {entry.name}\nsource: {entry.uri}\nregistry: {entry.registry}\n"
          f"weights_sha256: {entry.weights_sha256}\nconfig_sha256: {entry.config_sha256}\n"
          f"cached: {card is not None}")
    if card is not None:
        print(json.dumps(card.to_config(), indent=2))


def cmd_experts_pull(args: argparse.Namespace) -> None:
    print(f"verified: {registry_of(args).pull(args.name)}")


def cmd_experts_verify(args: argparse.Namespace) -> None:
    card = registry_of(args).verify(args.name)
    print(f"{args.name}: OK (card schema, sha256 of config.json and of weights "
          f"{card.weights_sha256[:12]}..., strict load)")


def cmd_experts_remove(args: argparse.Namespace) -> None:
    entry = registry_of(args).remove(args.name, project=args.project)
    print(f"removed {entry.name} from {entry.registry}")
