"""improved-diffusion checkpoints as diffusers denoisers: the converted UNet2DModel computes what
improved-diffusion's UNetModel computes (checked against a functional reference written from
the paper's architecture on a tiny random checkpoint), the rescaled timesteps reach the UNet,
and flags that do not fit the checkpoint are refused by name."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from rsrouter.cards.denoiser import UNET_CONFIG, read_denoiser
from rsrouter.errors import CardError
from rsrouter.models import create_classifier
from rsrouter.registry.denoised import DenoisedClassifier, build_parts, timestep_for_sigma
from rsrouter.registry.diffusion import (
    PRESETS,
    ImprovedDiffusionConfig,
    convert_improved_diffusion,
    convert_state_dict,
    unet_config,
)

# two levels (8x8, 4x4), attention at side 4 and in the middle, 2 heads of 32, learned variance
TINY = ImprovedDiffusionConfig(image_size=8, num_channels=32, channel_mult=(1, 2),
                               num_res_blocks=1, num_heads=2, attention_resolutions=(4,),
                               learn_sigma=True, diffusion_steps=4000, noise_schedule="cosine")


class _Opaque:
    """A pickled object that is not a tensor: weights-only loading refuses it."""


pytestmark = pytest.mark.usefixtures("one_thread")


def improved_state(cfg: ImprovedDiffusionConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict with improved-diffusion UNetModel's keys and shapes (no zero layers,
    so every weight matters)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def rand(*shape, scale=0.1, base=0.0):
        return base + scale * torch.randn(*shape, generator=gen)

    def conv(p, cin, cout, k, dims=2):
        sd[f"{p}.weight"] = rand(cout, cin, *([k] * dims), scale=1 / math.sqrt(cin * k ** dims))
        sd[f"{p}.bias"] = rand(cout)

    def norm(p, c):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = rand(c, base=1.0), rand(c)

    def lin(p, cin, cout):
        sd[f"{p}.weight"], sd[f"{p}.bias"] = rand(cout, cin, scale=1 / math.sqrt(cin)), rand(cout)

    def res(p, cin, cout):
        norm(f"{p}.in_layers.0", cin)
        conv(f"{p}.in_layers.2", cin, cout, 3)
        lin(f"{p}.emb_layers.1", emb, 2 * cout)
        norm(f"{p}.out_layers.0", cout)
        conv(f"{p}.out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(f"{p}.skip_connection", cin, cout, 1)

    def attn(p, c):
        norm(f"{p}.norm", c)
        conv(f"{p}.qkv", c, 3 * c, 1, dims=1)
        conv(f"{p}.proj_out", c, c, 1, dims=1)

    c0, mult, nrb = cfg.num_channels, cfg.mult, cfg.num_res_blocks
    emb = 4 * c0
    lin("time_embed.0", c0, emb)
    lin("time_embed.2", emb, emb)
    conv("input_blocks.0.0", cfg.in_channels, c0, 3)
    chans, ch, block, side = [c0], c0, 1, cfg.image_size
    for level, m in enumerate(mult):
        for _ in range(nrb):
            res(f"input_blocks.{block}.0", ch, m * c0)
            ch = m * c0
            if side in cfg.attention_resolutions:
                attn(f"input_blocks.{block}.1", ch)
            chans.append(ch)
            block += 1
        if level != len(mult) - 1:
            conv(f"input_blocks.{block}.0.op", ch, ch, 3)
            chans.append(ch)
            block, side = block + 1, side // 2
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    block = 0
    for level, m in reversed(list(enumerate(mult))):
        for i in range(nrb + 1):
            res(f"output_blocks.{block}.0", ch + chans.pop(), m * c0)
            ch, j = m * c0, 1
            if side in cfg.attention_resolutions:
                attn(f"output_blocks.{block}.1", ch)
                j = 2
            if level and i == nrb:
                conv(f"output_blocks.{block}.{j}.conv", ch, ch, 3)
                side *= 2
            block += 1
    norm("out.0", ch)
    conv("out.2", c0, cfg.in_channels * (2 if cfg.learn_sigma else 1), 3)
    return sd


def reference_forward(sd: dict, heads: int, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """improved-diffusion's UNetModel forward, read off the state dict's keys."""
    def w(p):
        return sd[f"{p}.weight"], sd[f"{p}.bias"]

    def gn(h, p):
        return F.group_norm(h, 32, *w(p), eps=1e-5)

    half = sd["time_embed.0.weight"].shape[1] // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    emb = F.linear(F.silu(F.linear(emb, *w("time_embed.0"))), *w("time_embed.2"))

    def res(h, p):
        out = F.conv2d(F.silu(gn(h, f"{p}.in_layers.0")), *w(f"{p}.in_layers.2"), padding=1)
        scale, shift = F.linear(F.silu(emb), *w(f"{p}.emb_layers.1"))[:, :, None, None].chunk(2, 1)
        out = gn(out, f"{p}.out_layers.0") * (1 + scale) + shift
        out = F.conv2d(F.silu(out), *w(f"{p}.out_layers.3"), padding=1)
        skip = F.conv2d(h, *w(f"{p}.skip_connection")) if f"{p}.skip_connection.weight" in sd \
            else h
        return skip + out

    def attn(h, p):
        b, c, height, width = h.shape
        flat = h.reshape(b, c, -1)
        qkv = F.conv1d(F.group_norm(flat, 32, *w(f"{p}.norm"), eps=1e-5), *w(f"{p}.qkv"))
        q, k, v = qkv.reshape(b * heads, 3 * (c // heads), -1).split(c // heads, dim=1)
        weight = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(c // heads), -1)
        a = torch.einsum("bts,bcs->bct", weight, v).reshape(b, c, -1)
        return (flat + F.conv1d(a, *w(f"{p}.proj_out"))).reshape(b, c, height, width)

    def run(h, p):
        j = 0
        while any(k.startswith(f"{p}.{j}.") for k in sd):
            q = f"{p}.{j}"
            if f"{q}.op.weight" in sd:
                h = F.conv2d(h, *w(f"{q}.op"), stride=2, padding=1)
            elif f"{q}.in_layers.0.weight" in sd:
                h = res(h, q)
            elif f"{q}.qkv.weight" in sd:
                h = attn(h, q)
            elif f"{q}.conv.weight" in sd:
                h = F.conv2d(F.interpolate(h, scale_factor=2, mode="nearest"), *w(f"{q}.conv"),
                             padding=1)
            else:
                h = F.conv2d(h, *w(q), padding=1)
            j += 1
        return h

    hs, block = [], 0
    h = x
    while f"input_blocks.{block}.0.weight" in sd or any(
            k.startswith(f"input_blocks.{block}.") for k in sd):
        h = run(h, f"input_blocks.{block}")
        hs.append(h)
        block += 1
    h = run(h, "middle_block")
    block = 0
    while any(k.startswith(f"output_blocks.{block}.") for k in sd):
        h = run(torch.cat([h, hs.pop()], dim=1), f"output_blocks.{block}")
        block += 1
    return F.conv2d(F.silu(gn(h, "out.0")), *w("out.2"), padding=1)


def _converted(cfg=TINY, seed=0):
    sd = improved_state(cfg, seed)
    unet = UNet2DModel(**unet_config(cfg))
    unet.load_state_dict(convert_state_dict(sd, cfg), strict=True)
    return sd, unet.eval()


def test_the_converted_unet_computes_what_improved_diffusion_computes():
    sd, unet = _converted()
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    for t in (0.75, 37.5, 999.0):
        ts = torch.full((3,), t)
        with torch.no_grad():
            got = unet(x, ts).sample
        want = reference_forward(sd, TINY.num_heads, x, ts)
        assert got.shape == (3, 6, 8, 8)
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (t, (got - want).abs().max())
    # a wrong head split would change the output: the check above can fail
    other = dict(sd)
    other["middle_block.1.qkv.weight"] = sd["middle_block.1.qkv.weight"].flip(0)
    assert not torch.allclose(reference_forward(other, 2, x, ts), want, atol=1e-3)


def test_the_paper_checkpoint_flags_give_a_50m_unet():
    cfg = PRESETS["cifar10-uncond-50M"]
    config = unet_config(cfg)
    assert config["block_out_channels"] == [128, 256, 256, 256]
    assert config["down_block_types"] == ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D",
                                          "DownBlock2D"]
    assert config["up_block_types"] == ["UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D",
                                        "UpBlock2D"]
    with torch.device("meta"):
        unet = UNet2DModel(**config)
    params = sum(p.numel() for p in unet.parameters())
    assert 50e6 < params < 56e6  # "50M" in the checkpoint's name (52.5M parameters)


def test_a_checkpoint_becomes_a_pinned_denoiser_with_rescaled_timesteps(tmp_path):
    sd = improved_state(TINY)
    torch.save(sd, tmp_path / "ckpt.pt")
    out = convert_improved_diffusion(tmp_path / "ckpt.pt", tmp_path / "denoiser", TINY)
    files = read_denoiser(out)
    assert files.unet_config["rsrouter_timestep_scale"] == 0.25
    assert files.scheduler_config["num_train_timesteps"] == 4000
    torch.manual_seed(2)
    classifier = create_classifier("cnn_tiny", 10, (3, 8, 8), (0.5,) * 3, (0.5,) * 3).eval()
    parts = build_parts(files, classifier)
    assert parts.timestep_scale == 0.25 and parts.record["timestep_scale"] == 0.25
    # improved-diffusion's cosine schedule: abar(t) = f((t + 1) / T) / f(0)
    f = [math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2 for s in (0.0, 1 / 4000, 101 / 4000)]
    assert parts.alphas_cumprod[0] == pytest.approx(f[1] / f[0], rel=1e-5)
    assert parts.alphas_cumprod[100] == pytest.approx(f[2] / f[0], rel=1e-5)
    expert = DenoisedClassifier(parts, 0.25)
    assert expert.t == timestep_for_sigma(parts.alphas_cumprod, 0.25)
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    x_t = expert.sqrt_abar * (2 * x - 1)
    eps = reference_forward(sd, TINY.num_heads, x_t, torch.full((4,), 0.25 * expert.t))[:, :3]
    want = ((x_t - expert.sqrt_one_minus_abar * eps) / expert.sqrt_abar).clamp(-1, 1)
    with torch.no_grad():
        got = expert.denoise(x)
        unscaled = reference_forward(sd, TINY.num_heads, x_t, torch.full((4,), float(expert.t)))
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(eps, unscaled[:, :3], atol=1e-3)  # the scale matters


def test_flags_that_do_not_fit_the_checkpoint_are_named(tmp_path):
    sd = improved_state(TINY)
    with pytest.raises(CardError, match="keys this configuration does not use"):
        convert_state_dict({**sd, "label_emb.weight": torch.zeros(10, 128)}, TINY)
    wrong = ImprovedDiffusionConfig(**{**TINY.__dict__, "attention_resolutions": (8,)})
    with pytest.raises(CardError, match="attention weight|does not use"):
        convert_state_dict(sd, wrong)
    torch.save(sd, tmp_path / "ckpt.pt")
    fewer = ImprovedDiffusionConfig(**{**TINY.__dict__, "num_channels": 64})
    with pytest.raises(CardError, match="do not fit|no weights"):
        convert_improved_diffusion(tmp_path / "ckpt.pt", tmp_path / "d", fewer)
    with pytest.raises(CardError, match="multiples of 32"):
        unet_config(ImprovedDiffusionConfig(image_size=8, num_channels=16, channel_mult=(1, 2)))
    with pytest.raises(CardError, match="channel_mult"):
        unet_config(ImprovedDiffusionConfig(image_size=28))
    with pytest.raises(CardError, match="first multiplier"):
        unet_config(ImprovedDiffusionConfig(image_size=8, num_channels=32, channel_mult=(2, 2)))
    torch.save({"model": _Opaque()}, tmp_path / "evil.pt")
    with pytest.raises(CardError, match="weights-only"):
        convert_improved_diffusion(tmp_path / "evil.pt", tmp_path / "e", TINY)
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def test_a_bad_timestep_scale_in_a_folder_is_refused(tmp_path):
    sd = improved_state(TINY)
    torch.save(sd, tmp_path / "ckpt.pt")
    out = convert_improved_diffusion(tmp_path / "ckpt.pt", tmp_path / "denoiser", TINY)
    import json

    config = json.loads((out / UNET_CONFIG).read_text())
    (out / UNET_CONFIG).write_text(json.dumps({**config, "rsrouter_timestep_scale": -1}))
    torch.manual_seed(2)
    classifier = create_classifier("cnn_tiny", 10, (3, 8, 8), (0.5,) * 3, (0.5,) * 3).eval()
    with pytest.raises(CardError, match="rsrouter_timestep_scale"):
        build_parts(read_denoiser(out), classifier)


def test_the_cli_converts_with_flags_and_names_a_missing_preset(tmp_path, capsys):
    from rsrouter.cli import main

    torch.save(improved_state(TINY), tmp_path / "ckpt.pt")
    assert main(["experts", "import-denoiser", str(tmp_path / "ckpt.pt"), "--image-size", "8",
          "--num-channels", "32", "--channel-mult", "1,2", "--num-res-blocks", "1",
          "--num-heads", "2", "--attention-resolutions", "4", "--learn-sigma",
          "--diffusion-steps", "4000", "--noise-schedule", "cosine",
          "--out", str(tmp_path / "denoiser")]) == 0
    assert "make-denoised" in capsys.readouterr().out
    files = read_denoiser(tmp_path / "denoiser")
    assert files.unet_config["rsrouter_converted_from"]["num_res_blocks"] == 1
    assert main(["experts", "import-denoiser", str(tmp_path / "ckpt.pt"), "--preset", "nope",
                 "--out", str(tmp_path / "x")]) == 2
    assert "cifar10-uncond-50M" in capsys.readouterr().err
