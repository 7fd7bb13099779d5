"""The ``rsrouter`` command: thin argument parsing over the library.

Only argparse and rsrouter's light modules are imported here: torch, timm and pandas are imported
by the commands that use them, so ``--help``, ``--version``, ``experts list/show`` and argument
errors answer at once. Every argument is checked by argparse before any file is created.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

from .. import __version__
from ..errors import RsrouterError

# ---- argument types: a bad value is refused before anything is loaded or written -------------


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _float_in(low: float, high: float | None, what: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not (value > low and (high is None or value < high)):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    parse.__name__ = what
    return parse


def _sigma_list(text: str) -> list[float]:
    """A comma list of numbers >= 0 (sigmas, weights, normalization)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") \
            from None
    if not values or any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers >= 0, got {text!r}")
    return values


def _device_name(text: str) -> str:
    import re

    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


_device_name.__name__ = "device"
COUNT = _int_at_least(1)
PROBABILITY = _float_in(0.0, 1.0, "in (0, 1)")
POSITIVE = _float_in(0.0, None, "> 0")
NON_NEGATIVE = _float_in(-1e-300, None, ">= 0")
SIGMA_HELP = "noise level in pixel units (inputs in [0, 1]; 64/255 = 0.25, not 64)"
REPLACE_HELP = ("let an added entry replace one it collides with (the same measurement with "
                "other results, or the same benchmark and method name); refused otherwise")


def _trust_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-code", action="store_true",
                   help="allow cards whose architecture is 'module:factory' (imports and runs "
                        "that module); off by default")


