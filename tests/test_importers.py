"""Importing Cohen / SmoothAdv / plain checkpoints, built here in their formats."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rsrouter.cards.expert import read_card
from rsrouter.cards.header import ResizeSpec
from rsrouter.errors import CardError
from rsrouter.models import create_model
from rsrouter.registry.expert import load_expert_folder
from rsrouter.registry.importers import import_checkpoint


class CohenNormalizeLayer(nn.Module):
    """Cohen et al.'s NormalizeLayer: means/sds are plain tensors, absent from the state dict."""

    def __init__(self, means, sds):
        super().__init__()
        self.means, self.sds = torch.tensor(means), torch.tensor(sds)

    def forward(self, x):
        return (x - self.means.view(1, -1, 1, 1)) / self.sds.view(1, -1, 1, 1)


class BufferNormalize(CohenNormalizeLayer):
    """A variant that registers mu/sigma as buffers (they then appear as 0.mu / 0.sigma)."""

    def __init__(self, means, sds):
        nn.Module.__init__(self)
        self.register_buffer("mu", torch.tensor(means))
        self.register_buffer("sigma", torch.tensor(sds))
        self.means, self.sds = self.mu, self.sigma


CIFAR_MEAN, CIFAR_STD = [0.4914, 0.4822, 0.4465], [0.2023, 0.1994, 0.2010]


