"""Import improved-diffusion checkpoints (Nichol & Dhariwal 2021) as diffusers denoiser folders.

Carlini et al. (2023) and the Dual RS paper denoise CIFAR-10 with improved-diffusion's
``cifar10_uncond_50M_500K.pt``: a pickled state dict of its ``UNetModel``. This module maps that
state dict onto diffusers' ``UNet2DModel`` (same computation: scale-shift ResBlocks, GroupNorm 32,
multi-head attention at the given resolutions, conv up/down-sampling) and writes the folder
:func:`rsrouter.cards.denoiser.read_denoiser` reads: ``unet/``, ``scheduler/`` (a
``DDPMScheduler`` with the checkpoint's schedule) and ``model_index.json``. The checkpoint is
read with ``torch.load(weights_only=True)`` (tensors only, no code) by
:func:`rsrouter.registry.importers.read_checkpoint`; every source key must be used and every
target key filled.

improved-diffusion feeds its network ``t * 1000 / T`` when trained with ``rescale_timesteps``
(their default; T = 4000 for the CIFAR-10 model): the folder's ``unet/config.json`` then carries
``rsrouter_timestep_scale`` (= 1000 / T), which :mod:`.denoised` applies to the timestep
it chooses on the T-step schedule (and strips before diffusers reads the config). Other
consumers of the folder (diffusers' DDPMPipeline) ignore that key and would feed unscaled
timesteps: use the folder through rsrouter. ``num_heads`` is not in the weights; a wrong value
converts silently into another network (released checkpoints use 4, and one head count for the
down and up paths, which is all diffusers' UNet2DModel represents).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import CardError
from .denoised import import_diffusers, save_denoiser
from .importers import read_checkpoint

TIMESTEP_SCALE_KEY = "rsrouter_timestep_scale"
# improved-diffusion's image_train.py channel multipliers by image side
CHANNEL_MULT = {32: (1, 2, 2, 2), 64: (1, 2, 3, 4), 256: (1, 1, 2, 2, 4, 4)}


@dataclass(frozen=True)
class ImprovedDiffusionConfig:
    """The flags a checkpoint was trained with (improved-diffusion's names and defaults).

    ``attention_resolutions``: feature-map sides with attention (their "16,8");
    ``channel_mult``: None takes their script's choice for ``image_size``.
    """

    image_size: int
    num_channels: int = 128
    num_res_blocks: int = 2
    num_heads: int = 4
    attention_resolutions: tuple[int, ...] = (16, 8)
    learn_sigma: bool = False
    diffusion_steps: int = 1000
    noise_schedule: str = "linear"
    rescale_timesteps: bool = True
    use_scale_shift_norm: bool = True
    in_channels: int = 3
    channel_mult: tuple[int, ...] | None = None

    @property
    def mult(self) -> tuple[int, ...]:
        if self.channel_mult is not None:
            return tuple(self.channel_mult)
        if self.image_size not in CHANNEL_MULT:
            raise CardError(f"image_size {self.image_size}: improved-diffusion defines channel "
                            f"multipliers for {sorted(CHANNEL_MULT)}; give channel_mult")
        return CHANNEL_MULT[self.image_size]

    @property
    def attention_levels(self) -> tuple[bool, ...]:
        """Whether each level (side ``image_size / 2**level``) has attention."""
        return tuple(self.image_size // 2 ** level in self.attention_resolutions
                     for level in range(len(self.mult)))

    def validate(self) -> None:
        """Raises CardError naming a flag this conversion cannot represent."""
        if self.mult[0] != 1:
            raise CardError(f"channel_mult {list(self.mult)}: diffusers' UNet2DModel needs the "
                            "first multiplier to be 1 (its input convolution has the first "
                            "level's width)")
        if self.noise_schedule not in ("linear", "cosine"):
            raise CardError(f"noise_schedule {self.noise_schedule!r}: linear or cosine")
        if not self.use_scale_shift_norm:
            raise CardError("use_scale_shift_norm False is not converted (every released "
                            "improved-diffusion checkpoint uses True)")
        if any(m * self.num_channels % 32 for m in self.mult):
            raise CardError(f"channels {[m * self.num_channels for m in self.mult]}: "
                            "improved-diffusion's GroupNorm has 32 groups; channels must be "
                            "multiples of 32")
        heads_ok = all(m * self.num_channels % self.num_heads == 0 for m in self.mult)
        if not heads_ok:
            raise CardError(f"num_heads {self.num_heads} does not divide the channels")
        dims = {m * self.num_channels for m, a in zip(self.mult, self.attention_levels) if a}
        dims.add(self.mult[-1] * self.num_channels)  # the middle block's attention
        if len({d // self.num_heads for d in dims}) != 1:
            raise CardError("attention at several widths needs one head dimension in diffusers' "
                            f"UNet2DModel; widths {sorted(dims)} with {self.num_heads} heads "
                            "give several")


# The released checkpoints Carlini et al. and the Dual RS paper use (flags from improved-
# diffusion's README).
PRESETS = {
    "cifar10-uncond-50M": ImprovedDiffusionConfig(
        image_size=32, num_channels=128, num_res_blocks=3, learn_sigma=True,
        diffusion_steps=4000, noise_schedule="cosine"),
}


def unet_config(cfg: ImprovedDiffusionConfig) -> dict:
    """The diffusers ``UNet2DModel`` config computing what improved-diffusion's UNet does."""
    cfg.validate()
    levels = cfg.attention_levels
    return {
        "sample_size": cfg.image_size,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.in_channels * (2 if cfg.learn_sigma else 1),
        "block_out_channels": [m * cfg.num_channels for m in cfg.mult],
        "layers_per_block": cfg.num_res_blocks,
        "down_block_types": ["AttnDownBlock2D" if a else "DownBlock2D" for a in levels],
        "up_block_types": ["AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(levels)],
        "attention_head_dim": cfg.mult[-1] * cfg.num_channels // cfg.num_heads,
        "norm_num_groups": 32,
        "attn_norm_num_groups": 32,
        "norm_eps": 1e-5,
        "resnet_time_scale_shift": "scale_shift",
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "downsample_type": "conv",
        "upsample_type": "conv",
        "downsample_padding": 1,
        "act_fn": "silu",
        "dropout": 0.0,
        "center_input_sample": False,
        "mid_block_scale_factor": 1,
        "add_attention": True,
    }


def scheduler_config(cfg: ImprovedDiffusionConfig) -> dict:
    """A ``DDPMScheduler`` config with the checkpoint's T-step schedule (epsilon prediction).

    improved-diffusion's linear schedule is diffusers' with both ends scaled by 1000 / T; its
    cosine schedule is diffusers' ``squaredcos_cap_v2`` (same alpha-bar, betas capped at 0.999).
    """
    steps = cfg.diffusion_steps
    schedule = ({"beta_schedule": "linear", "beta_start": 1e-4 * 1000 / steps,
                 "beta_end": 0.02 * 1000 / steps} if cfg.noise_schedule == "linear"
                else {"beta_schedule": "squaredcos_cap_v2"})
    return {"num_train_timesteps": steps, **schedule, "prediction_type": "epsilon",
            "variance_type": "learned_range" if cfg.learn_sigma else "fixed_small",
            "clip_sample": True}


def _resblock(src: str, dst: str) -> dict[str, str]:
    names = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
             "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
    return {f"{src}.{a}": f"{dst}.{b}" for a, b in names.items()}


def key_map(cfg: ImprovedDiffusionConfig) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(module prefix map for plain layers, [(source attention prefix, target prefix)])."""
    mult, nrb, levels = cfg.mult, cfg.num_res_blocks, cfg.attention_levels
    plain = {"time_embed.0": "time_embedding.linear_1", "time_embed.2": "time_embedding.linear_2",
             "input_blocks.0.0": "conv_in", "out.0": "conv_norm_out", "out.2": "conv_out"}
    attn = []
    block = 1
    for level in range(len(mult)):
        for j in range(nrb):
            plain.update(_resblock(f"input_blocks.{block}.0", f"down_blocks.{level}.resnets.{j}"))
            if levels[level]:
                attn.append((f"input_blocks.{block}.1", f"down_blocks.{level}.attentions.{j}"))
            block += 1
        if level != len(mult) - 1:
            plain[f"input_blocks.{block}.0.op"] = f"down_blocks.{level}.downsamplers.0.conv"
            block += 1
    plain.update(_resblock("middle_block.0", "mid_block.resnets.0"))
    attn.append(("middle_block.1", "mid_block.attentions.0"))
    plain.update(_resblock("middle_block.2", "mid_block.resnets.1"))
    block = 0
    for up, level in enumerate(reversed(range(len(mult)))):
        for i in range(nrb + 1):
            plain.update(_resblock(f"output_blocks.{block}.0", f"up_blocks.{up}.resnets.{i}"))
            at = 1
            if levels[level]:
                attn.append((f"output_blocks.{block}.1", f"up_blocks.{up}.attentions.{i}"))
                at = 2
            if level and i == nrb:
                plain[f"output_blocks.{block}.{at}.conv"] = f"up_blocks.{up}.upsamplers.0.conv"
            block += 1
    return plain, attn


def convert_state_dict(state: dict[str, torch.Tensor],
                       cfg: ImprovedDiffusionConfig) -> dict[str, torch.Tensor]:
    """improved-diffusion ``UNetModel`` weights -> diffusers ``UNet2DModel`` weights.

    The attention's fused ``qkv`` (1x1 conv, per head ``[q, k, v]``) becomes ``to_q/to_k/to_v``;
    1x1 convs become linear layers.

    Raises:
        CardError: a key the mapping does not use, or one it needs that is missing.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    plain, attn = key_map(cfg)
    out, used = {}, set()
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in plain:
            out[f"{plain[prefix]}.{leaf}"] = value
            used.add(key)
    for src, dst in attn:
        try:
            qkv_w, qkv_b = state[f"{src}.qkv.weight"], state[f"{src}.qkv.bias"]
            proj_w, proj_b = state[f"{src}.proj_out.weight"], state[f"{src}.proj_out.bias"]
            norm_w, norm_b = state[f"{src}.norm.weight"], state[f"{src}.norm.bias"]
        except KeyError as e:
            raise CardError(f"checkpoint: attention weight {e.args[0]} missing; do the flags "
                            "(attention_resolutions, num_res_blocks, channel_mult, image_size) "
                            "match the checkpoint?") from e
        c = qkv_w.shape[1]
        ch = c // cfg.num_heads
        w = qkv_w.reshape(cfg.num_heads, 3, ch, c)
        b = qkv_b.reshape(cfg.num_heads, 3, ch)
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            out[f"{dst}.{name}.weight"] = w[:, i].reshape(c, c).contiguous()
            out[f"{dst}.{name}.bias"] = b[:, i].reshape(c).contiguous()
        out[f"{dst}.to_out.0.weight"] = proj_w.reshape(c, c)
        out[f"{dst}.to_out.0.bias"] = proj_b
        out[f"{dst}.group_norm.weight"], out[f"{dst}.group_norm.bias"] = norm_w, norm_b
        used.update(f"{src}.{k}" for k in ("qkv.weight", "qkv.bias", "proj_out.weight",
                                           "proj_out.bias", "norm.weight", "norm.bias"))
    unused = sorted(set(state) - used)
    if unused:
        raise CardError(f"checkpoint: {len(unused)} keys this configuration does not use, e.g. "
                        f"{unused[:3]}; do the flags match the checkpoint (or is it class-"
                        "conditional, which is not converted)?")
    return out


def convert_improved_diffusion(checkpoint: str | os.PathLike, out: str | os.PathLike,
                               cfg: ImprovedDiffusionConfig) -> Path:
    """Write the diffusers denoiser folder of an improved-diffusion checkpoint at ``out``.

    The UNet is strictly loaded with the converted weights before anything is written.

    Returns:
        ``out``, ready for ``rsrouter experts make-denoised --denoiser OUT``.
    Raises:
        CardError: unreadable checkpoint (not weights-only), flags that do not match it.
        ImportError: diffusers is not installed.
    """
    diffusers = import_diffusers()
    raw = read_checkpoint(checkpoint)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(torch.is_tensor(v) for v in raw.values()):
        raise CardError(f"{checkpoint}: not a state dict of tensors (improved-diffusion saves "
                        "model.state_dict())")
    config = unet_config(cfg)
    unet = diffusers.UNet2DModel(**config)
    tensors = convert_state_dict(raw, cfg)
    own = unet.state_dict()
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise CardError(f"{checkpoint}: no weights for {missing[:3]} ({len(missing)} in all); "
                        "do the flags (num_channels, num_res_blocks, image_size) match?")
    try:
        unet.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    except RuntimeError as e:
        raise CardError(f"{checkpoint}: weights do not fit the flags: {e}") from e
    scheduler = diffusers.DDPMScheduler(**scheduler_config(cfg))
    out = Path(out)
    extra = {"rsrouter_converted_from": {"format": "improved-diffusion", **asdict(cfg)}}
    if cfg.rescale_timesteps:
        extra[TIMESTEP_SCALE_KEY] = 1000.0 / cfg.diffusion_steps
    save_denoiser(out, unet, scheduler, extra=extra)
    return out
