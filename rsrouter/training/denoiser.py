"""Train a small DDPM denoiser (Ho et al. 2020) for denoised-smoothing experts.

The denoiser is written in diffusers' DDPMPipeline layout (:mod:`rsrouter.cards.denoiser`) with
its recipe in ``training.json``; a card then names it (``rsrouter experts make-denoised``).
diffusers is imported when training starts (``rsrouter[diffusion]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..cards.denoiser import DENOISER_FILES
from ..data import DatasetInfo, TensorImageDataset
from ..files import FileLock, atomic_write_json, check_resume
from ..registry.denoised import import_diffusers, save_denoiser, timestep_for_sigma
from .fit import CHECKPOINT, cosine_lr, fit

TRAINING_FILE = "training.json"  # the recipe of a denoiser trained here; not pinned, not read


@dataclass
class DenoiserTrainConfig:
    """Settings of a small DDPM denoiser (recorded in its training.json and the card).

    The UNet has ``len(block_out_channels)`` levels of ``DownBlock2D``/``UpBlock2D`` (no
    attention but the mid block's); each level but the last halves the resolution, so the image
    side must be divisible by ``2 ** (levels - 1)`` (28 -> 14 -> 7 with 3 levels).
    ``max_sigma``: train only the timesteps ``t <= timestep_for_sigma(max_sigma)`` (the ones
    experts up to that sigma use); None trains every timestep (standard DDPM).

    The defaults are sized for a CPU (28x28 Fashion-MNIST, one core: a 55,000-image epoch in
    about 2.2 minutes, about 800 denoised forwards/s with cnn_small); paper-scale denoisers
    (Carlini et al. use 256-channel ImageNet and CIFAR-10 DDPMs) need a GPU.
    """

    block_out_channels: tuple[int, ...] = (8, 16, 16)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    max_sigma: float | None = None
    seed: int = 0
    train_size: int | None = None

    def validate(self, image_size: tuple[int, int, int] | None = None) -> None:
        """Raise ValueError for settings that cannot train (or that do not fit ``image_size``)."""
        if self.epochs < 1 or self.batch_size < 1 or self.layers_per_block < 1:
            raise ValueError("epochs, batch_size and layers_per_block must be >= 1")
        if not self.block_out_channels or any(c % self.norm_num_groups
                                              for c in self.block_out_channels):
            raise ValueError(f"block_out_channels {list(self.block_out_channels)} must be "
                             f"non-empty multiples of norm_num_groups ({self.norm_num_groups})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if image_size is not None:
            factor = 2 ** (len(self.block_out_channels) - 1)
            _, h, w = image_size
            if h % factor or w % factor:
                raise ValueError(f"a UNet with {len(self.block_out_channels)} levels halves the "
                                 f"image {len(self.block_out_channels) - 1} times: {h}x{w} is not "
                                 f"divisible by {factor}; use fewer levels (28x28: at most 3)")


def make_unet(config: DenoiserTrainConfig, image_size: tuple[int, int, int]):
    """A freshly initialized ``UNet2DModel`` of ``config`` for images ``(C, H, W)``.

    Raises:
        ImportError: diffusers is not installed.
        ValueError: the UNet does not fit the image size (checked with one forward).
    """
    diffusers = import_diffusers()
    config.validate(image_size)
    c, h, w = image_size
    levels = len(config.block_out_channels)
    unet = diffusers.UNet2DModel(
        sample_size=h if h == w else (h, w), in_channels=c, out_channels=c,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block, norm_num_groups=config.norm_num_groups,
        down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels)
    try:
        with torch.no_grad():
            out = unet(torch.zeros(1, c, h, w), 0).sample
    except RuntimeError as e:
        raise ValueError(f"the UNet ({list(config.block_out_channels)}) does not run on {h}x{w} "
                         f"images: {e}") from e
    if out.shape != (1, c, h, w):
        raise ValueError(f"the UNet maps {h}x{w} images to {list(out.shape[2:])}; choose "
                         "another number of levels")
    return unet


class _EpsilonModel(nn.Module):
    """The UNet as ``training.train.fit`` sees a model: ``net`` holds the trained weights."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.net = unet

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x, t).sample


