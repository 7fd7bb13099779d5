"""Denoised-smoothing experts: the timestep rule, the one-step formula, pinned denoiser folders,
shared modules across sigmas, and the small denoiser trainer (tiny random UNets on 8x8 images)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file
from torch import nn

from rsrouter.cards.denoiser import (
    DENOISER_FILES,
    SCHEDULER_CONFIG,
    UNET_CONFIG,
    UNET_WEIGHTS,
    check_denoiser_block,
    denoiser_block,
    read_denoiser,
)
from rsrouter.errors import CardError, HubError, IntegrityError, ResumeError
from rsrouter.models import create_classifier
from rsrouter.registry.denoised import (
    DenoisedClassifier,
    build_parts,
    denoiser_folder,
    load_denoiser,
    save_denoiser,
    timestep_for_sigma,
)
from rsrouter.training.denoiser import DenoiserTrainConfig, train_denoiser
from rsrouter.training.fit import CHECKPOINT

SHA = "0123456789abcdef0123456789abcdef01234567"


pytestmark = pytest.mark.usefixtures("one_thread")


def _unet(out_channels: int = 1, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=out_channels,
                       block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)


def _classifier() -> nn.Module:
    torch.manual_seed(1)
    return create_classifier("cnn_tiny", 10, (1, 8, 8), (0.3,), (0.37,)).eval()


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "denoiser"
    save_denoiser(out, _unet(), DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear"))
    return out


@pytest.fixture
def parts(folder):
    return build_parts(read_denoiser(folder), _classifier())


def _ratio(abar: torch.Tensor) -> torch.Tensor:
    abar = abar.to(torch.float64)
    return (1 - abar).sqrt() / abar.sqrt()


def test_timestep_is_the_first_index_noisy_enough():
    abar = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear").alphas_cumprod
    ratio = _ratio(abar)
    seen = []
    for sigma in (0.004, 0.12, 0.25, 0.5, 1.0, 2.0, 10.0):
        t = timestep_for_sigma(abar, sigma)
        assert ratio[t] >= 2 * sigma
        assert t == 0 or ratio[t - 1] < 2 * sigma
        seen.append(t)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    assert timestep_for_sigma(abar, 1e-9) == 0
    top = float(ratio.max())
    with pytest.raises(ValueError, match=r"sigma 100.*largest ratio") as info:
        timestep_for_sigma(abar, 100.0)
    assert f"{top:.6g}" in str(info.value)
    for bad in (0, -0.5, float("nan")):
        with pytest.raises(ValueError, match="positive"):
            timestep_for_sigma(abar, bad)


def test_logits_have_one_row_per_input(parts):
    model = DenoisedClassifier(parts, 0.5)
    assert not model.training and not parts.unet.training
    with torch.no_grad():
        assert model(torch.rand(5, 1, 8, 8)).shape == (5, 10)


@pytest.mark.parametrize("out_channels", [1, 2])
def test_output_is_the_one_step_formula(tmp_path, out_channels):
    """[-1, 1] mapping, sqrt(abar_t) scaling, x0 from eps, clamp, back to [0, 1]; a UNet that
    also predicts a variance (2 channels) contributes its first channel only."""
    save_denoiser(tmp_path, _unet(out_channels), DDPMScheduler(num_train_timesteps=1000))
    parts = build_parts(read_denoiser(tmp_path), nn.Flatten(), in_channels=1)
    model = DenoisedClassifier(parts, 0.5)
    abar = float(parts.alphas_cumprod[model.t])
    seen = {}
    parts.unet.register_forward_pre_hook(lambda m, args: seen.update(x=args[0], t=args[1]))
    x = torch.rand(4, 1, 8, 8) + 0.5 * torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        got = model(x)
        x_t = math.sqrt(abar) * (2 * x - 1)
        eps = parts.unet(x_t, model.t).sample[:, :1]
    assert torch.allclose(seen["x"], x_t, atol=1e-6) and seen["t"] == model.t
    x0 = ((x_t - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
    assert torch.allclose(got, ((x0 + 1) / 2).flatten(1), atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_a_zero_epsilon_returns_the_clamped_input(tmp_path):
    unet = _unet()
    nn.init.zeros_(unet.conv_out.weight)
    nn.init.zeros_(unet.conv_out.bias)
    save_denoiser(tmp_path, unet, DDPMScheduler(num_train_timesteps=1000))
    parts = build_parts(read_denoiser(tmp_path), nn.Flatten(), in_channels=1)
    x = torch.rand(3, 1, 8, 8) * 1.6 - 0.3
    with torch.no_grad():
        for sigma in (0.25, 1.0):
            got = DenoisedClassifier(parts, sigma)(x)
            assert torch.allclose(got, x.clamp(0, 1).flatten(1), atol=1e-6)


def test_cpu_chunks_give_the_same_logits(parts):
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        whole = DenoisedClassifier(parts, 0.5, cpu_chunk=0)(x)
        chunked = DenoisedClassifier(parts, 0.5, cpu_chunk=3)(x)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_read_denoiser_round_trip_and_pins(folder):
    files = read_denoiser(folder)
    again = read_denoiser(folder, files.sha256)
    assert again.sha256 == files.sha256 and set(files.sha256) == set(DENOISER_FILES)
    parts = build_parts(again, _classifier())
    original = _unet().state_dict()
    assert all(torch.equal(original[k], v) for k, v in parts.unet.state_dict().items())
    assert parts.record["files"] == files.sha256
    assert parts.record["scheduler"]["num_train_timesteps"] == 1000

    with pytest.raises(IntegrityError, match="unet/config.json"):
        read_denoiser(folder, {k: v for k, v in files.sha256.items() if k != UNET_CONFIG})
    with pytest.raises(IntegrityError, match="scheduler_config.json: missing"):
        read_denoiser(folder, {**files.sha256, SCHEDULER_CONFIG: ""})

    data = bytearray((folder / UNET_WEIGHTS).read_bytes())
    data[-1] ^= 0x01
    (folder / UNET_WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="diffusion_pytorch_model.safetensors") as info:
        read_denoiser(folder, files.sha256)
    assert files.sha256[UNET_WEIGHTS] in str(info.value)
    assert read_denoiser(folder).sha256[UNET_WEIGHTS] in str(info.value)

    (folder / SCHEDULER_CONFIG).unlink()
    with pytest.raises(CardError, match="scheduler_config.json not found"):
        read_denoiser(folder, files.sha256)


def test_build_parts_refuses_what_does_not_fit(folder, tmp_path):
    files = read_denoiser(folder)
    rgb = create_classifier("cnn_tiny", 10, (3, 8, 8), (0.3,) * 3, (0.37,) * 3)
    with pytest.raises(CardError, match="1 channels but the classifier takes 3"):
        build_parts(files, rgb)
    other = tmp_path / "other"
    save_denoiser(other, UNet2DModel(sample_size=8, in_channels=1, out_channels=1,
                                     block_out_channels=(16, 32), norm_num_groups=8,
                                     layers_per_block=1, down_block_types=("DownBlock2D",) * 2,
                                     up_block_types=("UpBlock2D",) * 2),
                  DDPMScheduler(num_train_timesteps=1000))
    mixed = read_denoiser(other)
    with pytest.raises(CardError, match="has shape"):
        build_parts(type(files)(folder, files.unet_config, files.scheduler_config,
                                mixed.weights, files.sha256), _classifier())
    conditional = {**files.unet_config, "_class_name": "UNet2DConditionModel"}
    with pytest.raises(CardError, match="_class_name"):
        build_parts(type(files)(folder, conditional, files.scheduler_config, files.weights,
                                files.sha256), _classifier())
    with pytest.raises(CardError, match="prediction_type"):
        build_parts(type(files)(folder, files.unet_config, {**files.scheduler_config,
                                                            "prediction_type": "sample"},
                                files.weights, files.sha256), _classifier())


def test_experts_at_several_sigmas_share_the_modules(parts):
    low, high = DenoisedClassifier(parts, 0.25), DenoisedClassifier(parts, 1.0)
    assert low.unet is high.unet is parts.unet
    assert low.classifier is high.classifier is parts.classifier
    assert low.t < high.t
    assert parts.to("cpu") is parts


def test_denoiser_block_resolves_and_is_checked(folder, tmp_path):
    files = read_denoiser(folder)
    block = denoiser_block("denoiser", None, files)
    assert block == {"source": "denoiser", "revision": None, "files": files.sha256}
    assert denoiser_folder(block, tmp_path) == folder
    built = load_denoiser(block, tmp_path, _classifier())
    assert built.record["files"] == files.sha256

    bad = [({**block, "source": ""}, "source"),
           ({**block, "revision": SHA}, "revision must be null"),
           ({**block, "source": "hf://org/name"}, "revision must be a full commit sha"),
           ({**block, "source": "hf://org/name@main", "revision": SHA}, "not after '@'"),
           ({**block, "source": "hf://not a repo", "revision": SHA}, "source"),
           ({k: v for k, v in block.items() if k != "files"}, "files must map"),
           ({**block, "files": {UNET_CONFIG: files.sha256[UNET_CONFIG]}},
            "missing field rs_expert.denoiser.files"),
           ({**block, "files": {**files.sha256, UNET_CONFIG: 5}}, "must be a sha256 string"),
           ({**block, "files": {**files.sha256, "extra.bin": "x"}}, "unknown field"),
           ({**block, "typo": 1}, "unknown field rs_expert.denoiser.typo"),
           ("denoiser", "must be an object")]
    for value, message in bad:
        with pytest.raises(CardError, match=message):
            check_denoiser_block(value, "card.json")
    with pytest.raises(CardError, match="no folder"):
        denoiser_folder({**block, "source": "elsewhere"}, tmp_path)
    with pytest.raises(IntegrityError, match="missing"):
        load_denoiser({**block, "files": {**files.sha256, UNET_WEIGHTS: ""}}, tmp_path,
                      _classifier())
    hub = {**block, "source": "hf://org/denoiser", "revision": SHA}
    with pytest.raises(HubError, match="offline"):
        denoiser_folder(hub, tmp_path, offline=True)


def _train_config(**kw) -> DenoiserTrainConfig:
    return DenoiserTrainConfig(block_out_channels=(8, 16), epochs=2, batch_size=8, **kw)


def test_train_denoiser_writes_the_layout_and_resumes(tmp_path):
    images = torch.rand(16, 1, 8, 8)
    straight = train_denoiser(images, tmp_path / "straight", _train_config(), progress=False)
    files = read_denoiser(straight)
    build_parts(files, _classifier())
    assert not (straight / CHECKPOINT).exists() and (straight / "model_index.json").is_file()

    resumed = tmp_path / "resumed"
    train_denoiser(images, resumed, _train_config(), progress=False, stop_after_epoch=1)
    assert (resumed / CHECKPOINT).is_file() and not (resumed / UNET_WEIGHTS).exists()
    train_denoiser(images, resumed, _train_config(), progress=False)
    a, b = load_file(straight / UNET_WEIGHTS), load_file(resumed / UNET_WEIGHTS)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    before = (straight / UNET_WEIGHTS).stat().st_mtime_ns
    train_denoiser(images, straight, _train_config(), progress=False)  # finished: returns at once
    assert (straight / UNET_WEIGHTS).stat().st_mtime_ns == before
    with pytest.raises(ResumeError, match="other settings"):
        train_denoiser(images, straight, _train_config(lr=0.01), progress=False)
    with pytest.raises(ResumeError, match="other settings"):
        train_denoiser(torch.rand(16, 1, 8, 8), straight, _train_config(), progress=False)


def test_train_denoiser_only_the_timesteps_of_max_sigma_and_size_checks(tmp_path):
    images = torch.rand(8, 1, 8, 8)
    out = train_denoiser(images, tmp_path / "d", _train_config(max_sigma=0.5), progress=False)
    abar = DDPMScheduler(num_train_timesteps=1000).alphas_cumprod
    import json

    recipe = json.loads((out / "training.json").read_text())
    assert recipe["timesteps"] == f"uniform in [0, {timestep_for_sigma(abar, 0.5)}]"
    with pytest.raises(ValueError, match="not divisible by 4"):
        train_denoiser(torch.rand(4, 1, 6, 6), tmp_path / "e",
                       DenoiserTrainConfig(block_out_channels=(8, 16, 16)), progress=False)
    with pytest.raises(ValueError, match="multiples of norm_num_groups"):
        train_denoiser(images, tmp_path / "f", DenoiserTrainConfig(block_out_channels=(4, 16)),
                       progress=False)


def test_a_missing_diffusers_names_the_extra(monkeypatch, folder):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` fail
    with pytest.raises(ImportError, match=r"pip install 'rsrouter\[diffusion\]'"):
        build_parts(read_denoiser(folder), _classifier())


# ---- a denoised card through the registry: one build for every sigma, pinned denoiser files ----


def _card(folder, tmp_path, block=None):
    """A denoised expert card in ``tmp_path / "card"``: the clean classifier's weights and card,
    its denoiser named by ``block`` (default: ``folder`` copied beside it as ``denoiser/``)."""
    import shutil

    from rsrouter.cards.expert import ExpertCard
    from rsrouter.registry.weights import save_expert

    card_dir = tmp_path / "card"
    if block is None:
        shutil.copytree(folder, card_dir / "denoiser")
        block = denoiser_block("denoiser", None, read_denoiser(card_dir / "denoiser"))
    card = ExpertCard(architecture="cnn_tiny", num_classes=10, input_size=(1, 8, 8),
                      mean=(0.3,), std=(0.37,), sigma=None, sigmas=(0.25, 0.5),
                      dataset="digits", kind="denoised", denoiser=block, name="digits-denoised")
    save_expert(card_dir, _classifier().net, card)
    return card_dir


def test_the_registry_builds_a_denoised_card_once_for_every_sigma(folder, tmp_path,
                                                                  monkeypatch):
    import rsrouter.registry.denoised as denoised
    from rsrouter.registry.core import Registry

    card_dir = _card(folder, tmp_path)
    reads = []
    real = denoised.read_denoiser
    monkeypatch.setattr(denoised, "read_denoiser", lambda *a, **k: reads.append(1) or
                        real(*a, **k))
    registry = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml")
    low = registry.load(f"{card_dir}#sigma=0.25")
    high = registry.load(str(card_dir), sigma=0.5)
    assert len(reads) == 1  # the denoiser's files read, hashed and built once
    assert low.base_model.unet is high.base_model.unet
    assert low.base_model.classifier is high.base_model.classifier
    assert low.base_model.t < high.base_model.t and low.name == "digits-denoised-sigma0.25"
    cert = low.certify(torch.rand(1, 8, 8), n0=10, n=50, alpha=0.01, batch_size=60)
    assert cert.sigma == 0.25 and cert.n == 50
    entry = registry.register(str(card_dir), "dn")
    assert entry.kind == "denoised" and entry.sigmas == [0.25, 0.5] and entry.sigma is None


def test_a_denoiser_file_that_changed_is_refused_through_the_registry(folder, tmp_path):
    from rsrouter.registry.core import Registry

    card_dir = _card(folder, tmp_path)
    weights = card_dir / "denoiser" / UNET_WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="diffusion_pytorch_model.safetensors"):
        Registry(tmp_path / "p.yaml", tmp_path / "u.yaml").load(f"{card_dir}#sigma=0.5")


def test_a_hub_denoiser_is_pulled_at_its_commit_and_then_served_from_the_cache(
        folder, tmp_path, monkeypatch):
    from hubserver import OlahServer, make_git_repo

    from rsrouter.registry.core import Registry

    files = {name: (folder / name).read_bytes() for name in DENOISER_FILES}
    sha = make_git_repo(tmp_path / "mirrors" / "models" / "org" / "ddpm-digits", [files])[0]
    block = denoiser_block("hf://org/ddpm-digits", sha, read_denoiser(folder))
    card_dir = _card(folder, tmp_path, block)
    with OlahServer(tmp_path / "mirrors", tmp_path / "olah") as server:
        expert = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml",
                          endpoint=server.endpoint).load(f"{card_dir}#sigma=0.5")
        assert expert.base_model.parts.record["files"] == block["files"]
        # a family published whole (card + denoiser/ folder) in one Hub repository
        family = _card(folder, tmp_path / "published")
        repo = {str(p.relative_to(family)): p.read_bytes() for p in family.rglob("*")
                if p.is_file()}
        make_git_repo(tmp_path / "mirrors" / "models" / "org" / "family", [repo])
        registry = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml", endpoint=server.endpoint)
        registry.register("hf://org/family@main", "family")
        published = registry.load("family#sigma=0.5")
        assert published.name == "family-sigma0.50" and published.card.kind == "denoised"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone: the pinned commit is cached
    again = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml").load(f"{card_dir}#sigma=0.25")
    assert again.sigma == 0.25 and again.base_model.parts.record["files"] == block["files"]


def test_make_denoised_from_a_registered_classifier_and_a_hub_denoiser(folder, tmp_path,
                                                                       digits_expert):
    from hubserver import OlahServer, make_git_repo

    from rsrouter.cards.expert import read_card
    from rsrouter.cli import main
    from rsrouter.registry.core import Registry

    assert main(["experts", "register", digits_expert, "--name", "clean"]) == 0
    local = tmp_path / "local-family"
    assert main(["experts", "make-denoised", "--classifier", "clean", "--denoiser", str(folder),
                 "--sigmas", "0.25,0.5", "--out", str(local)]) == 0
    card = read_card(local)
    assert card.kind == "denoised" and card.sigmas == (0.25, 0.5)
    assert card.weights_sha256 == read_card(digits_expert).weights_sha256  # the classifier's
    assert card.denoiser["source"] == "denoiser" and (local / "denoiser" / UNET_WEIGHTS).is_file()
    files = {name: (folder / name).read_bytes() for name in DENOISER_FILES}
    sha = make_git_repo(tmp_path / "mirrors" / "models" / "org" / "ddpm", [files])[0]
    with OlahServer(tmp_path / "mirrors", tmp_path / "olah") as server:
        hub = tmp_path / "hub-family"
        assert main(["experts", "make-denoised", "--classifier", "clean", "--denoiser",
                     "hf://org/ddpm@main", "--sigmas", "0.5", "--out", str(hub), "--endpoint",
                     server.endpoint]) == 0
    block = read_card(hub).denoiser
    assert block["source"] == "hf://org/ddpm" and block["revision"] == sha  # pinned commit
    assert block["files"] == read_denoiser(folder).sha256
    expert = Registry().load(str(hub), sigma=0.5)  # from the Hub cache, no server
    assert expert.sigma == 0.5 and expert.card.kind == "denoised"


def test_a_resized_classifier_keeps_its_resize_behind_the_denoiser(folder, tmp_path):
    """A 16-pixel classifier on 8-pixel images (a 224-pixel ViT on CIFAR-10 in small): the
    family's card keeps the resize, and the expert resizes the denoised image, not the input."""
    from rsrouter.cards.expert import read_card
    from rsrouter.cards.header import ResizeSpec
    from rsrouter.models import create_model
    from rsrouter.registry.core import Registry
    from rsrouter.registry.denoised_card import make_denoised_card
    from rsrouter.registry.importers import import_checkpoint

    torch.manual_seed(4)
    net = create_model("cnn_tiny", 10, (1, 16, 16)).eval()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    clean = import_checkpoint(tmp_path / "net.pt", tmp_path / "clean", fmt="state_dict",
                              sigma=0.25, dataset="digits", arch="cnn_tiny",
                              resize=ResizeSpec((16, 16)))
    family = make_denoised_card(str(clean), str(folder), [0.5], tmp_path / "family")
    card = read_card(family)
    assert card.resize == ResizeSpec((16, 16), "bicubic", False)
    expert = Registry().load(str(family), sigma=0.5)
    base = expert.model
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        clean_pixels = (base.denoise(x) + 1) / 2
        big = torch.nn.functional.interpolate(clean_pixels, size=(16, 16), mode="bicubic",
                                              align_corners=False)
        want = net((big - card.mean[0]) / card.std[0])
        assert torch.allclose(base(x), want, atol=1e-5)


