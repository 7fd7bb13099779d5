"""Pins: the sha256 every load must match, and the one reader of expert and router folders.

A folder holds ``config.json`` (the card), ``model.safetensors`` (the bare network) and
``README.md``. :func:`read_artifact` reads the first two once and hashes those very bytes;
:func:`check_pin` compares them with a registration's or a router's record and
:func:`check_claim` with the card's own ``weights_sha256``. Nothing here parses more than JSON
or imports anything a card names.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CardError, IntegrityError
from ..files import read_hashed

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
README_FILE = "README.md"
ARTIFACT_FILES = (CONFIG_FILE, WEIGHTS_FILE, README_FILE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def check_sha256(value: object, what: str) -> str:
    """``value`` if it is a sha256 (64 lowercase hex); else IntegrityError naming ``what``.

    An empty or missing hash is an error, never a skipped check.
    """
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        shown = "missing" if not value else f"{value!r} is not a sha256 (64 lowercase hex)"
        raise IntegrityError(f"{what}: {shown}; rsrouter loads nothing whose bytes are not pinned")
    return value


def is_commit_sha(value: object) -> bool:
    """Whether ``value`` is a full git commit sha (40 lowercase hex)."""
    return isinstance(value, str) and COMMIT_SHA.fullmatch(value) is not None


@dataclass(frozen=True)
class Pin:
    """The hashes a load must match, and who recorded them (named in errors)."""

    weights_sha256: str
    config_sha256: str
    by: str = "the pin"


@dataclass(frozen=True)
class ArtifactFiles:
    """An expert or router folder read once: the bytes that are hashed are the bytes used."""

    folder: Path
    config: dict[str, Any]
    config_sha256: str
    weights: bytes
    weights_sha256: str

    def pin(self, by: str = "") -> Pin:
        """The hashes of these bytes, to record (registration, router training)."""
        return Pin(self.weights_sha256, self.config_sha256, by)


def read_artifact(folder: str | os.PathLike, *pins: Pin) -> ArtifactFiles:
    """Read ``config.json`` and ``model.safetensors`` of ``folder`` once and hash them.

    Both hashes must equal every pin given (a registration, a router's record). Nothing is
    parsed beyond JSON and nothing is imported: check the card's own claim, then build the model
    from the returned bytes.

    Raises:
        CardError: a file is missing or config.json is not JSON.
        IntegrityError: a hash differs from a pin (both hashes named), or a pin is empty.
    """
    folder = Path(folder)
    paths = {name: folder / name for name in (CONFIG_FILE, WEIGHTS_FILE)}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        raise CardError(f"{folder}: {' and '.join(missing)} not found; an expert or router folder "
                        "holds config.json, model.safetensors and README.md (see docs/experts.md)")
    config_bytes, config_sha = read_hashed(paths[CONFIG_FILE])
    weights, weights_sha = read_hashed(paths[WEIGHTS_FILE])
    files = ArtifactFiles(folder, parse_config(config_bytes, str(paths[CONFIG_FILE])), config_sha,
                          weights, weights_sha)
    for pin in pins:
        check_pin(files, pin)
    return files


def safetensors_shapes(data: bytes, where: str) -> dict[str, tuple[int, ...]]:
    """The tensor shapes named in the header of safetensors ``data`` (no tensor is read).

    Raises:
        IntegrityError: the header is truncated or not a safetensors header.
    """
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header is longer than the file")
        header = json.loads(data[8:8 + size])
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        if not all(type(d) is int and d >= 0 for shape in shapes.values() for d in shape):
            raise ValueError("a tensor shape is not a list of sizes")
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise IntegrityError(f"{where} is not a readable safetensors file (truncated or corrupt: "
                             f"{e}); delete it and download or rebuild it") from e
    return shapes


def check_pin(files: ArtifactFiles, pin: Pin) -> None:
    """Both hashes of ``files`` must equal ``pin``'s (which must not be empty).

    Raises:
        IntegrityError: naming the file, both hashes and who recorded the pin.
    """
    for name, actual, expected in ((WEIGHTS_FILE, files.weights_sha256, pin.weights_sha256),
                                   (CONFIG_FILE, files.config_sha256, pin.config_sha256)):
        check_sha256(expected, f"{pin.by}: sha256 of {name}")
        if actual != expected:
            what = ("the weights changed" if name == WEIGHTS_FILE else
                    "the card (sigma, normalization, architecture) was edited")
            raise IntegrityError(f"{files.folder / name}: sha256 {actual} does not match "
                                 f"{expected} recorded by {pin.by}: {what} since; nothing was "
                                 "loaded (restore the files, or re-register / retrain on purpose)")


def check_claim(claimed: object, files: ArtifactFiles, field_name: str) -> None:
    """The card's own ``weights_sha256`` must be present and equal the weights' sha256."""
    where = files.folder / CONFIG_FILE
    check_sha256(claimed, f"{where}: {field_name}")
    if claimed != files.weights_sha256:
        raise IntegrityError(f"{files.folder / WEIGHTS_FILE}: sha256 {files.weights_sha256} does "
                             f"not match the card's {field_name} {claimed}; the weights were not "
                             "loaded (re-download them, or the card lies about its weights)")


def parse_config(data: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a config.json (the one reader of expert and router cards).

    Raises:
        CardError: not JSON, or not an object.
    """
    try:
        config = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CardError(f"{where} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CardError(f"{where}: the top level must be a JSON object")
    return config


def read_config(folder: str | os.PathLike, kind: str = "an expert") -> tuple[dict, str]:
    """``(config dict, path)`` of ``folder/config.json``, for display (no hash check).

    Raises:
        CardError: missing, not JSON or not an object.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CardError(f"{path} not found: {kind} folder holds config.json, model.safetensors "
                        "and README.md (see docs/experts.md)")
    return parse_config(path.read_bytes(), str(path)), str(path)