def _hub_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--endpoint", help="Hub endpoint (default $HF_ENDPOINT or huggingface.co)")
    p.add_argument("--offline", action="store_true", default=None,
                   help="use the local caches only (as HF_HUB_OFFLINE=1)")


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
    p.add_argument("--max", "--max-index", dest="max", type=_int_at_least(-1), default=-1,
                   help="stop before this index (-1: all); rerun with a larger one to grow a run "
                        "(--max-index under torchrun)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    p.add_argument("--device", type=_device_name, default=None,
                   help="auto (default: cuda if any), cpu, cuda, cuda:1 ...; under torchrun one "
                        "GPU per process")
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
    p.add_argument("--num", "--num-inputs", dest="num", type=COUNT, default=100,
                   help="test images (default 100)")
    p.add_argument("--n", "--N", type=COUNT, default=2000, help="estimation samples (default 2000)")
    p.add_argument("--batch-size", type=COUNT, default=2500)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("certify", help="certify a dataset with an expert or a routed ensemble")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="expert: registered name, folder, hf://org/name[@rev] or "
                                       "git+URL[@rev]")
    which.add_argument("--router", help="router folder: certify the routed ensemble")
    p.add_argument("--alpha-split", type=PROBABILITY, default=0.5,
                   help="share of alpha given to the router (default 0.5)")
    p.add_argument("--certificate", choices=("pinned", "set"), default="pinned",
                   help="with --router: pinned (Dual RS: the router keeps its choice; only the "
                        "chosen expert runs) or set (the router may switch among experts that "
                        "agree; every expert runs). See docs/theory.md")
    p.add_argument("--sigma", type=POSITIVE, help="noise level (default: the expert card's)")
    _hub_opts(p)
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
    p.add_argument("--device", type=_device_name, default=None)
    p.add_argument("--no-progress", action="store_true")
    _hub_opts(p)
    _trust_opt(p)
    p.set_defaults(func=cmd_router_train)

    dualrs = sub.add_parser("dualrs", help="full Dual RS: one classifier for every sigma and its "
                                           "variance estimator, trained in rounds")
    dsub = dualrs.add_subparsers(dest="dualrs_command", required=True)
    p = dsub.add_parser("train", help="run rounds 0..R-1 (each benchmarked on validation; "
                                      "resumable, round by round)")
    p.add_argument("--config", required=True, help="Dual RS config (YAML, docs/dualrs.md)")
    p.add_argument("--rounds", "--num-rounds", dest="rounds", type=COUNT, default=2,
                   help="rounds to run (default 2: round 0 and one fine-tuning round)")
    p.add_argument("--out", required=True, help="run folder (rerun with more rounds to go on)")
    p.add_argument("--device", type=_device_name, default=None)
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

    bench = sub.add_parser("bench", help="benchmark every method on the same inputs")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    p = bsub.add_parser("run", help="run a benchmark config (resumable: counts are stored)")
    p.add_argument("--config", required=True, help="benchmark config (YAML)")
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--device", type=_device_name, default=None)
    p.add_argument("--no-progress", action="store_true")
    _hub_opts(p)
    _trust_opt(p)
    p.set_defaults(func=cmd_bench_run)
    p = bsub.add_parser("report", help="rebuild the summary, curves and entries from the TSVs")
    p.add_argument("dir", help="results folder of `bench run`")
    p.set_defaults(func=cmd_bench_report)

    board = sub.add_parser("leaderboard", help="build, extend and publish a leaderboard")
    lsub = board.add_subparsers(dest="leaderboard_command", required=True)
    p = lsub.add_parser("build", help="merge entries into leaderboard.json/.md and index.html")
    p.add_argument("sources", nargs="+", help="results folders, entry folders or entry files")
    p.add_argument("--out", required=True, help="site folder to write")
    p.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    p.set_defaults(func=cmd_leaderboard_build)
    p = lsub.add_parser("import-tsv", help="add a published certification log (Cohen's format)")
    p.add_argument("log", help="TSV with idx label predict radius correct")
    p.add_argument("--dataset", required=True)
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
    p = lsub.add_parser("publish", help="publish a built site (merging what is already there)")
    p.add_argument("site", help="folder written by `leaderboard build`")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", help="a folder (e.g. a web root)")
    where.add_argument("--git-remote", help="a git remote (branch main)")
    where.add_argument("--hub", help="a Hub dataset repo: hf://datasets/org/name")
    p.add_argument("--endpoint")
    p.add_argument("--replace", action="store_true", help=REPLACE_HELP)
    p.set_defaults(func=cmd_leaderboard_publish)

    experts = sub.add_parser("experts", help="train, register, pull, verify, publish experts")
    esub = experts.add_subparsers(dest="experts_command", required=True)
    p = esub.add_parser("train", help="train an expert with Gaussian noise augmentation")
    p.add_argument("--dataset", required=True)
    p.add_argument("--arch", required=True, help="cnn_small, cifar_resnet110, a timm name, ...")
    one = p.add_mutually_exclusive_group(required=True)
    one.add_argument("--sigma", type=POSITIVE, help=SIGMA_HELP)
    one.add_argument("--sigmas", type=_sigma_list,
                     help="one classifier for every sigma of a comma list (0.25,0.5,1.0): each "
                          "example's sigma drawn from it; its card serves each (REF#sigma=S)")
    p.add_argument("--sigma-weights", type=_sigma_list,
                   help="with --sigmas: the probability of drawing each (default uniform)")
    p.add_argument("--noise-copies", type=COUNT, default=1,
                   help="noisy copies per example (consistency regularization needs >= 2)")
    p.add_argument("--consistency", type=_sigma_list, metavar="LAMBDA,ETA",
                   help="consistency regularization (Jeong & Shin 2020): lambda * KL to the "
                        "mean prediction + eta * its entropy, over the copies")
    p.add_argument("--epochs", type=COUNT, default=20)
    p.add_argument("--batch-size", type=COUNT, default=128)
    p.add_argument("--lr", type=POSITIVE, default=0.05)
    p.add_argument("--weight-decay", type=NON_NEGATIVE, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="", help="name recorded in the card (default: OUT's name)")
    p.add_argument("--data-root")
    p.add_argument("--device", type=_device_name, default=None)
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
    p.add_argument("--sigmas", type=_sigma_list, required=True, help="e.g. 0.25,0.5,1.0")
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True, help="the card folder to write")
    _hub_opts(p)
    p.set_defaults(func=cmd_experts_make_denoised)

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
    _hub_opts(p)
    _trust_opt(p)
    p.set_defaults(func=cmd_experts_register)
    p = esub.add_parser("list", help="table of registered experts (and where the files are)")
    _hub_opts(p)
    p.set_defaults(func=cmd_experts_list)
    p = esub.add_parser("show", help="an expert's registration and card")
    p.add_argument("name", help="registered name")
    _hub_opts(p)
    p.set_defaults(func=cmd_experts_show)
    for verb, helptext, func in (("pull", "download and verify", cmd_experts_pull),
                                 ("verify", "check card, both sha256 and a strict load",
                                  cmd_experts_verify)):
        p = esub.add_parser(verb, help=helptext)
        p.add_argument("name", help="registered name" + (", hf:// or git+ source"
                                                         if verb == "pull" else ""))
        _hub_opts(p)
        _trust_opt(p)
        p.set_defaults(func=func)
    p = esub.add_parser("remove", help="unregister an expert")
    p.add_argument("name", help="registered name")
    p.add_argument("--project", action="store_true",
                   help="remove from the project's experts/registry.yaml (the bundled zoo)")
    p.set_defaults(func=cmd_experts_remove)
    p = esub.add_parser("import", help="convert a Cohen/SmoothAdv/state-dict checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--format", required=True, choices=("cohen", "smoothadv", "state_dict"))
    p.add_argument("--arch", help="architecture (default: the checkpoint's 'arch')")
    p.add_argument("--sigma", type=POSITIVE, required=True, help=SIGMA_HELP)
    p.add_argument("--dataset", required=True)
    p.add_argument("--resize", type=_int_list,
                   help="H,W (or one side) the network was trained at: the noisy images are "
                        "resized to it before the network (e.g. 224 for a ViT on CIFAR-10)")
    p.add_argument("--resize-mode", default="bicubic", choices=("nearest", "bilinear", "bicubic"))
    p.add_argument("--resize-antialias", action="store_true",
                   help="PyTorch's antialiased kernels (interpolate(antialias=True); they differ "
                        "when upsampling too): Carlini et al.'s ViT input")
    p.add_argument("--mean", type=_sigma_list, help="the network's input normalization, one "
                                                    "value per channel (default: the "
                                                    "checkpoint's, else the dataset's)")
    p.add_argument("--std", type=_sigma_list)
    p.add_argument("--name", default="")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_experts_import)
    p = esub.add_parser("import-denoiser", help="convert an improved-diffusion checkpoint "
                                                "(Nichol & Dhariwal) to a diffusers denoiser "
                                                "folder for make-denoised")
    p.add_argument("checkpoint", help="the .pt state dict (read weights-only: tensors, no code)")
    p.add_argument("--preset",
                   help="the flags of a released checkpoint (cifar10-uncond-50M: "
                        "cifar10_uncond_50M_500K.pt, the one Carlini et al. use)")
    p.add_argument("--image-size", type=int, help="training flag --image_size")
    p.add_argument("--num-channels", type=int)
    p.add_argument("--num-res-blocks", type=int)
    p.add_argument("--num-heads", type=int, help="attention heads (not in the weights: a "
                                                 "wrong value converts silently into another "
                                                 "network; released checkpoints use 4)")
    p.add_argument("--attention-resolutions", type=_int_list, help="e.g. 16,8")
    p.add_argument("--channel-mult", type=_int_list, help="default: improved-diffusion's for "
                                                          "the image size")
    p.add_argument("--learn-sigma", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--diffusion-steps", type=int)
    p.add_argument("--noise-schedule", choices=("linear", "cosine"))
    p.add_argument("--rescale-timesteps", action=argparse.BooleanOptionalAction, default=None,
                   help="the network was fed t * 1000 / T (improved-diffusion's default)")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--out", required=True, help="denoiser folder to write")
    p.set_defaults(func=cmd_experts_import_denoiser)
    p = esub.add_parser("push", help="publish an expert or router folder to the Hub or a git "
                                     "remote")
    p.add_argument("folder")
    p.add_argument("--repo", help="Hub repo org/name (optional with --git-remote)")
    p.add_argument("--private", action="store_true")
    p.add_argument("--git-remote", help="push to this git remote (path or URL) instead of the Hub")
    p.add_argument("--endpoint")
    _trust_opt(p)
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
    _trust_opt(p)
    p.set_defaults(func=cmd_experts_certify_card)
    return parser


# ---- helpers ---------------------------------------------------------------------------------


def _warn(message: str) -> None:
    print(f"rsrouter: warning: {message}", file=sys.stderr)


def _check_sigma(sigma: float | None, flag: str = "--sigma") -> None:
    """sigma is in pixel units of inputs in [0, 1]: above 1 is almost surely the 0-255 scale."""
    if sigma is not None and sigma > 1:
        _warn(f"{flag} {sigma:g} is above 1, but sigma is in pixel units of inputs in [0, 1]; "
              f"on the 0-255 scale that is {sigma / 255:.3g} (see docs/experts.md)")


def _device(name: str | None) -> str:
    """Join torchrun's process group if there is one and pick the device: the flag, else cuda
    when there is one (under torchrun, this rank's GPU). A CUDA device that is not there is an
    error here, not a traceback later. Ranks other than 0 print nothing to stdout."""
    import torch

    from ..distributed import setup

    name = None if name == "auto" else name
    if name is not None and name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise RsrouterError(f"--device {name}: this machine has {count} CUDA device(s) "
                                f"visible to torch; use --device cpu"
                                + (f" or cuda:0 ... cuda:{count - 1}" if count else ""))
    if name == "mps" and not torch.backends.mps.is_available():
        raise RsrouterError("--device mps: no Apple GPU is available; use --device cpu")
    try:
        dist, device = setup(name)
    except ValueError as e:
        raise RsrouterError(str(e)) from None
    if not dist.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - one report, from rank 0
    return device


def _registry(args: argparse.Namespace):
    from ..registry.core import Registry

    return Registry(endpoint=getattr(args, "endpoint", None),
                    offline=getattr(args, "offline", None),
                    trust_code=getattr(args, "trust_code", False))


def _catalog(args: argparse.Namespace):
    """The registered experts as listed (loads nothing: no torch)."""
    from ..registry.entries import Catalog

    return Catalog(endpoint=getattr(args, "endpoint", None),
                   offline=getattr(args, "offline", None))


def _table(rows: list[dict]) -> str:
    """A plain text table (no pandas: `experts list` answers at once)."""
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(str(r[c]).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _every(k: int) -> str:
    """'every test image', 'every 2nd test image', 'every 20th test image'."""
    if k == 1:
        return "every test image"
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"every {k}{suffix} test image"


def _check_dataset(expert, dataset) -> None:
    info = dataset.info
    card = expert.card
    if info.num_classes != card.num_classes or tuple(info.input_size) != tuple(card.input_size):
        raise RsrouterError(
            f"dataset {info.name} has {info.num_classes} classes of input size "
            f"{list(info.input_size)} but expert {expert.name} expects {card.num_classes} classes "
            f"of input size {list(card.input_size)} (trained on {card.dataset})")


def _print_summary(paths: dict[str, str], plot: str | None = None) -> None:
    from ..results.curves import plot_curves, summary_table
    from ..results.tsv import read_tsv

    results = {name: read_tsv(path) for name, path in paths.items()}
    table = summary_table(results)
    print("certified accuracy (%) at l2 radius r; ACR = average certified radius")
    print(table.to_string())
    modes = {str(m) for df in results.values() if "mode" in df for m in df["mode"].unique()}
    if modes - {"fp32"}:
        print(f"note: modes {sorted(modes)}: bf16/compile results are not floating-point exact")
    if plot:
        print(f"plot: {plot_curves(results, plot)}")


# ---- commands --------------------------------------------------------------------------------


def cmd_certify(args: argparse.Namespace) -> None:
    if args.router:
        return _certify_routed(args)
    from ..data import data_identity, load_dataset, subset_indices
    from ..results.runs import certify_dataset, run_settings

    if args.certificate != "pinned":
        raise RsrouterError("--certificate applies to --router only (an expert's certificate is "
                            "Cohen et al.'s)")
    from ..errors import SigmaNotServedError

    _check_sigma(args.sigma)
    registry, kw = _registry(args), dict(device=_device(args.device), compile=args.compile,
                                         precision=args.precision)
    try:  # weights that serve several sigmas: --sigma names one of them
        expert = registry.load(args.model, sigma=args.sigma, **kw)
    except SigmaNotServedError as e:
        if args.sigma is None:
            raise
        try:  # a fixed-sigma expert, smoothed at another sigma (warned below)
            expert = registry.load(args.model, **kw)
        except SigmaNotServedError:
            raise e from None  # shared weights: only the sigmas they serve
    if args.sigma is not None and args.sigma != expert.sigma:
        _warn(f"certifying at sigma={args.sigma} but the expert was trained at "
              f"sigma={expert.sigma}")
        expert.sigma = args.sigma
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    _check_dataset(expert, dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    settings = run_settings({"expert": expert}, data_identity(dataset), n0=args.n0, n=args.n,
                            alpha=args.alpha, seed=args.seed, mode=expert.mode)
    if expert.mode != "fp32":
        print(f"note: {expert.mode} mode is not floating-point exact; the TSV's mode column "
              "says so", file=sys.stderr)
    certify_dataset(expert, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=args.seed, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    _print_summary({expert.name: args.out})


def _certify_routed(args: argparse.Namespace) -> None:
    from ..certify.routed import ROUTED_EXTRAS, routed_extras
    from ..certify.set_certificate import SET_EXTRAS, set_extras
    from ..data import data_identity, load_dataset, subset_indices
    from ..results.runs import certify_dataset, routed_models, run_settings
    from ..routing.load import load_routed

    if args.sigma is not None:
        raise RsrouterError("--sigma applies to --model only; a router's experts keep their own")
    routed = load_routed(args.router, device=_device(args.device), registry=_registry(args),
                         alpha_split=args.alpha_split, compile=args.compile,
                         precision=args.precision)
    dataset = load_dataset(args.dataset, args.split, args.data_root)
    _check_dataset(routed.experts[0], dataset)
    indices = subset_indices(len(dataset), args.skip, args.max)
    extra = {"certificate": "set"} if args.certificate == "set" else {}
    settings = run_settings(routed_models(routed), data_identity(dataset), n0=args.n0, n=args.n,
                            alpha=args.alpha, seed=args.seed, mode=routed.mode,
                            alpha_split=args.alpha_split, **extra)
    if args.certificate == "set":
        certifier = SimpleNamespace(certify_batch=routed.certify_set_batch)
        extras, row_extras = SET_EXTRAS, set_extras
    else:
        certifier, extras, row_extras = routed, ROUTED_EXTRAS, routed_extras
    certify_dataset(certifier, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=args.seed, settings=settings,
                    extras=extras, row_extras=row_extras,
                    progress=not args.no_progress, desc=f"certify routed ({args.certificate})")
    _print_summary({"routed": args.out})


def cmd_router_train(args: argparse.Namespace) -> None:
    from ..cards.router import read_router_card
    from ..routing.config import load_config
    from ..training.router import train_router

    cfg = load_config(args.config)
    out = train_router(cfg, args.out, registry=_registry(args), device=_device(args.device),
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
            _warn(f"the router sends {100 * share:.0f}% of its training inputs to {top}: the "
                  "routed ensemble will behave like that one expert. Try a lower "
                  "labels.temperature, train.class_weights: true or more labels.n (see "
                  "docs/routers.md)")
    print(f"router written to {out}; certify with: rsrouter certify --router {out} "
          f"--dataset {cfg.data.dataset} --out routed.tsv")


def cmd_dualrs_train(args: argparse.Namespace) -> None:
    from ..distributed import current
    from ..dualrs.config import load_dualrs_config
    from ..dualrs.loop import train_dualrs
    from ..dualrs.rounds import best_round

    cfg = load_dualrs_config(args.config)
    results = train_dualrs(cfg, args.out, rounds=args.rounds, device=_device(args.device),
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


def cmd_summary(args: argparse.Namespace) -> None:
    paths = {}
    for item in args.tsv:
        name, _, path = item.rpartition("=")
        paths[name or Path(path).stem] = path
    _print_summary(paths, args.plot)


def cmd_experts_train(args: argparse.Namespace) -> None:
    from ..training.expert import TrainConfig, train_expert

    for s in [args.sigma] if args.sigmas is None else args.sigmas:
        _check_sigma(s)
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
    out = train_expert(config, args.out, data_root=args.data_root, device=_device(args.device),
                       name=args.name, progress=not args.no_progress)
    name = args.name or Path(out).name
    print(f"expert written to {out}\nnext: rsrouter experts register {out} --name {name}")


def cmd_experts_make_denoised(args: argparse.Namespace) -> None:
    from ..registry.denoised_card import make_denoised_card

    for s in args.sigmas:
        _check_sigma(s)
    out = make_denoised_card(args.classifier, args.denoiser, args.sigmas, args.out,
                             registry=_registry(args), name=args.name)
    print(f"denoised expert family written to {out} (every sigma: {out}#sigma=S)\n"
          f"next: rsrouter experts register {out} --name NAME")


def cmd_experts_register(args: argparse.Namespace) -> None:
    reg = _registry(args)
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
    reg = _catalog(args)
    rows = [{"name": e.name, "dataset": e.dataset, "arch": e.architecture,
             "sigma": e.sigma if e.sigmas is None else ",".join(f"{s:g}" for s in e.sigmas)
             + (" (denoised)" if e.kind == "denoised" else ""),
             "source": e.source, "revision": (e.revision or "-")[:12],
             "cached": "yes" if reg.is_cached(e) else "no"} for e in reg.entries().values()]
    if not rows:
        print("no experts registered; `rsrouter experts register SOURCE --name NAME`")
        return
    print(_table(rows))
    print(f"\nregistries: {reg.project_file} (project), {reg.user_file} (yours)")


def cmd_experts_show(args: argparse.Namespace) -> None:
    import json

    reg = _catalog(args)
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
    entry = _registry(args).remove(args.name, project=args.project)
    print(f"removed {entry.name} from {entry.registry}")


def cmd_experts_import(args: argparse.Namespace) -> None:
    from ..registry.importers import import_checkpoint

    _check_sigma(args.sigma)
    resize = None
    if args.resize:
        from ..cards.header import ResizeSpec

        size = args.resize * 2 if len(args.resize) == 1 else args.resize
        resize = ResizeSpec(tuple(size), args.resize_mode, args.resize_antialias)
    out = import_checkpoint(args.checkpoint, args.out, fmt=args.format, sigma=args.sigma,
                            dataset=args.dataset, arch=args.arch, name=args.name,
                            resize=resize, mean=args.mean, std=args.std)
    print(f"expert written to {out}; next: rsrouter experts certify-card {out} --out "
          f"{Path(out).name}.tsv, then publish it (rsrouter experts push {out} --repo ORG/NAME)")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") \
            from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def cmd_experts_import_denoiser(args: argparse.Namespace) -> None:
    from dataclasses import fields, replace

    from ..registry.diffusion import PRESETS, ImprovedDiffusionConfig, convert_improved_diffusion

    given = {f.name: getattr(args, f.name) for f in fields(ImprovedDiffusionConfig)
             if getattr(args, f.name, None) is not None}
    if args.preset and args.preset not in PRESETS:
        raise RsrouterError(f"--preset {args.preset!r}: unknown; known: {', '.join(PRESETS)} "
                            "(or give the checkpoint's training flags)")
    if args.preset:
        cfg = replace(PRESETS[args.preset], **given)
    elif "image_size" not in given:
        raise RsrouterError("give --preset (e.g. cifar10-uncond-50M) or the checkpoint's "
                            "training flags, at least --image-size")
    else:
        cfg = ImprovedDiffusionConfig(**given)
    out = convert_improved_diffusion(args.checkpoint, args.out, cfg)
    print(f"denoiser folder written to {out}\nnext: rsrouter experts make-denoised "
          f"--classifier CLASSIFIER --denoiser {out} --sigmas 0.25,0.5,1.0 --out FAMILY")


def cmd_experts_push(args: argparse.Namespace) -> None:
    import json

    from ..cards.pins import CONFIG_FILE
    from ..registry.expert import verify_folder
    from ..routing.load import load_router
    from ..sources.git import git_uri_for
    from ..sources.publish import push_expert

    if not args.repo and not args.git_remote:
        raise RsrouterError("give --repo ORG/NAME (the Hub) or --git-remote URL (any git remote)")
    config = Path(args.folder) / CONFIG_FILE
    is_router = config.is_file() and "rs_router" in json.loads(config.read_text())
    trust = _registry(args).trust
    if is_router:  # checks before upload
        load_router(args.folder, trust_code=trust)
    else:
        verify_folder(args.folder, trust_code=trust)
    sha = push_expert(args.folder, args.repo, private=args.private, git_remote=args.git_remote,
                      endpoint=args.endpoint)
    name = Path(args.folder).resolve().name
    if name in _registry(args).entries():  # the folder's own registration: suggest a new name
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
    from ..cards.expert import STANDARD_RADII, read_card, write_card
    from ..data import data_identity, load_dataset, subset_indices
    from ..registry.expert import load_expert_folder
    from ..results.curves import certified_accuracy
    from ..results.runs import certify_dataset, run_settings
    from ..results.tsv import read_tsv

    if read_card(args.folder).shared:
        raise RsrouterError(f"{args.folder} serves several sigmas; certify-card writes one "
                            "sigma's results into a card. Benchmark it instead (rsrouter bench "
                            "run, one expert method per REF#sigma=S; docs/benchmarks.md)")
    expert = load_expert_folder(args.folder, trust_code=_registry(args).trust)
    dataset = load_dataset(expert.card.dataset, "test", args.data_root)
    step = max(1, len(dataset) // args.num)
    indices = subset_indices(len(dataset), step)[: args.num]
    settings = run_settings({"expert": expert}, data_identity(dataset), n0=args.n0, n=args.n,
                            alpha=args.alpha, seed=0, mode=expert.mode)
    certify_dataset(expert, dataset, indices, args.out, n0=args.n0, n=args.n, alpha=args.alpha,
                    batch_size=args.batch_size, seed=0, settings=settings,
                    progress=not args.no_progress, desc=f"certify {expert.name}")
    acc = certified_accuracy(read_tsv(args.out), STANDARD_RADII)
    card = read_card(args.folder)
    card.certified = {"accuracy": {str(r): round(float(a), 4) for r, a in acc.items()},
                      "n0": args.n0, "n": args.n, "alpha": args.alpha,
                      "num_inputs": len(indices), "split": "test", "inputs": _every(step)}
    write_card(args.folder, card)
    print(" ".join(f"r={r}: {100 * a:.1f}%" for r, a in acc.items()))
    reg = _registry(args)
    here = Path(args.folder).resolve()
    for entry in reg.entries().values():
        if not entry.is_remote and entry.folder().resolve() == here:
            _warn(f"{args.folder}/config.json now records these results, so its sha256 changed "
                  f"and the registration {entry.name!r} no longer matches it; redo it: rsrouter "
                  f"experts remove {entry.name} && rsrouter experts register {args.folder} "
                  f"--name {entry.name}")


def cmd_bench_run(args: argparse.Namespace) -> None:
    from ..bench.config import load_bench_config
    from ..bench.harness import run_bench

    cfg = load_bench_config(args.config)
    device = _device(args.device)
    out = run_bench(cfg, args.out, registry=_registry(args), progress=not args.no_progress,
                    device=device)
    print((Path(out) / "summary.md").read_text())
    print(f"results: {out} (summary.md, curves.png, one TSV per method, entries/)")


def cmd_bench_report(args: argparse.Namespace) -> None:
    from ..bench.report import build_report

    build_report(args.dir)
    print((Path(args.dir) / "summary.md").read_text())


def cmd_leaderboard_build(args: argparse.Namespace) -> None:
    from ..leaderboard.board import build_site

    site = build_site(args.sources, args.out, replace=args.replace)
    print(f"leaderboard: {site / 'index.html'} ({site / 'leaderboard.md'})")


def cmd_leaderboard_import(args: argparse.Namespace) -> None:
    from ..leaderboard.board import import_tsv

    path = import_tsv(args.log, dataset=args.dataset, method=args.method,
                      benchmark=args.benchmark, source=args.source, n=args.n, n0=args.n0,
                      alpha=args.alpha, sigma=args.sigma, out=args.out)
    print(f"entry written to {path}")


def cmd_leaderboard_publish(args: argparse.Namespace) -> None:
    from ..leaderboard.board import publish

    where = publish(args.site, to=args.to, git_remote=args.git_remote, hub=args.hub,
                    endpoint=args.endpoint, replace=args.replace)
    print(f"published to {where}")


def cmd_demo(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from ..bench.demo import DEMO_PROTOCOL, run_demo

    run_demo(Path(args.out), num=args.num,
             protocol=replace(DEMO_PROTOCOL, n=args.n, batch_size=args.batch_size),
             progress=not args.no_progress)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    _warn(str(message))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument (argparse printed why)
        return int(e.code or 0)
    from ..runtime import tune_allocator

    tune_allocator()
    shown, stdout = warnings.showwarning, sys.stdout
    warnings.showwarning = _one_line_warning
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
    except BrokenPipeError:  # output piped into `head` and the like
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        warnings.showwarning = shown
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        if "torch.distributed" in sys.modules:
            from ..distributed import teardown

            teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
