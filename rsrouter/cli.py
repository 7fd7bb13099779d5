"""The ``rsrouter`` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import RsrouterError


def _trust_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="allow cards whose architecture is 'module:factory' (imports and runs "
                        "that module); off by default")


def _add_certify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="digits | fashion-mnist | cifar10 | imagenet")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--data-root", help="folder holding the dataset (else $RSROUTER_DATA, system)")
    p.add_argument("--n0", type=int, default=100, help="selection samples (default 100)")
    p.add_argument("--n", type=int, default=100_000, help="estimation samples (default 100000)")
    p.add_argument("--alpha", type=float, default=0.001, help="failure probability (0.001)")
    p.add_argument("--batch-size", type=int, default=1000, help="noisy copies per forward")
    p.add_argument("--skip", type=int, default=1, help="certify every SKIP-th input")
    p.add_argument("--max", type=int, default=-1, help="stop before this index (-1: all)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if any)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="bf16 autocast is faster but not exact; labelled in every output")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (opt-in)")
    p.add_argument("--out", required=True, help="output TSV (rerun to resume)")
    p.add_argument("--no-progress", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsrouter",
        description="Certified robustness by randomized smoothing with routed noise levels.")
    parser.add_argument("--version", action="version", version=f"rsrouter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="certify the bundled Fashion-MNIST experts and router, plot")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--num", type=int, default=100, help="test images (default 100)")
    p.add_argument("--n", type=int, default=2000, help="estimation samples (default 2000)")
    p.add_argument("--batch-size", type=int, default=2500)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("certify", help="certify a dataset with an expert or a routed ensemble")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="expert folder, registered name or hf://org/name[@rev]")
    which.add_argument("--router", help="router folder: certify the routed ensemble")
    p.add_argument("--alpha-split", type=float, default=0.5,
                   help="share of alpha given to the router (default 0.5)")
    p.add_argument("--sigma", type=float, help="noise level (default: the expert card's)")
    p.add_argument("--endpoint", help="Hub endpoint for hf:// models")
    p.add_argument("--offline", action="store_true", default=None, help="Hub cache only")
    _trust_opt(p)
    _add_certify_args(p)
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("summary", help="certified accuracy table (and plot) of TSV files")
    p.add_argument("tsv", nargs="+", help="certification TSVs (name=path to label a curve)")
    p.add_argument("--plot", help="write the accuracy-versus-radius curves to this PNG")
    p.set_defaults(func=cmd_summary)

    router = sub.add_parser("router", help="train a smoothed router from a plugin config")
    rsub = router.add_subparsers(dest="router_command", required=True)
    p = rsub.add_parser("train", help="label, train and save a router (resumable)")
    p.add_argument("--config", required=True, help="plugin config (YAML)")
    p.add_argument("--out", required=True, help="router folder to write")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    _trust_opt(p)
    p.set_defaults(func=cmd_router_train)

    experts = sub.add_parser("experts", help="train, register, pull, verify experts")
    esub = experts.add_subparsers(dest="experts_command", required=True)
    p = esub.add_parser("train", help="train an expert with Gaussian noise augmentation")
    p.add_argument("--dataset", required=True)
    p.add_argument("--arch", required=True, help="cnn_small, cifar_resnet110, a timm name, ...")
    p.add_argument("--sigma", type=float, required=True, help="noise level in pixel units")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="name recorded in the card")
    p.add_argument("--data-root")
    p.add_argument("--device", default=None)
    p.add_argument("--out", required=True, help="expert folder to write (rerun to resume)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_experts_train)

    def hub_opts(p):
        p.add_argument("--endpoint", help="Hub endpoint (default $HF_ENDPOINT or huggingface.co)")
        p.add_argument("--offline", action="store_true", default=None,
                       help="use the local cache only (as HF_HUB_OFFLINE=1)")

    p = esub.add_parser("register", help="register a folder or hf://org/name[@revision]")
    p.add_argument("source", help="expert folder or hf://org/name[@branch|tag|sha]")
    p.add_argument("--name", required=True)
    p.add_argument("--project", action="store_true",
                   help="write to the project's experts/registry.yaml, not the user registry")
    hub_opts(p)
    _trust_opt(p)
    p.set_defaults(func=cmd_experts_register)
    p = esub.add_parser("list", help="table of registered experts")
    hub_opts(p)
    p.set_defaults(func=cmd_experts_list)
    for verb, helptext, func in (("show", "an expert's card", cmd_experts_show),
                                 ("pull", "download and verify", cmd_experts_pull),
                                 ("verify", "check card, sha256 and weights", cmd_experts_verify),
                                 ("remove", "unregister an expert", cmd_experts_remove)):
        p = esub.add_parser(verb, help=helptext)
        p.add_argument("name", help="registered name" + (" or hf://..." if verb == "pull" else ""))
        hub_opts(p)
        if verb in ("pull", "verify"):
            _trust_opt(p)
        p.set_defaults(func=func)
    p = esub.add_parser("import", help="convert a Cohen/SmoothAdv/state-dict checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--format", required=True, choices=("cohen", "smoothadv", "state_dict"))
    p.add_argument("--arch", help="architecture (default: the checkpoint's 'arch')")
    p.add_argument("--sigma", type=float, required=True, help="training noise, pixel units")
    p.add_argument("--dataset", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_experts_import)
    p = esub.add_parser("push", help="publish an expert or router folder to the Hub (or git)")
    p.add_argument("folder")
    p.add_argument("--repo", required=True, help="org/name")
    p.add_argument("--private", action="store_true")
    p.add_argument("--git-remote", help="push to this git remote (path or URL) instead of the Hub")
    p.add_argument("--endpoint")
    _trust_opt(p)
    p.set_defaults(func=cmd_experts_push)
    p = esub.add_parser("certify-card", help="certify an expert and write the results in its card")
    p.add_argument("folder", help="expert folder (its config.json and README.md are updated)")
    p.add_argument("--num", type=int, default=500, help="test inputs, evenly spaced (500)")
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=2500)
    p.add_argument("--out", required=True, help="per-input TSV (resumable)")
    p.add_argument("--no-progress", action="store_true")
    _trust_opt(p)
    p.set_defaults(func=cmd_experts_certify_card)
    return parser


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def cmd_certify(args: argparse.Namespace) -> None:
    if args.router:
        return _certify_routed(args)
    from .data import load_dataset, subset_indices
    from .runs import certify_dataset, run_settings

    expert = _registry(args).load(args.model, device=_device(args.device), compile=args.compile,
                                  precision=args.precision)
    if args.sigma is not None and args.sigma != expert.sigma:
        if args.sigma <= 0:
            raise RsrouterError(f"--sigma must be > 0, got {args.sigma}")
        warnings.warn(f"certifying at sigma={args.sigma} but the expert was trained at "
                      f"sigma={expert.sigma}", stacklevel=1)
        expert.sigma = args.sigma
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    _check_dataset(expert, dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    settings = run_settings({"expert": expert}, dataset=args.dataset, split=args.split,
                            data_root=args.data_root, n0=args.n0, n=args.n, alpha=args.alpha,
                            seed=args.seed, mode=expert.mode)
    if expert.mode != "fp32":
        print(f"note: {expert.mode} mode is not floating-point exact; the TSV's mode column "
              "says so", file=sys.stderr)
    certify_dataset(expert, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=args.seed, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    _print_summary({expert.name: args.out})


def _certify_routed(args: argparse.Namespace) -> None:
    from .bench.compare import routed_models
    from .data import load_dataset, subset_indices
    from .router import ROUTED_EXTRAS, load_routed, routed_extras
    from .runs import certify_dataset, run_settings

    if args.sigma is not None:
        raise RsrouterError("--sigma applies to --model only; a router's experts keep their own")
    routed = load_routed(args.router, device=_device(args.device), registry=_registry(args),
                         alpha_split=args.alpha_split, compile=args.compile,
                         precision=args.precision)
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    _check_dataset(routed.experts[0], dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    settings = run_settings(routed_models(routed), dataset=args.dataset, split=args.split,
                            data_root=args.data_root, n0=args.n0, n=args.n, alpha=args.alpha,
                            seed=args.seed, mode=routed.mode, alpha_split=args.alpha_split)
    certify_dataset(routed, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=args.seed, settings=settings,
                    extras=ROUTED_EXTRAS, row_extras=routed_extras,
                    progress=not args.no_progress, desc="certify routed")
    _print_summary({"routed": args.out})


def cmd_router_train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .train import train_router

    cfg = load_config(args.config)
    out = train_router(cfg, args.out, registry=_registry(args), device=_device(args.device),
                       progress=not args.no_progress)
    print(f"router written to {out}; certify with: rsrouter certify --router {out} "
          f"--dataset {cfg.data.dataset} --out routed.tsv")


def _check_dataset(expert, dataset) -> None:
    info = dataset.info
    card = expert.card
    if info.num_classes != card.num_classes or tuple(info.input_size) != tuple(card.input_size):
        raise RsrouterError(
            f"dataset {info.name} has {info.num_classes} classes of input size "
            f"{list(info.input_size)} but expert {expert.name} expects {card.num_classes} classes "
            f"of input size {list(card.input_size)} (trained on {card.dataset})")


def _print_summary(paths: dict[str, str], plot: str | None = None) -> None:
    from .results import plot_curves, read_tsv, summary_table

    results = {name: read_tsv(path) for name, path in paths.items()}
    table = summary_table(results)
    print("certified accuracy (%) at l2 radius r; ACR = average certified radius")
    print(table.to_string())
    modes = {str(m) for df in results.values() if "mode" in df for m in df["mode"].unique()}
    if modes - {"fp32"}:
        print(f"note: modes {sorted(modes)}: bf16/compile results are not floating-point exact")
    if plot:
        print(f"plot: {plot_curves(results, plot)}")


def cmd_summary(args: argparse.Namespace) -> None:
    paths = {}
    for item in args.tsv:
        name, _, path = item.rpartition("=")
        paths[name or Path(path).stem] = path
    _print_summary(paths, args.plot)


def cmd_experts_train(args: argparse.Namespace) -> None:
    from .train import TrainConfig, train_expert

    config = TrainConfig(dataset=args.dataset, arch=args.arch, sigma=args.sigma,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, seed=args.seed)
    out = train_expert(config, args.out, data_root=args.data_root, device=_device(args.device),
                       name=args.name, progress=not args.no_progress)
    print(f"expert written to {out}")


def _registry(args: argparse.Namespace):
    from .registry import Registry

    return Registry(endpoint=getattr(args, "endpoint", None),
                    offline=getattr(args, "offline", None),
                    trust_code=getattr(args, "trust_code", False))


def cmd_experts_register(args: argparse.Namespace) -> None:
    entry = _registry(args).register(args.source, args.name, project=args.project)
    print(f"registered {entry.name}: {entry.uri} (sigma {entry.sigma}, {entry.dataset}, "
          f"weights sha256 {entry.weights_sha256[:12]}...) in {entry.registry}")


def cmd_experts_list(args: argparse.Namespace) -> None:
    import pandas as pd

    reg = _registry(args)
    rows = [{"name": e.name, "dataset": e.dataset, "arch": e.architecture, "sigma": e.sigma,
             "source": e.source, "revision": (e.revision or "-")[:12],
             "cached": "yes" if reg.is_cached(e) else "no"} for e in reg.entries().values()]
    if not rows:
        print("no experts registered; `rsrouter experts register SOURCE --name NAME`")
        return
    print(pd.DataFrame(rows).to_string(index=False))


def cmd_experts_show(args: argparse.Namespace) -> None:
    import json

    reg = _registry(args)
    entry = reg.get(args.name)
    card = reg.show(entry)
    print(f"name: {entry.name}\nsource: {entry.uri}\nregistry: {entry.registry}\n"
          f"weights_sha256: {entry.weights_sha256}\nconfig_sha256: {entry.config_sha256}\n"
          f"cached: {card is not None}")
    if card is not None:
        print(json.dumps(card.to_config(), indent=2))


def cmd_experts_pull(args: argparse.Namespace) -> None:
    print(f"verified: {_registry(args).pull(args.name)}")


def cmd_experts_verify(args: argparse.Namespace) -> None:
    card = _registry(args).verify(args.name)
    print(f"{args.name}: OK (card schema, sha256 of config.json and of weights "
          f"{card.weights_sha256[:12]}..., strict load)")


def cmd_experts_remove(args: argparse.Namespace) -> None:
    entry = _registry(args).remove(args.name)
    print(f"removed {entry.name} from {entry.registry}")


def cmd_experts_import(args: argparse.Namespace) -> None:
    from .importers import import_checkpoint

    out = import_checkpoint(args.checkpoint, args.out, fmt=args.format, sigma=args.sigma,
                            dataset=args.dataset, arch=args.arch, name=args.name)
    print(f"expert written to {out}; certify it or `rsrouter experts push {out} --repo ORG/NAME`")


def cmd_experts_push(args: argparse.Namespace) -> None:
    import json

    from .card import CONFIG_FILE
    from .expert import verify_folder
    from .publish import push_expert
    from .router import load_router

    config = Path(args.folder) / CONFIG_FILE
    is_router = config.is_file() and "rs_router" in json.loads(config.read_text())
    trust = _registry(args).trust
    if is_router:  # checks before upload
        load_router(args.folder, trust_code=trust)
    else:
        verify_folder(args.folder, trust_code=trust)
    sha = push_expert(args.folder, args.repo, private=args.private, git_remote=args.git_remote,
                      endpoint=args.endpoint)
    print(f"pushed {args.folder} to {args.repo} at commit {sha}\n"
          f"register it with: rsrouter experts register hf://{args.repo}@{sha} --name NAME")


def cmd_experts_certify_card(args: argparse.Namespace) -> None:
    from .card import STANDARD_RADII, read_card, write_card
    from .data import load_dataset, subset_indices
    from .expert import load_expert_folder
    from .results import certified_accuracy, read_tsv
    from .runs import certify_dataset, run_settings

    expert = load_expert_folder(args.folder, trust_code=_registry(args).trust)
    dataset = load_dataset(expert.card.dataset, "test")
    indices = subset_indices(len(dataset), max(1, len(dataset) // args.num))[: args.num]
    settings = run_settings({"expert": expert}, dataset=expert.card.dataset, split="test",
                            data_root=None, n0=args.n0, n=args.n, alpha=args.alpha, seed=0,
                            mode=expert.mode)
    certify_dataset(expert, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=0, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    acc = certified_accuracy(read_tsv(args.out), STANDARD_RADII)
    card = read_card(args.folder)
    card.certified = {"accuracy": {str(r): round(float(a), 4) for r, a in acc.items()},
                      "n0": args.n0, "n": args.n, "alpha": args.alpha,
                      "num_inputs": len(indices), "split": "test",
                      "inputs": f"every {max(1, len(dataset) // args.num)}th test image"}
    write_card(args.folder, card)
    print(" ".join(f"r={r}: {100 * a:.1f}%" for r, a in acc.items()))


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), num=args.num, n=args.n, batch_size=args.batch_size,
             progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .runtime import tune_allocator

    tune_allocator()
    try:
        args.func(args)
    except (RsrouterError, ValueError, FileNotFoundError) as e:
        if os.environ.get("RSROUTER_DEBUG"):
            raise
        print(f"rsrouter: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nrsrouter: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