def test_a_denoised_family_on_a_git_remote_loads_with_its_nested_denoiser(folder, tmp_path,
                                                                          monkeypatch):
    """A family pushed whole (card + denoiser/unet/... folders) to a git remote: the denoiser's
    nested files are fetched from the pinned tree, beside the card's, and served offline after."""
    import subprocess

    from rsrouter.registry.core import Registry
    from rsrouter.sources import git as gitremote
    from rsrouter.sources.publish import push_to_git

    family = _card(folder, tmp_path / "published")
    remote = tmp_path / "family.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    sha = push_to_git(family, str(remote))
    registry = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml")
    entry = registry.register(f"git+{remote.as_uri()}@{sha}", "git-family")
    assert entry.kind == "denoised" and entry.revision == sha
    expert = registry.load("git-family#sigma=0.5")
    cert = expert.certify(torch.rand(1, 8, 8), n0=10, n=50, alpha=0.01, batch_size=60)
    assert cert.sigma == 0.5 and cert.n == 50
    cached = gitremote.cached_folder(remote.as_uri(), sha)
    assert all((cached / "denoiser" / name).is_file() for name in DENOISER_FILES)
    assert (cached / "config.json").is_file()  # the card's files stay beside the denoiser's
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (remote / "objects").rename(tmp_path / "gone")  # nothing left to fetch from: the cache
    again = Registry(tmp_path / "p.yaml", tmp_path / "u.yaml").load("git-family#sigma=0.25")
    assert again.sigma == 0.25


