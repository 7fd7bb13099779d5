"""Datasets: pixels in [0, 1], Debian / torchvision-style / RSROUTER_DATA places, clear errors."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from rsrouter import data
from rsrouter.data import load_dataset, subset_indices
from rsrouter.errors import DatasetNotFoundError


def test_digits_splits_are_disjoint_and_in_unit_range():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    validation = load_dataset("digits", "validation")
    assert len(test) == 500 and len(validation) == 300 and len(train) == 1797 - 500 - 300
    # validation is a fixed hold-out of the official training set: disjoint from train, and the
    # same on every load
    seen = {tuple(v.flatten().tolist()) for v in train.images}
    assert sum(tuple(v.flatten().tolist()) in seen for v in validation.images) < 10
    again = load_dataset("digits", "validation")
    assert torch.equal(again.images, validation.images)
    assert "300 of the 1297 training images held out" in validation.source
    x, y = test[0]
    assert x.shape == (1, 8, 8) and 0 <= int(y) < 10
    assert float(train.images.min()) >= 0.0 and float(train.images.max()) <= 1.0
    rows = {tuple(v.flatten().tolist()) for v in test.images}
    assert sum(tuple(v.flatten().tolist()) in rows for v in train.images) < 10  # (digits has dupes)


def _write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 8, array.ndim) + b"".join(struct.pack(">I", d)
                                                               for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fmnist(folder, n=5):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for img, lab in data._FMNIST_FILES.values():
        _write_idx(folder / f"{img}.gz", rng.integers(0, 256, size=(n, 28, 28)))
        _write_idx(folder / f"{lab}.gz", rng.integers(0, 10, size=(n,)))


def test_fashion_mnist_from_torchvision_style_root(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    _fake_fmnist(tmp_path / "FashionMNIST" / "raw")
    ds = load_dataset("fashion-mnist", "test", root=tmp_path)
    assert len(ds) == 5 and ds[0][0].shape == (1, 28, 28)
    assert 0.0 <= float(ds.images.min()) and float(ds.images.max()) <= 1.0
    assert ds.info.label_names[9] == "Ankle boot"


def test_fashion_mnist_from_env(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    _fake_fmnist(tmp_path / "fashion-mnist")
    monkeypatch.setenv("RSROUTER_DATA", str(tmp_path))
    assert len(load_dataset("fashion-mnist", "train")) == 5


def test_missing_dataset_names_every_place_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "system")
    monkeypatch.setenv("RSROUTER_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as e:
        load_dataset("fashion-mnist", "test", root=tmp_path / "given")
    msg = str(e.value)
    for place in ("given", "env", "system"):
        assert str(tmp_path / place) in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    with pytest.raises(DatasetNotFoundError, match="CIFAR10"):
        load_dataset("cifar10", "test", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="ImageFolder"):
        load_dataset("imagenet", "test", root=tmp_path)


def test_corrupt_idx_file_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "none")
    folder = tmp_path / "fashion-mnist"
    _fake_fmnist(folder)
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetNotFoundError, match="truncated"):
        load_dataset("fashion-mnist", "test", root=tmp_path)


def test_cifar10_from_torchvision_folder(tmp_path, monkeypatch):
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch, f)  # torchvision's own CIFAR10 format (test fixture, not a model)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [str(i) for i in range(10)]}, f)
    # the fixture's files are not the real ones, so torchvision's md5 check is bypassed
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    ds = load_dataset("cifar10", "test", root=tmp_path)
    x, y = ds[1]
    assert x.shape == (3, 32, 32) and y == 1 and float(x.max()) <= 1.0


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="split"):
        load_dataset("digits", "val")


def test_subset_indices_like_cohen():
    assert subset_indices(10, 3) == [0, 3, 6, 9]
    assert subset_indices(10, 3, 7) == [0, 3, 6]
    assert subset_indices(10, 1, -1) == list(range(10))
    with pytest.raises(ValueError):
        subset_indices(10, 0)


def test_real_fashion_mnist_if_installed():
    """The README's set-up installs the Debian package; this checks it is read correctly."""
    ds = load_dataset("fashion-mnist", "test")
    assert len(ds) == 10_000 and ds.images.shape == (10_000, 1, 28, 28)
    assert ds.images.dtype == torch.float32 and float(ds.images.max()) == 1.0
    assert torch.bincount(ds.labels).tolist() == [1000] * 10


def test_router_labels_and_training_see_the_unaugmented_image(tmp_path):
    """A label belongs to one image: the router's dataset applies no random crop or flip, while
    expert training (augment=True) does."""
    from PIL import Image

    from rsrouter.routing.config import parse_config
    from rsrouter.training.router import router_dataset

    for cls in ("a", "b"):
        folder = tmp_path / "train" / cls
        folder.mkdir(parents=True)
        pixels = np.random.default_rng(len(cls)).integers(0, 255, (300, 300, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "0.png")
    cfg = parse_config({"experts": ["e1", "e2"],
                        "data": {"dataset": "imagenet", "root": str(tmp_path)}})
    data = router_dataset(cfg)
    assert all(torch.equal(data[0][0], data[0][0]) for _ in range(3))
    augmented = load_dataset("imagenet", "train", tmp_path, augment=True)
    draws = [augmented[0][0] for _ in range(4)]
    assert not all(torch.equal(draws[0], d) for d in draws[1:])


def test_data_identity_fingerprints_what_was_read():
    from rsrouter.data import TensorImageDataset, data_identity

    digits = load_dataset("digits")
    assert data_identity(digits) == data_identity(load_dataset("digits"))
    assert data_identity(digits)["split"] == "test"
    other = TensorImageDataset(digits.images, digits.labels.flip(0), digits.info, digits.source,
                               "test")
    assert data_identity(other)["labels_sha256"] != data_identity(digits)["labels_sha256"]