def _trained_like(net: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics, so a mis-mapped key would show
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _same_outputs(reference: nn.Module, folder) -> None:
    expert = load_expert_folder(folder)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(expert.model(x), reference(x), atol=1e-5)


def test_cohen_cifar_checkpoint(tmp_path):
    net = _trained_like(create_model("cifar_resnet20", 10, (3, 32, 32)))
    full = nn.Sequential(CohenNormalizeLayer(CIFAR_MEAN, CIFAR_STD), net).eval()
    ckpt = tmp_path / "checkpoint.pth.tar"
    torch.save({"epoch": 90, "arch": "cifar_resnet20", "state_dict": full.state_dict(),
                "optimizer": torch.optim.SGD(net.parameters(), lr=0.1).state_dict()}, ckpt)
    out = import_checkpoint(ckpt, tmp_path / "expert", fmt="cohen", sigma=0.25,
                            dataset="cifar10")
    card = read_card(out)
    assert card.architecture == "cifar_resnet20" and card.sigma == 0.25
    assert card.training["format"] == "cohen" and card.training["checkpoint_epoch"] == 90
    _same_outputs(full, out)


def test_smoothadv_dataparallel_with_stored_normalization(tmp_path):
    net = _trained_like(create_model("cifar_resnet20", 10, (3, 32, 32)))
    means, sds = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    full = nn.Sequential(BufferNormalize(means, sds), net).eval()
    wrapped = {f"module.{k}": v for k, v in full.state_dict().items()}  # DataParallel(Sequential)
    ckpt = tmp_path / "smoothadv.pth.tar"
    torch.save({"arch": "cifar_resnet20", "state_dict": wrapped}, ckpt)
    out = import_checkpoint(ckpt, tmp_path / "expert", fmt="smoothadv", sigma=0.5,
                            dataset="cifar10")
    card = read_card(out)
    assert card.mean == pytest.approx(tuple(means)) and card.std == pytest.approx(tuple(sds))
    _same_outputs(full, out)


def test_imagenet_resnet50_dataparallel_keys(tmp_path):
    net = create_model("resnet50", 1000, (3, 224, 224)).eval()
    state = {f"1.module.{k}": v for k, v in net.state_dict().items()}  # Cohen's ImageNet layout
    ckpt = tmp_path / "noise_0.50.pth.tar"
    torch.save({"arch": "resnet50", "state_dict": state}, ckpt)
    out = import_checkpoint(ckpt, tmp_path / "expert", fmt="cohen", sigma=0.5, dataset="imagenet")
    card = read_card(out)
    assert card.architecture == "resnet50" and card.arch_source == "timm"
    assert card.num_classes == 1000 and card.input_size == (3, 224, 224)
    expert = load_expert_folder(out)
    assert torch.equal(expert.model.net.conv1.weight, net.conv1.weight)


def test_plain_state_dict_and_errors(tmp_path):
    net = _trained_like(create_model("cifar_resnet20", 10, (3, 32, 32)))
    ckpt = tmp_path / "sd.pt"
    torch.save(net.state_dict(), ckpt)
    out = import_checkpoint(ckpt, tmp_path / "e", fmt="state_dict", sigma=0.12,
                            dataset="cifar10", arch="cifar_resnet20")
    assert read_card(out).sigma == 0.12
    with pytest.raises(CardError, match="pass --arch"):
        import_checkpoint(ckpt, tmp_path / "e2", fmt="state_dict", sigma=0.12, dataset="cifar10")
    with pytest.raises(CardError, match="module 1"):
        import_checkpoint(ckpt, tmp_path / "e3", fmt="cohen", sigma=0.12, dataset="cifar10",
                          arch="cifar_resnet20")
    with pytest.raises(CardError, match="does not match|expects|missing keys"):
        import_checkpoint(ckpt, tmp_path / "e4", fmt="state_dict", sigma=0.12,
                          dataset="cifar10", arch="cifar_resnet110")


def test_pickled_objects_are_refused(tmp_path):
    ckpt = tmp_path / "evil.pt"
    evil = CohenNormalizeLayer([0.5], [0.2])  # an arbitrary object: needs full unpickling
    torch.save({"arch": "cifar_resnet20", "state_dict": {}, "obj": evil}, ckpt)
    with pytest.raises(CardError, match="weights-only"):
        import_checkpoint(ckpt, tmp_path / "e", fmt="cohen", sigma=0.25, dataset="cifar10")


def test_a_network_trained_at_another_resolution_is_imported_with_a_resize(tmp_path):
    """A 16-pixel network on 8-pixel digits: the card resizes the (noisy) input in front of it,
    the certificate stays in the dataset's pixels, and the family keeps the resize."""
    from rsrouter.cli import main

    torch.manual_seed(0)
    net = create_model("cnn_tiny", 10, (1, 16, 16)).eval()
    torch.save(net.state_dict(), tmp_path / "net.pt")
    assert main(["experts", "import", str(tmp_path / "net.pt"), "--format", "state_dict",
                 "--arch", "cnn_tiny", "--sigma", "0.25", "--dataset", "digits",
                 "--resize", "16", "--mean", "0.5", "--std", "0.5",
                 "--out", str(tmp_path / "e")]) == 0
    card = read_card(tmp_path / "e")
    assert card.input_size == (1, 8, 8) and card.resize == ResizeSpec((16, 16), "bicubic")
    assert card.model_input_size == (1, 16, 16)
    assert card.mean == (0.5,) and card.std == (0.5,)
    expert = load_expert_folder(tmp_path / "e")
    x = torch.rand(3, 1, 8, 8)
    big = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic", align_corners=False)
    mean, std = card.mean[0], card.std[0]
    with torch.no_grad():
        assert torch.allclose(expert.model(x), net((big - mean) / std), atol=1e-5)
        assert not torch.allclose(expert.model(x), net((torch.nn.functional.interpolate(
            x, size=(16, 16), mode="nearest") - mean) / std), atol=1e-4)
    smooth = import_checkpoint(tmp_path / "net.pt", tmp_path / "aa", fmt="state_dict",
                               sigma=0.25, dataset="digits", arch="cnn_tiny",
                               resize=ResizeSpec((16, 16), antialias=True))
    assert read_card(smooth).resize.antialias
    anti = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic",
                                           align_corners=False, antialias=True)
    with torch.no_grad():  # antialiased kernels differ from the plain ones when upsampling too
        got = load_expert_folder(smooth).model(x)
        assert torch.allclose(got, net((anti - read_card(smooth).mean[0])
                                       / read_card(smooth).std[0]), atol=1e-5)
        assert not torch.allclose(got, net((big - read_card(smooth).mean[0])
                                           / read_card(smooth).std[0]), atol=1e-5)
    # without the resize the weights do not fit an 8-pixel network: a named error, not a guess
    with pytest.raises(CardError, match="shape|fit"):
        import_checkpoint(tmp_path / "net.pt", tmp_path / "f", fmt="state_dict", sigma=0.25,
                          dataset="digits", arch="cnn_tiny")
