"""``rsrouter experts import`` (Cohen, SmoothAdv and state-dict checkpoints) and ``rsrouter
experts import-denoiser`` (improved-diffusion checkpoints)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import RsrouterError
from .common import POSITIVE, SIGMA_HELP, check_sigma, int_list, sigma_list


def add_import(esub) -> None:
    """``experts import`` and ``experts import-denoiser``."""
    p = esub.add_parser("import", help="convert a Cohen/SmoothAdv/state-dict checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--format", required=True, choices=("cohen", "smoothadv", "state_dict"))
    p.add_argument("--arch", help="architecture (default: the checkpoint's 'arch')")
    p.add_argument("--sigma", type=POSITIVE, required=True, help=SIGMA_HELP)
    p.add_argument("--dataset", required=True)
    p.add_argument("--resize", type=int_list,
                   help="H,W (or one side) the network was trained at: the noisy images are "
                        "resized to it before the network (e.g. 224 for a ViT on CIFAR-10)")
    p.add_argument("--resize-mode", default="bicubic", choices=("nearest", "bilinear", "bicubic"))
    p.add_argument("--resize-antialias", action="store_true",
                   help="PyTorch's antialiased kernels (interpolate(antialias=True); they differ "
                        "when upsampling too): Carlini et al.'s ViT input")
    p.add_argument("--mean", type=sigma_list, help="the network's input normalization, one "
                                                   "value per channel (default: the "
                                                   "checkpoint's, else the dataset's)")
    p.add_argument("--std", type=sigma_list)
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
    p.add_argument("--attention-resolutions", type=int_list, help="e.g. 16,8")
    p.add_argument("--channel-mult", type=int_list, help="default: improved-diffusion's for "
                                                         "the image size")
    p.add_argument("--learn-sigma", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--diffusion-steps", type=int)
    p.add_argument("--noise-schedule", choices=("linear", "cosine"))
    p.add_argument("--rescale-timesteps", action=argparse.BooleanOptionalAction, default=None,
                   help="the network was fed t * 1000 / T (improved-diffusion's default)")
    p.add_argument("--in-channels", type=int)
    p.add_argument("--out", required=True, help="denoiser folder to write")
    p.set_defaults(func=cmd_experts_import_denoiser)


def cmd_experts_import(args: argparse.Namespace) -> None:
    from ..registry.importers import import_checkpoint

    check_sigma(args.sigma)
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