def test_a_hub_denoiser_that_fails_its_pins_is_deleted_from_the_hub_cache(folder, tmp_path):
    """Changed bytes in the Hub cache are never reused: the denoiser's cached files go, the
    card's own files stay, and the next load downloads the pinned bytes again."""
    from hubserver import OlahServer, make_git_repo

    from rsrouter.registry.core import Registry
    from rsrouter.sources import hub

    files = {name: (folder / name).read_bytes() for name in DENOISER_FILES}
    sha = make_git_repo(tmp_path / "mirrors" / "models" / "org" / "ddpm-digits", [files])[0]
    block = denoiser_block("hf://org/ddpm-digits", sha, read_denoiser(folder))
    card_dir = _card(folder, tmp_path, block)
    with OlahServer(tmp_path / "mirrors", tmp_path / "olah") as server:
        def load():
            return Registry(tmp_path / "p.yaml", tmp_path / "u.yaml",
                            endpoint=server.endpoint).load(f"{card_dir}#sigma=0.5")

        load()
        assert hub.is_cached("org/ddpm-digits", sha, DENOISER_FILES)
        cached = hub.snapshot_folder("org/ddpm-digits", sha) / UNET_WEIGHTS
        data = bytearray(cached.read_bytes())
        data[-1] ^= 1
        cached.resolve().write_bytes(bytes(data))  # the blob the snapshot links to
        with pytest.raises(IntegrityError, match="diffusion_pytorch_model.*deleted"):
            load()
        assert not hub.is_cached("org/ddpm-digits", sha, [UNET_WEIGHTS])
        assert (card_dir / "model.safetensors").is_file()
        expert = load()  # downloaded again, pinned bytes
        assert expert.base_model.parts.record["files"] == block["files"]
        # a card on the Hub too: its own verified files stay cached, the denoiser's go
        card = {p.name: p.read_bytes() for p in card_dir.iterdir() if p.is_file()}
        family = make_git_repo(tmp_path / "mirrors" / "models" / "org" / "family", [card])[0]
        cached.resolve().write_bytes(bytes(data))
        with pytest.raises(IntegrityError, match="deleted"):
            Registry(tmp_path / "p.yaml", tmp_path / "u.yaml", endpoint=server.endpoint).load(
                f"hf://org/family@{family}#sigma=0.5")
        assert hub.is_cached("org/family", family)
        assert not hub.is_cached("org/ddpm-digits", sha, [UNET_WEIGHTS])
