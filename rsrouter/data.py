"""Datasets with pixels in [0, 1]: digits, fashion-mnist, cifar10, imagenet.

``load_dataset(name, split, root)`` returns a map-style dataset of ``(image [C, H, W], label)``
with an ``info`` attribute (:class:`DatasetInfo`). A dataset that is not found raises
:class:`~rsrouter.errors.DatasetNotFoundError` naming every place looked at and how to get it.
Search order: the ``root`` argument, then ``$RSROUTER_DATA``, then the dataset's system places.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DatasetNotFoundError

SPLITS = ("train", "validation", "test")
# The validation split: a fixed hold-out of the official training set (seeded, the same on every
# machine); "train" is the rest. Choices (router settings, which router is bundled, its
# certificate) are made on "validation"; "test" is certified once, at the end.
VALIDATION_SIZE = {"digits": 300, "fashion-mnist": 5000, "cifar10": 5000, "imagenet": 10000}
VALIDATION_SEED = 20260101
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset (normalization defaults included)."""

    name: str
    num_classes: int
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_names: tuple[str, ...] = field(default=())


INFOS = {
    "digits": DatasetInfo("digits", 10, (1, 8, 8), (0.3054,), (0.3754,),
                          tuple(str(i) for i in range(10))),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        "cifar10", 10, (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    "imagenet": DatasetInfo("imagenet", 1000, (3, 224, 224), (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225)),
}


def dataset_info(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of a known dataset (raises ValueError for an unknown name)."""
    try:
        return INFOS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(INFOS)}") from None


class TensorImageDataset(Dataset):
    """Images held in memory as one float tensor ``[N, C, H, W]`` in [0, 1] plus int64 labels.

    ``source`` says where they were read from (a folder, or a description).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo,
                 source: str = "in memory", split: str = "") -> None:
        self.images, self.labels, self.info = images, labels, info
        self.source, self.split = source, split

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class _Wrapped(Dataset):
    """A torchvision dataset with ``info``, ``source`` (the folder read) and ``split``."""

    def __init__(self, inner: Dataset, info: DatasetInfo, source: str, split: str) -> None:
        self.inner, self.info, self.source, self.split = inner, info, source, split

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        return self.inner[i]


def load_dataset(name: str, split: str = "test", root: str | os.PathLike | None = None, *,
                 augment: bool = False) -> Dataset:
    """Load ``name`` ("digits", "fashion-mnist", "cifar10", "imagenet") at ``split``.

    ``augment=True`` applies the usual random training augmentation (CIFAR-10: crop + flip;
    ImageNet: random resized crop + flip) for expert training. Everything else (certification,
    router labels and router training) uses fixed images: a certificate or a label belongs to one
    image, not to a random crop of it.

    Raises:
        ValueError: unknown name or split.
        DatasetNotFoundError: the files are in none of the places looked at.
    """
    info = dataset_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    loader = {"digits": _digits, "fashion-mnist": _fashion_mnist, "cifar10": _cifar10,
              "imagenet": _imagenet}[name]
    if split == "test":
        return loader("test", root, info, augment)
    official = loader("train", root, info, augment and split == "train")
    held = validation_indices(len(official), VALIDATION_SIZE[name])
    if split == "validation":
        keep = held
    else:
        mask = np.ones(len(official), bool)
        mask[held] = False
        keep = np.flatnonzero(mask)
    return _subset(official, keep, split, f"{len(held)} of the {len(official)} training images "
                   f"held out (seed {VALIDATION_SEED})")


def validation_indices(n_train: int, size: int) -> np.ndarray:
    """The positions in the official training set that form the validation split (sorted):
    ``size`` of them, or a tenth of a training set smaller than twice that."""
    if n_train < 2 * size:
        size = n_train // 10
    rng = np.random.default_rng(VALIDATION_SEED)
    return np.sort(rng.permutation(n_train)[:size])


def _subset(ds: Dataset, keep: np.ndarray, split: str, note: str) -> Dataset:
    if isinstance(ds, TensorImageDataset):
        idx = torch.from_numpy(keep)
        return TensorImageDataset(ds.images[idx], ds.labels[idx], ds.info,
                                  f"{ds.source}; {split}: {note}", split)
    return _Subset(ds, keep.tolist(), split, note)


class _Subset(Dataset):
    """Part of a folder dataset (the train / validation split of CIFAR-10 and ImageNet)."""

    def __init__(self, inner: Dataset, keep: list[int], split: str, note: str) -> None:
        self.inner, self.keep, self.split = inner, keep, split
        self.info = inner.info
        self.source = f"{getattr(inner, 'source', '')}; {split}: {note}"
        targets = getattr(getattr(inner, "inner", None), "targets", None)
        self.labels = None if targets is None else [int(targets[i]) for i in keep]

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int):
        return self.inner[self.keep[i]]


def _candidates(root: str | os.PathLike | None, subdirs: Sequence[str],
                system: Sequence[Path] = ()) -> list[Path]:
    bases = [Path(root)] if root is not None else []
    if os.environ.get("RSROUTER_DATA"):
        bases.append(Path(os.environ["RSROUTER_DATA"]))
    out = [b / s if s else b for b in bases for s in subdirs]
    return out + list(system)


