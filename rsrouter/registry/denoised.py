"""Denoised-smoothing experts (Carlini et al. 2023): a diffusion denoiser before a clean classifier.

For noise level ``sigma`` (pixel units, inputs in [0, 1]) the noisy input is mapped to [-1, 1],
where its noise has std ``2 sigma``; the denoiser's timestep ``t`` is the first one with
``sqrt(1 - abar_t) / sqrt(abar_t) >= 2 sigma``; the image scaled by ``sqrt(abar_t)`` is then
distributed as the diffusion's ``x_t``, and one epsilon prediction gives
``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (clipped to [-1, 1]), which the classifier
sees as pixels in [0, 1]. One denoiser and one classifier serve every sigma.

A card names its denoiser with a ``rs_expert.denoiser`` block (:mod:`rsrouter.cards.denoiser`);
:func:`load_denoiser` fetches it (:func:`denoiser_folder`), verifies every file against the
block's pins and builds the UNet from its config, strictly loaded from the hashed bytes
(:func:`build_parts`). diffusers is imported by the functions that need it
(``rsrouter[diffusion]``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cards.denoiser import (
    DENOISER_FILES,
    MODEL_INDEX,
    SCHEDULER_CONFIG,
    UNET_CONFIG,
    UNET_WEIGHTS,
    DenoiserFiles,
    check_denoiser_block,
    checked_pins,
    nested_folder,
    read_denoiser,
)
from ..cards.pins import CONFIG_FILE, WEIGHTS_FILE
from ..cards.refs import HF_PREFIX
from ..errors import CardError, IntegrityError
from ..files import atomic_write_json, save_tensors, tensors_from_bytes
from ..sources.base import Resolved
from ..sources.hub import HubSource
from ..sources.schemes import Sources

CPU_CHUNK = 256  # images per UNet pass on the CPU (see DenoisedClassifier)


def import_diffusers():
    """The diffusers module; ImportError naming the extra when it is not installed."""
    try:
        import diffusers
    except ImportError as e:
        raise ImportError("denoised-smoothing experts need diffusers: "
                          "pip install 'rsrouter[diffusion]'") from e
    return diffusers




def timestep_for_sigma(alphas_cumprod: torch.Tensor, sigma: float) -> int:
    """The first index ``t`` with ``sqrt(1 - abar_t) / sqrt(abar_t) >= 2 sigma``.

    ``sigma`` is in pixel units (inputs in [0, 1]); the factor 2 maps it to [-1, 1] images.

    Raises:
        ValueError: sigma is not a positive number, or no timestep of the schedule is that noisy
            (the message names the largest ratio, i.e. the largest sigma it serves).
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number (pixel units), got {sigma!r}")
    abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten().cpu()
    ratio = (1 - abar).sqrt() / abar.sqrt()
    hits = torch.nonzero(ratio >= 2 * sigma)
    if len(hits) == 0:
        top = float(ratio.max()) if len(ratio) else float("nan")
        raise ValueError(f"sigma {sigma}: no timestep of the denoiser's schedule has "
                         f"sqrt(1 - abar_t) / sqrt(abar_t) >= 2 sigma = {2 * sigma}; the largest "
                         f"ratio is {top:.6g}, so it serves sigmas up to {top / 2:.6g}")
    return int(hits[0, 0])


@dataclass(frozen=True)
class DenoiserParts:
    """A built denoiser and its classifier, shared by the experts at every sigma.

    ``alphas_cumprod``: the schedule's cumulative alphas (float64, CPU); ``record``: what was
    read (file hashes, UNet and schedule sizes); ``timestep_scale``: the UNet is fed
    ``timestep_scale * t`` for schedule step ``t`` (improved-diffusion's rescaled timesteps,
    ``rsrouter_timestep_scale`` in its config; 1 for diffusers-trained UNets).
    """

    unet: nn.Module
    classifier: nn.Module
    alphas_cumprod: torch.Tensor
    record: dict[str, Any] = field(default_factory=dict)
    timestep_scale: float = 1.0

    def to(self, device: str | torch.device) -> DenoiserParts:
        """Move both networks to ``device`` (in place); returns ``self``."""
        self.unet.to(device)
        self.classifier.to(device)
        return self


