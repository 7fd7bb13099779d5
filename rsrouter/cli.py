"""The ``rsrouter`` command: thin argument parsing over the library."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from . import __version__
from .errors import RsrouterError


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

    p = sub.add_parser("demo", help="certify the bundled Fashion-MNIST zoo and plot the curves")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--num", type=int, default=100, help="test images (default 100)")
    p.add_argument("--n", type=int, default=2000, help="estimation samples (default 2000)")
    p.add_argument("--batch-size", type=int, default=2500)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("certify", help="certify a dataset with an expert (Cohen et al.'s CERTIFY)")
    p.add_argument("--model", required=True, help="expert folder, registered name or hf://org/name")
    p.add_argument("--sigma", type=float, help="noise level (default: the expert card's)")
    _add_certify_args(p)
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("summary", help="certified accuracy table (and plot) of TSV files")
    p.add_argument("tsv", nargs="+", help="certification TSVs (name=path to label a curve)")
    p.add_argument("--plot", help="write the accuracy-versus-radius curves to this PNG")
    p.set_defaults(func=cmd_summary)

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
    return parser


def _device(name: str | None) -> str:
    import torch

    return name or ("cuda" if torch.cuda.is_available() else "cpu")


def cmd_certify(args: argparse.Namespace) -> None:
    from .data import load_dataset, subset_indices
    from .expert import load_expert_folder
    from .runs import certify_dataset

    expert = load_expert_folder(args.model, device=_device(args.device), compile=args.compile,
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
    settings = {"model": str(args.model), "weights_sha256": expert.card.weights_sha256,
                "dataset": args.dataset, "split": args.split, "sigma": expert.sigma,
                "n0": args.n0, "n": args.n, "alpha": args.alpha, "seed": args.seed,
                "skip": args.skip, "max": args.max, "mode": expert.mode}
    if expert.mode != "fp32":
        print(f"note: {expert.mode} mode is not floating-point exact; the TSV's mode column "
              "says so", file=sys.stderr)
    certify_dataset(expert, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=args.seed, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    _print_summary({expert.name: args.out})


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


def cmd_demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(Path(args.out), num=args.num, n=args.n, batch_size=args.batch_size,
             progress=not args.no_progress)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
