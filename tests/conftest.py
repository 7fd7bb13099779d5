"""Shared fixtures: tiny experts trained in seconds on scikit-learn's digits."""

from __future__ import annotations

import pytest
import torch
from hubserver import OlahServer

from rsrouter.training.expert import TrainConfig, train_expert


@pytest.fixture(scope="session")
def digits_expert(tmp_path_factory) -> str:
    """A digits expert (cnn_tiny, sigma 0.25, 3 epochs): a real expert folder."""
    out = tmp_path_factory.mktemp("experts") / "digits-tiny"
    torch.manual_seed(0)
    train_expert(TrainConfig("digits", "cnn_tiny", 0.25, epochs=3, batch_size=64, lr=0.05), out,
                 name="digits-tiny", progress=False)
    return str(out)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Never touch the user's config or Hub cache; never reach beyond 127.0.0.1."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "RSROUTER_DATA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RSROUTER_CONFIG_DIR", str(tmp_path / "rsrouter-config"))
    monkeypatch.setenv("RSROUTER_CACHE", str(tmp_path / "rsrouter-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def digits_expert_wide(tmp_path_factory) -> str:
    """A second digits expert (cnn_tiny, sigma 0.5), for routing tests."""
    out = tmp_path_factory.mktemp("experts") / "digits-tiny-wide"
    train_expert(TrainConfig("digits", "cnn_tiny", 0.5, epochs=3, batch_size=64, lr=0.05), out,
                 name="digits-tiny-wide", progress=False)
    return str(out)


@pytest.fixture(scope="session")
def digits_shared(tmp_path_factory) -> str:
    """One digits classifier for sigmas 0.25 and 0.5 (cnn_tiny, 3 epochs, each example's sigma
    drawn from the two): a card that serves both."""
    out = tmp_path_factory.mktemp("experts") / "digits-shared"
    train_expert(TrainConfig("digits", "cnn_tiny", sigmas=(0.25, 0.5), epochs=3, batch_size=64,
                             lr=0.05), out, name="digits-shared", progress=False)
    return str(out)


@pytest.fixture(scope="module")
def server(mirrors, tmp_path_factory):
    """A Hub-compatible server (olah on 127.0.0.1) for a test module: it serves the git repos of
    the module's own ``mirrors`` fixture (a tuple whose first item is the mirrors folder)."""
    with OlahServer(mirrors[0], tmp_path_factory.mktemp("olah")) as running:
        yield running


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one thread (and never contend with other processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