def _digits(split: str, root, info: DatasetInfo, augment: bool) -> TensorImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    idx_train, idx_test = train_test_split(np.arange(len(d.target)), test_size=500,
                                           random_state=0, stratify=d.target)
    idx = idx_train if split == "train" else idx_test
    images = torch.from_numpy(d.images[idx] / 16.0).float().unsqueeze(1)
    return TensorImageDataset(images, torch.from_numpy(d.target[idx]).long(), info,
                              "scikit-learn load_digits (test: 500 images, stratified, seed 0)",
                              split)


_FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[:2] != b"\x00\x00":
        raise DatasetNotFoundError(f"{path} is not an IDX file (corrupt or wrong file); "
                                   "reinstall the dataset")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(data) - offset != expected:
        raise DatasetNotFoundError(f"{path} is truncated: {len(data) - offset} bytes of "
                                   f"{expected}; reinstall the dataset")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _find_files(folder: Path, stems: Sequence[str]) -> list[Path] | None:
    found = []
    for stem in stems:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return None
    return found


def _fashion_mnist(split: str, root, info: DatasetInfo, augment: bool) -> TensorImageDataset:
    places = _candidates(root, ["", "fashion-mnist", "FashionMNIST/raw"],
                         [FASHION_MNIST_SYSTEM_DIR])
    for place in places:
        files = _find_files(place, _FMNIST_FILES[split])
        if files:
            images = torch.from_numpy(_read_idx(files[0]).copy()).float().div_(255).unsqueeze(1)
            labels = torch.from_numpy(_read_idx(files[1]).astype(np.int64))
            if len(images) != len(labels):
                raise DatasetNotFoundError(f"{place}: {len(images)} images but {len(labels)} "
                                           "labels; reinstall the dataset")
            return TensorImageDataset(images, labels, info, str(files[0].parent.resolve()), split)
    raise DatasetNotFoundError(
        f"Fashion-MNIST ({split}) not found; looked for {', '.join(_FMNIST_FILES[split])}[.gz] in: "
        + ", ".join(str(p) for p in places)
        + ". Get it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs to "
        f"{FASHION_MNIST_SYSTEM_DIR}), or download it with torchvision.datasets.FashionMNIST(root, "
        "download=True) and pass --data-root ROOT or set RSROUTER_DATA=ROOT."
    )


def _cifar10(split: str, root, info: DatasetInfo, augment: bool) -> Dataset:
    from torchvision import datasets, transforms

    places = _candidates(root, ["", "cifar10", "cifar-10"])
    for place in places:
        if (place / "cifar-10-batches-py").is_dir():
            tf = [transforms.ToTensor()]
            if augment:
                tf = [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *tf]
            ds = datasets.CIFAR10(str(place), train=split == "train", download=False,
                                  transform=transforms.Compose(tf))
            return _Wrapped(ds, info, str(place.resolve()), split)
    raise DatasetNotFoundError(
        "CIFAR-10 not found; looked for cifar-10-batches-py/ in: "
        + (", ".join(str(p) for p in places) or "(no place given)")
        + ". Download it where there is internet with torchvision.datasets.CIFAR10(ROOT, "
        "download=True), then pass --data-root ROOT or set RSROUTER_DATA=ROOT."
    )


def _imagenet(split: str, root, info: DatasetInfo, augment: bool) -> Dataset:
    from torchvision import datasets, transforms

    sub = "train" if split == "train" else "val"
    system = [Path(os.environ["IMAGENET_DIR"]) / sub] if os.environ.get("IMAGENET_DIR") else []
    places = _candidates(root, [sub, f"imagenet/{sub}"], system)
    for place in places:
        if place.is_dir():
            if augment:
                tf = [transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip()]
            else:
                tf = [transforms.Resize(256), transforms.CenterCrop(224)]
            ds = datasets.ImageFolder(str(place), transforms.Compose([*tf, transforms.ToTensor()]))
            named = DatasetInfo(info.name, len(ds.classes), info.input_size, info.mean, info.std,
                                tuple(ds.classes))
            return _Wrapped(ds, named, str(place.resolve()), split)
    raise DatasetNotFoundError(
        f"ImageNet ({sub}) not found; looked in: "
        + (", ".join(str(p) for p in places) or "(no place given)")
        + ". Point --data-root (or RSROUTER_DATA, or IMAGENET_DIR as in Cohen et al.'s code) at a "
        "folder holding train/ and val/ in torchvision ImageFolder layout (one folder per class)."
    )


def data_identity(dataset: Dataset) -> dict:
    """What a resumed run must find again: the dataset's name and split, the folder it was read
    from, its length and the sha256 of its labels (a cheap fingerprint of the data)."""
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = getattr(getattr(dataset, "inner", None), "targets", None)
    digest = (hashlib.sha256(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()
              if labels is not None else None)
    return {"dataset": dataset.info.name, "split": getattr(dataset, "split", ""),
            "source": getattr(dataset, "source", ""), "length": len(dataset),
            "labels_sha256": digest}


def subset_indices(length: int, skip: int = 1, max_index: int | None = None) -> list[int]:
    """Indices ``0, skip, 2 skip, ...`` below ``max_index`` (Cohen's ``--skip``/``--max``)."""
    if skip < 1:
        raise ValueError(f"skip must be >= 1, got {skip}")
    stop = length if max_index is None or max_index < 0 else min(length, max_index)
    return list(range(0, stop, skip))
