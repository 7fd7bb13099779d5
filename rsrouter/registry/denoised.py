"""Denoised-smoothing experts (Carlini et al. 2023): a diffusion denoiser before a clean classifier.

For noise level ``sigma`` (pixel units, inputs in [0, 1]) the noisy input is mapped to [-1, 1],
where its noise has std ``2 sigma``; the denoiser's timestep ``t`` is the first one with
``sqrt(1 - abar_t) / sqrt(abar_t) >= 2 sigma``; the image scaled by ``sqrt(abar_t)`` is then
distributed as the diffusion's ``x_t``, and one epsilon prediction gives
``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` (clipped to [-1, 1]), which the classifier
sees as pixels in [0, 1]. One denoiser and one classifier serve every sigma.

A denoiser is a folder in diffusers' DDPMPipeline layout (:data:`DENOISER_FILES`); a card names
it with a ``rs_expert.denoiser`` block (its source and the sha256 of each file). Every file is
read once, hashed and checked; the UNet is built from its config and strictly loaded from the
hashed bytes. diffusers is imported by the functions that need it (``rsrouter[diffusion]``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..cards.card import CONFIG_FILE, check_sha256, is_commit_sha, parse_config
from ..errors import CardError, IntegrityError, ResumeError
from ..files import FileLock, atomic_write_json, read_hashed, save_tensors, tensors_from_bytes
from ..urls import public_url

UNET_CONFIG = "unet/config.json"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
DENOISER_FILES = (UNET_CONFIG, UNET_WEIGHTS, SCHEDULER_CONFIG)
MODEL_INDEX = "model_index.json"  # written for diffusers' DDPMPipeline; never read here
TRAINING_FILE = "training.json"  # the recipe of a denoiser trained here; not pinned, not read
CHECKPOINT = ".train/checkpoint.safetensors"
CPU_CHUNK = 256  # images per UNet pass on the CPU (see DenoisedClassifier)
_BLOCK_KEYS = ("source", "revision", "files")
_FIELD = "rs_expert.denoiser"


def _diffusers():
    """The diffusers module; ImportError naming the extra when it is not installed."""
    try:
        import diffusers
    except ImportError as e:
        raise ImportError("denoised-smoothing experts need diffusers: "
                          "pip install 'rsrouter[diffusion]'") from e
    return diffusers


# ---- the timestep rule and the base model ------------------------------------------------------


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


# ---- reading and building ----------------------------------------------------------------------


@dataclass(frozen=True)
class DenoiserFiles:
    """A denoiser folder read once: the hashed bytes are the bytes used.

    ``sha256`` maps each of :data:`DENOISER_FILES` to the hash of the bytes read.
    """

    folder: Path
    unet_config: dict[str, Any]
    scheduler_config: dict[str, Any]
    weights: bytes
    sha256: dict[str, str]


def read_denoiser(folder: str | os.PathLike, pins: dict[str, str] | None = None) -> DenoiserFiles:
    """Read the three files of a denoiser folder once each and hash them.

    ``pins`` (file name -> sha256, e.g. a card's ``rs_expert.denoiser.files``) must pin every
    file, and each hash must match; None checks nothing (for a folder being described).

    Raises:
        CardError: a file is missing, or a config is not a JSON object.
        IntegrityError: a pin is empty or malformed, or a hash differs (file and both named).
    """
    folder = Path(folder)
    missing = [name for name in DENOISER_FILES if not (folder / name).is_file()]
    if missing:
        raise CardError(f"{folder}: {', '.join(missing)} not found; a denoiser folder has "
                        f"diffusers' DDPMPipeline layout ({', '.join(DENOISER_FILES)})")
    expected = _checked_pins(pins, folder) if pins is not None else {}
    data, hashes = {}, {}
    for name in DENOISER_FILES:
        data[name], hashes[name] = read_hashed(folder / name)
    for name, pinned in expected.items():
        if hashes[name] != pinned:
            raise IntegrityError(f"{folder / name}: sha256 {hashes[name]} does not match "
                                 f"{pinned} pinned by the card ({_FIELD}.files); the denoiser "
                                 "changed since, nothing was loaded (restore it, or rebuild the "
                                 "card on purpose)")
    return DenoiserFiles(folder, parse_config(data[UNET_CONFIG], str(folder / UNET_CONFIG)),
                         parse_config(data[SCHEDULER_CONFIG], str(folder / SCHEDULER_CONFIG)),
                         data[UNET_WEIGHTS], hashes)


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
    diffusers = _diffusers()
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


# ---- the card's denoiser block -----------------------------------------------------------------


def check_denoiser_block(block: object, where: str) -> None:
    """Schema check of a card's ``rs_expert.denoiser`` block (hash values are checked on load).

    Raises:
        CardError: naming the field that is missing or wrong.
    """
    if not isinstance(block, dict):
        raise CardError(f"{where}: field {_FIELD} must be an object with {', '.join(_BLOCK_KEYS)}"
                        f", got {block!r}")
    unknown = sorted(set(block) - set(_BLOCK_KEYS))
    if unknown:
        raise CardError(f"{where}: unknown field {_FIELD}.{unknown[0]} (known: "
                        f"{', '.join(_BLOCK_KEYS)})")
    source, revision = block.get("source"), block.get("revision")
    if not isinstance(source, str) or not source.strip():
        raise CardError(f"{where}: field {_FIELD}.source must be a folder relative to the card or "
                        f"hf://org/name, got {source!r}")
    if source.startswith("hf://"):
        from ..sources.hub import parse_hf_uri

        try:
            ref = parse_hf_uri(source)
        except ValueError as e:
            raise CardError(f"{where}: field {_FIELD}.source: {e}") from e
        if ref.revision is not None:
            raise CardError(f"{where}: field {_FIELD}.source {source!r}: give the commit in "
                            f"{_FIELD}.revision, not after '@'")
        if not is_commit_sha(revision):
            raise CardError(f"{where}: field {_FIELD}.revision must be a full commit sha (40 "
                            f"lowercase hex) for a Hub source, got {revision!r}")
    elif revision is not None:
        raise CardError(f"{where}: field {_FIELD}.revision must be null for a folder source "
                        f"({source!r}), got {revision!r}")
    files = block.get("files")
    if not isinstance(files, dict):
        raise CardError(f"{where}: field {_FIELD}.files must map each of "
                        f"{', '.join(DENOISER_FILES)} to its sha256, got {files!r}")
    for name in DENOISER_FILES:
        if name not in files:
            raise CardError(f"{where}: missing field {_FIELD}.files[{name!r}]")
        if not isinstance(files[name], str):
            raise CardError(f"{where}: field {_FIELD}.files[{name!r}] must be a sha256 string, "
                            f"got {files[name]!r}")
    extra = sorted(set(files) - set(DENOISER_FILES))
    if extra:
        raise CardError(f"{where}: unknown field {_FIELD}.files[{extra[0]!r}] (a denoiser pins "
                        f"{', '.join(DENOISER_FILES)})")


def denoiser_block(folder_or_uri: str, revision: str | None, files: DenoiserFiles) -> dict:
    """The ``rs_expert.denoiser`` block naming ``files`` at ``folder_or_uri`` (a folder relative
    to the card, or ``hf://org/name`` with ``revision`` a commit sha).

    Raises:
        CardError: a malformed source or revision.
    """
    block = {"source": public_url(folder_or_uri), "revision": revision,
             "files": {name: files.sha256[name] for name in DENOISER_FILES}}
    check_denoiser_block(block, "denoiser block")
    return block


def denoiser_folder(block: dict, card_folder: str | os.PathLike, *, endpoint: str | None = None,
                    cache_dir: str | os.PathLike | None = None,
                    offline: bool | None = None) -> Path:
    """The local folder of a card's denoiser: ``card_folder / source``, or the Hub snapshot of
    ``source`` at ``revision`` (downloaded into the Hub cache unless cached).

    Raises:
        CardError: a malformed block, or a folder source that does not exist.
        HubError: the Hub files are not cached and cannot be downloaded.
    """
    where = str(Path(card_folder) / CONFIG_FILE)
    check_denoiser_block(block, where)
    source = block["source"]
    if source.startswith("hf://"):
        from ..sources.hub import download_files, parse_hf_uri

        return download_files(parse_hf_uri(source).repo_id, block["revision"], DENOISER_FILES,
                              endpoint=endpoint, cache_dir=cache_dir, offline=offline)
    folder = Path(card_folder) / source
    if not folder.is_dir():
        raise CardError(f"{where}: {_FIELD}.source {source!r}: no folder {folder}")
    return folder


def save_denoiser(folder: str | os.PathLike, unet: nn.Module, scheduler, *,
                  extra: dict[str, Any] | None = None) -> DenoiserFiles:
    """Write a diffusers ``UNet2DModel`` and its scheduler in the DDPMPipeline layout (atomic
    writes, safetensors; ``model_index.json`` too, so diffusers loads the folder); ``extra``:
    ``rsrouter_*`` keys added to the UNet's config (:func:`split_unet_config`). Returns the
    files as :func:`read_denoiser` reads them (their hashes go into a card's block)."""
    diffusers = _diffusers()
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


def load_denoiser(block: dict, card_folder: str | os.PathLike, classifier: nn.Module,
                  **kw) -> DenoiserParts:
    """Resolve, read (pinned by ``block['files']``) and build a card's denoiser.

    Keyword arguments go to :func:`denoiser_folder`. Raises as it, :func:`read_denoiser` and
    :func:`build_parts` do; a Hub denoiser whose cached bytes fail their pins is deleted from the
    Hub cache first (IntegrityError saying so).
    """
    folder = denoiser_folder(block, card_folder, **kw)
    _checked_pins(block["files"], folder)  # a malformed pin is the card's fault, not the cache's
    try:
        files = read_denoiser(folder, block["files"])
    except IntegrityError as e:
        if not block["source"].startswith("hf://"):
            raise
        from ..sources.hub import discard_cached, parse_hf_uri

        for name in DENOISER_FILES:  # bytes that fail their pins: never reuse them
            discard_cached(parse_hf_uri(block["source"]).repo_id, block["revision"], name,
                           cache_dir=kw.get("cache_dir"))
        raise IntegrityError(f"{e}; the cached copy of {block['source']}@{block['revision']} "
                             "was deleted (the next load downloads it again)") from e
    return build_parts(files, classifier)


def _checked_pins(pins: dict[str, str], folder: Path) -> dict[str, str]:
    """``pins`` of every denoiser file; IntegrityError for a pin that is empty or malformed."""
    return {name: check_sha256(pins.get(name), f"{folder}: pinned sha256 of {name}")
            for name in DENOISER_FILES}


def make_denoised_card(classifier: str, denoiser: str, sigmas, out: str | os.PathLike, *,
                       registry=None, name: str = "") -> Path:
    """Write a denoised expert family to ``out``: the clean classifier ``classifier`` (a
    registered name, folder, ``hf://`` or ``git+`` source, read and verified like any expert:
    its card gives the architecture and normalization, its weights become ``out``'s) in front
    of ``denoiser`` (``hf://org/name[@rev]``, resolved to a commit sha, or a local folder, copied
    to ``out/denoiser``), one expert at each of ``sigmas``. Every denoiser file is hashed into the
    card. The result is loaded at every sigma before returning (each needs a timestep).

    Raises:
        CardError, IntegrityError, HubError, UnknownExpertError: from reading the parts;
        ValueError: a sigma the denoiser's schedule cannot serve.
    """
    import shutil

    from ..cards.card import ExpertCard, read_artifact, write_card
    from ..files import atomic_write_bytes
    from .core import Registry, split_sigma
    from .expert import expert_card

    registry = registry or Registry()
    out = Path(out)
    resolved = registry.resolve(split_sigma(classifier)[0])
    files = read_artifact(registry.fetch(resolved), *([resolved.pin] if resolved.pin else []))
    base = expert_card(files)
    if denoiser.startswith("hf://"):
        from ..sources.hub import download_files, parse_hf_uri, resolve_revision

        ref = parse_hf_uri(denoiser)
        sha = resolve_revision(ref.repo_id, ref.revision or "main", endpoint=registry.endpoint,
                               offline=registry.offline)
        folder = download_files(ref.repo_id, sha, DENOISER_FILES, endpoint=registry.endpoint,
                                cache_dir=registry.cache_dir, offline=registry.offline)
        block = denoiser_block(f"hf://{ref.repo_id}", sha, read_denoiser(folder))
    else:
        target = out / "denoiser"
        for file in DENOISER_FILES:
            (target / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(denoiser) / file, target / file)
        block = denoiser_block("denoiser", None, read_denoiser(target))
    card = ExpertCard(architecture=base.architecture, num_classes=base.num_classes,
                      input_size=base.input_size, mean=base.mean, std=base.std, sigma=None,
                      sigmas=tuple(sorted(float(s) for s in sigmas)), dataset=base.dataset,
                      label_names=list(base.label_names), arch_source=base.arch_source,
                      weights_sha256=files.weights_sha256, kind="denoised", denoiser=block,
                      resize=base.resize, name=name or out.name,
                      training={"method": "denoised smoothing (Carlini et al. 2023): one-step "
                                          "denoising, then the clean classifier",
                                "classifier": {"source": public_url(resolved.uri),
                                               "weights_sha256": files.weights_sha256,
                                               "card": base.name},
                                "denoiser": {"source": block["source"],
                                             "revision": block["revision"]}})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "model.safetensors", files.weights)
    write_card(out, card)
    check = Registry(registry.project_file, registry.user_file, endpoint=registry.endpoint,
                     cache_dir=registry.cache_dir, offline=registry.offline)
    for s in card.sigmas:
        check.load(str(out), sigma=s)
    return out


# ---- training ----------------------------------------------------------------------------------


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
    diffusers = _diffusers()
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
    """The UNet as ``training.fit.fit`` sees a model: ``net`` holds the trained weights."""

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
    from ..data import DatasetInfo, TensorImageDataset
    from ..training.fit import cosine_lr, fit

    diffusers = _diffusers()
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
            recorded = json.loads((out / TRAINING_FILE).read_text()).get("settings")
            if recorded == settings:
                return out
            raise ResumeError(f"{out} already holds a denoiser trained with other settings; "
                              "choose another folder or delete it")
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
