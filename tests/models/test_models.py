"""Architectures: normalization layer, small CNNs, Cohen's CIFAR ResNets, timm names, plugins."""

from __future__ import annotations

import pytest
import torch

from rsrouter.errors import UnknownArchitectureError, UntrustedCodeError
from rsrouter.models import (
    CifarResNet,
    Normalize,
    architecture_source,
    create_classifier,
    create_model,
    list_models,
)


def test_normalize_layer():
    layer = Normalize((0.5, 0.25), (0.5, 0.25))
    x = torch.ones(2, 2, 3, 3)
    out = layer(x)
    assert torch.allclose(out[:, 0], torch.ones(2, 3, 3))
    assert torch.allclose(out[:, 1], torch.full((2, 3, 3), 3.0))
    assert set(layer.state_dict()) == {"mean", "std"}
    with pytest.raises(ValueError):
        Normalize((0.5,), (0.0,))


@pytest.mark.parametrize("arch, size", [("cnn_small", (1, 28, 28)), ("cnn_tiny", (1, 28, 28)),
                                         ("cnn_small", (1, 8, 8)), ("cifar_resnet20", (3, 32, 32))])
def test_rsrouter_models_forward(arch, size):
    model = create_classifier(arch, 10, size, [0.5] * size[0], [0.25] * size[0]).eval()
    assert model(torch.rand(2, *size)).shape == (2, 10)
    assert architecture_source(arch) == "rsrouter"


def test_cifar_resnet110_matches_cohen_layout():
    net = create_model("cifar_resnet110", 10, (3, 32, 32))
    keys = net.state_dict().keys()
    assert "layer1.17.conv2.weight" in keys and "layer1.18.conv1.weight" not in keys
    assert "layer2.0.downsample.0.weight" in keys and "layer2.0.downsample.1.running_mean" in keys
    assert "fc.weight" in keys
    params = sum(p.numel() for p in net.parameters())
    assert 1.7e6 < params < 1.75e6  # ResNet-110 on CIFAR has 1.73M parameters
    with pytest.raises(ValueError, match="6n"):
        CifarResNet(21)


def test_timm_model_by_name():
    net = create_model("resnet18", 7, (1, 32, 32))
    assert net(torch.rand(2, 1, 32, 32)).shape == (2, 7)
    assert architecture_source("resnet18") == "timm"


def test_unknown_architecture():
    with pytest.raises(UnknownArchitectureError, match="not a timm model"):
        create_model("no_such_net", 10, (1, 8, 8))
    with pytest.raises(UntrustedCodeError, match="--trust-code"):
        create_model("no_such_module:factory", 10, (1, 8, 8))
    with pytest.raises(UnknownArchitectureError, match="cannot import"):
        create_model("no_such_module:factory", 10, (1, 8, 8), trust_code=True)
    with pytest.raises(UnknownArchitectureError, match="cannot import"):  # a trusted module
        create_model("no_such_module.sub:factory", 10, (1, 8, 8), trust_code={"no_such_module"})
    with pytest.raises(UntrustedCodeError):  # a prefix of a name is not a parent package
        create_model("no_such_module2:factory", 10, (1, 8, 8), trust_code={"no_such_module"})
    assert "cifar_resnet110" in list_models()