class DenoisedClassifier(nn.Module):
    """The base model of the denoised expert at ``sigma``: pixels in [0, 1] -> logits.

    ``t`` is the denoiser's timestep for ``sigma`` (:func:`timestep_for_sigma`). The UNet and
    classifier are ``parts``' own modules (instances at several sigmas share them); the module
    is put in eval mode. On the CPU the batch is run in chunks of ``cpu_chunk`` images
    (cache-sized: about 1.8x the throughput of one 2,500-image pass on small UNets; 0: one
    pass); the outputs do not depend on it beyond float rounding.

    Raises:
        ValueError: no timestep serves ``sigma``.
    """

    def __init__(self, parts: DenoiserParts, sigma: float, *, cpu_chunk: int = CPU_CHUNK) -> None:
        super().__init__()
        self.parts = parts
        self.unet = parts.unet
        self.classifier = parts.classifier
        self.sigma = float(sigma)
        self.t = timestep_for_sigma(parts.alphas_cumprod, sigma)
        abar = float(parts.alphas_cumprod[self.t])
        self.sqrt_abar = math.sqrt(abar)
        self.sqrt_one_minus_abar = math.sqrt(1.0 - abar)
        self.cpu_chunk = int(cpu_chunk)
        self.timestep_scale = float(parts.timestep_scale)
        self.eval()

    def _model_t(self, device: torch.device) -> int | torch.Tensor:
        """The timestep the UNet is fed: ``t``, or ``timestep_scale * t`` as a float tensor."""
        if self.timestep_scale == 1.0:
            return self.t
        return torch.tensor([self.timestep_scale * self.t], dtype=torch.float32, device=device)

    def denoise(self, x: torch.Tensor) -> torch.Tensor:
        """One-step denoised images in [-1, 1] of noisy pixels ``x`` [B, C, H, W] (one pass)."""
        x_t = self.sqrt_abar * (2 * x - 1)
        eps = self.unet(x_t, self._model_t(x.device)).sample[:, : x.shape[1]]  # learned
        # variance (2C output channels): keep the C epsilon channels
        return ((x_t - self.sqrt_one_minus_abar * eps) / self.sqrt_abar).clamp(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and 0 < self.cpu_chunk < len(x):
            return torch.cat([self.classifier((self.denoise(part) + 1) / 2)
                              for part in x.split(self.cpu_chunk)])
        return self.classifier((self.denoise(x) + 1) / 2)

    def extra_repr(self) -> str:
        scale = f", timestep_scale={self.timestep_scale:g}" if self.timestep_scale != 1 else ""
        return f"sigma={self.sigma}, t={self.t}{scale}"


def _input_channels(classifier: nn.Module) -> int | None:
    """The input channels of ``classifier``: its Normalize layer's, else its first conv's."""
    normalize = getattr(classifier, "normalize", None)
    mean = getattr(normalize, "mean", None)
    if torch.is_tensor(mean):
        return int(mean.numel())
    conv = next((m for m in classifier.modules() if isinstance(m, nn.Conv2d)), None)
    return None if conv is None else conv.in_channels


def split_unet_config(config: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """(the config without rsrouter's ``rsrouter_*`` keys, for diffusers; the timestep scale).

    Raises:
        CardError: ``rsrouter_timestep_scale`` is not a positive number.
    """
    scale = config.get("rsrouter_timestep_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (
            math.isfinite(scale) and scale > 0):
        raise CardError(f"{UNET_CONFIG}: rsrouter_timestep_scale must be a positive number, "
                        f"got {scale!r}")
    return {k: v for k, v in config.items() if not k.startswith("rsrouter_")}, float(scale)


def build_parts(files: DenoiserFiles, classifier: nn.Module, *,
                in_channels: int | None = None) -> DenoiserParts:
    """``UNet2DModel`` and ``DDPMScheduler`` from verified ``files``, with ``classifier``.

    The UNet is built from its config and strictly loaded from ``files.weights`` (never re-read
    from disk), frozen and in eval mode. ``in_channels`` (default: the classifier's Normalize
    layer, else its first convolution) must be the UNet's input channels.

    Raises:
        ImportError: diffusers is not installed.
        CardError: a config diffusers rejects, not an epsilon-predicting UNet2DModel, weights
            that do not fit it, or channels that differ from the classifier's.
        IntegrityError: the weights bytes are not a safetensors file.
    """
    diffusers = import_diffusers()
    where = files.folder
    name = files.unet_config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise CardError(f"{where / UNET_CONFIG}: _class_name is {name!r}; a denoiser here is an "
                        "unconditional diffusers UNet2DModel")
    unet_config, timestep_scale = split_unet_config(files.unet_config)
    try:
        unet = diffusers.UNet2DModel.from_config(unet_config)
        scheduler = diffusers.DDPMScheduler.from_config(files.scheduler_config)
    except (TypeError, ValueError, KeyError, NotImplementedError) as e:
        raise CardError(f"{where}: diffusers rejects the denoiser's config: {e}") from e
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction != "epsilon":
        raise CardError(f"{where / SCHEDULER_CONFIG}: prediction_type is {prediction!r}; one-step "
                        "denoising here needs an epsilon-predicting denoiser")
    tensors, _ = tensors_from_bytes(files.weights, str(where / UNET_WEIGHTS))
    own = unet.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CardError(f"{where / UNET_WEIGHTS}: weights do not match {UNET_CONFIG}: missing "
                        f"keys {missing[:5]}, unexpected keys {unexpected[:5]}")
    for key, value in own.items():
        if tensors[key].shape != value.shape:
            raise CardError(f"{where / UNET_WEIGHTS}: weight {key} has shape "
                            f"{list(tensors[key].shape)} but {UNET_CONFIG} builds "
                            f"{list(value.shape)}")
    unet.load_state_dict(tensors, strict=True)
    unet.eval().requires_grad_(False)
    c_in, c_out = unet.config.in_channels, unet.config.out_channels
    expected = in_channels if in_channels is not None else _input_channels(classifier)
    if expected is not None and c_in != expected:
        raise CardError(f"{where / UNET_CONFIG}: the denoiser takes {c_in} channels but the "
                        f"classifier takes {expected}")
    if c_out < c_in:
        raise CardError(f"{where / UNET_CONFIG}: out_channels {c_out} < in_channels {c_in}; an "
                        "epsilon prediction has one channel per image channel")
    record = {
        "files": dict(files.sha256),
        "unet": {"sample_size": unet.config.sample_size, "in_channels": c_in,
                 "out_channels": c_out,
                 "block_out_channels": list(unet.config.block_out_channels),
                 "layers_per_block": unet.config.layers_per_block,
                 "parameters": sum(p.numel() for p in unet.parameters())},
        "scheduler": {"num_train_timesteps": scheduler.config.num_train_timesteps,
                      "beta_schedule": scheduler.config.beta_schedule,
                      "prediction_type": prediction},
        **({"timestep_scale": timestep_scale} if timestep_scale != 1 else {}),
    }
    alphas = scheduler.alphas_cumprod.detach().to("cpu", torch.float64)
    return DenoiserParts(unet, classifier.eval(), alphas, record, timestep_scale)


def denoiser_folder(block: dict, card_folder: str | os.PathLike, *, endpoint: str | None = None,
                    cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                    card: Resolved | None = None) -> Path:
    """The local folder of a card's denoiser (the fetch step): the Hub snapshot of ``source`` at
    ``revision`` (downloaded into the Hub cache unless cached), else ``card_folder / source``;
    for a card fetched from a remote (``card``), that folder is fetched beside the card's files
    first, from the card's commit.

    Raises:
        CardError: a malformed block, or a folder source that does not exist (or, for a remote
            card, leaves its repository).
        HubError: the files are not cached and cannot be fetched.
    """
    where = str(Path(card_folder) / CONFIG_FILE)
    check_denoiser_block(block, where)
    source = block["source"]
    sources = Sources(endpoint, cache_dir, offline)
    if source.startswith(HF_PREFIX):
        return sources.for_ref(source).fetch(HubSource.pinned(source, block["revision"]),
                                             DENOISER_FILES)
    if card is not None and card.is_remote:
        rel = nested_folder(block, f"{card.uri}: {CONFIG_FILE}")
        sources.for_ref(card.source).fetch(card, [f"{rel.as_posix()}/{f}" for f in DENOISER_FILES])
    folder = Path(card_folder) / source
    if not folder.is_dir():
        raise CardError(f"{where}: rs_expert.denoiser.source {source!r}: no folder {folder}")
    return folder


def load_denoiser(block: dict, card_folder: str | os.PathLike, classifier: nn.Module, *,
                  endpoint: str | None = None, cache_dir: str | os.PathLike | None = None,
                  offline: bool | None = None, card: Resolved | None = None) -> DenoiserParts:
    """Fetch (:func:`denoiser_folder`), verify (every file against ``block['files']``) and build
    a card's denoiser in front of ``classifier``.

    Bytes that fail their pins are never reused: a Hub denoiser's cached files are deleted, and
    a denoiser fetched beside a remote card goes with the card's cached copy (IntegrityError
    saying so). Raises as :func:`denoiser_folder`, :func:`read_denoiser` and :func:`build_parts`.
    """
    folder = denoiser_folder(block, card_folder, endpoint=endpoint, cache_dir=cache_dir,
                             offline=offline, card=card)
    checked_pins(block["files"], folder)  # a malformed pin is the card's fault, not the cache's
    sources = Sources(endpoint, cache_dir, offline)
    try:
        files = read_denoiser(folder, block["files"])
    except IntegrityError as e:
        if block["source"].startswith(HF_PREFIX):
            pinned = HubSource.pinned(block["source"], block["revision"])
            sources.for_ref(pinned.source).discard(pinned, DENOISER_FILES)
            raise IntegrityError(f"{e}; the cached copy of {block['source']}@{block['revision']} "
                                 "was deleted (the next load downloads it again)") from e
        if card is None or not card.is_remote:
            raise
        sources.for_ref(card.source).discard(card, (WEIGHTS_FILE, CONFIG_FILE))
        raise IntegrityError(f"{card.uri}: {e}; the cached copy was deleted") from e
    return build_parts(files, classifier)


def save_denoiser(folder: str | os.PathLike, unet: nn.Module, scheduler, *,
                  extra: dict[str, Any] | None = None) -> DenoiserFiles:
    """Write a diffusers ``UNet2DModel`` and its scheduler in the DDPMPipeline layout (atomic
    writes, safetensors; ``model_index.json`` too, so diffusers loads the folder); ``extra``:
    ``rsrouter_*`` keys added to the UNet's config (:func:`split_unet_config`). Returns the
    files as :func:`read_denoiser` reads them (their hashes go into a card's block)."""
    diffusers = import_diffusers()
    folder = Path(folder)
    if any(not k.startswith("rsrouter_") for k in extra or {}):
        raise ValueError(f"extra UNet config keys must start with rsrouter_, got {list(extra)}")
    save_tensors(folder / UNET_WEIGHTS, unet.state_dict())
    atomic_write_json(folder / UNET_CONFIG, {**json.loads(unet.to_json_string()), **(extra or {})})
    atomic_write_json(folder / SCHEDULER_CONFIG, json.loads(scheduler.to_json_string()))
    atomic_write_json(folder / MODEL_INDEX, {
        "_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", type(scheduler).__name__],
        "unet": ["diffusers", type(unet).__name__]})
    return read_denoiser(folder)