def _images_sha256(images: torch.Tensor) -> str:
    return hashlib.sha256(images.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _finished(out: Path) -> bool:
    return ((out / TRAINING_FILE).is_file() and not (out / CHECKPOINT).is_file()
            and all((out / name).is_file() for name in DENOISER_FILES))


def train_denoiser(images: torch.Tensor, out: str | os.PathLike, config: DenoiserTrainConfig,
                   *, device: str = "cpu", progress: bool = True,
                   stop_after_epoch: int | None = None) -> Path:
    """Train a DDPM denoiser on ``images`` [N, C, H, W] in [0, 1]; write its folder; returns it.

    Epsilon-prediction loss on images mapped to [-1, 1], ``t`` uniform (up to ``max_sigma``'s
    timestep), AdamW with cosine decay; shuffling, ``t`` and noise come from
    ``noise_generator(seed, epoch, "train")``. A checkpoint after every epoch under
    ``out/.train/`` makes a rerun resume (``stop_after_epoch`` ends early, as an interruption
    would); a rerun of a finished folder with the same settings and images returns at once.

    Raises:
        ImportError: diffusers is not installed.
        ValueError: bad settings, images not [N, C, H, W], or a UNet that does not fit them.
        ResumeError: ``out`` holds a checkpoint or a denoiser trained with other settings.
        LockedError: another process is training into ``out``.
    """
    diffusers = import_diffusers()
    out = Path(out)
    if not torch.is_tensor(images) or images.dim() != 4 or len(images) == 0:
        raise ValueError("images must be a non-empty tensor [N, C, H, W] of pixels in [0, 1]")
    if config.train_size is not None:
        images = images[: config.train_size]
    image_size = tuple(int(v) for v in images.shape[1:])
    config.validate(image_size)
    settings = {**asdict(config), "images": {"shape": list(images.shape),
                                             "sha256": _images_sha256(images)}}
    settings = json.loads(json.dumps(settings))
    with FileLock(Path(os.path.realpath(out)) / ".lock", str(out)):
        if _finished(out):
            check_resume(out, settings,
                         json.loads((out / TRAINING_FILE).read_text()).get("settings"),
                         "choose another folder or delete it")
            return out
        scheduler = diffusers.DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                                            beta_schedule=config.beta_schedule)
        abar = scheduler.alphas_cumprod.to(torch.float32)
        t_top = (len(abar) - 1 if config.max_sigma is None
                 else timestep_for_sigma(abar, config.max_sigma))
        torch.manual_seed(config.seed)
        model = _EpsilonModel(make_unet(config, image_size)).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                      weight_decay=config.weight_decay)
        info = DatasetInfo("denoiser-images", 1, image_size, (0.5,) * image_size[0],
                           (0.5,) * image_size[0])
        data = TensorImageDataset(images, torch.zeros(len(images), dtype=torch.long), info)
        steps = math.ceil(len(data) / config.batch_size)
        abar_dev = abar.to(device)

        def step(forward, x, y, gen, local):
            t = torch.randint(0, t_top + 1, (len(x),), generator=gen)
            noise = torch.randn(x.shape, generator=gen)  # the whole batch's, then this rank's
            t, noise, x = local(t).to(device), local(noise).to(device), local(x)
            a = abar_dev[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * (2 * x - 1) + (1 - a).sqrt() * noise
            loss = torch.nn.functional.mse_loss(forward(x_t, t), noise)
            return loss, {"loss": float(loss.detach())}

        stats = fit(model, optimizer, data, config.batch_size, step,
                    lambda e, i: cosine_lr(config.lr, e * steps + i, steps * config.epochs),
                    epochs=config.epochs, steps_per_epoch=steps, seed=config.seed, out=out,
                    settings=settings, device=device, desc="train denoiser", progress=progress,
                    stop_after_epoch=stop_after_epoch)
        if stats is None:
            return out
        unet = model.net.cpu().eval()
        save_denoiser(out, unet, scheduler)
        atomic_write_json(out / TRAINING_FILE, {
            "method": "DDPM epsilon prediction (Ho et al. 2020), images in [-1, 1]",
            "timesteps": f"uniform in [0, {t_top}]", "optimizer": "AdamW",
            "schedule": "cosine, per step", "train_inputs": len(data),
            "parameters": sum(p.numel() for p in unet.parameters()), "final": stats,
            "settings": settings})
        (out / CHECKPOINT).unlink(missing_ok=True)
        if (out / CHECKPOINT).parent.is_dir() and not any((out / CHECKPOINT).parent.iterdir()):
            (out / CHECKPOINT).parent.rmdir()
    return out
