"""The denoiser of a denoised expert card: its ``rs_expert.denoiser`` block and its pinned files.

A denoiser is a folder in diffusers' DDPMPipeline layout (:data:`DENOISER_FILES`). A card names it
with a block ``{source, revision, files}``: ``source`` a folder relative to the card or
``hf://org/name`` (then ``revision`` a commit sha), ``files`` the sha256 of each file. Every file
is read once and hashed (:func:`read_denoiser`); nothing here imports diffusers or torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CardError, IntegrityError
from ..files import read_hashed
from ..urls import public_url
from .pins import check_sha256, is_commit_sha, parse_config
from .refs import HF_PREFIX, HUB_REPO_ID

UNET_CONFIG = "unet/config.json"
UNET_WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
SCHEDULER_CONFIG = "scheduler/scheduler_config.json"
DENOISER_FILES = (UNET_CONFIG, UNET_WEIGHTS, SCHEDULER_CONFIG)
MODEL_INDEX = "model_index.json"  # written for diffusers' DDPMPipeline; never read here
_BLOCK_KEYS = ("source", "revision", "files")
_FIELD = "rs_expert.denoiser"


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
    expected = checked_pins(pins, folder) if pins is not None else {}
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


def checked_pins(pins: dict[str, str], folder: Path) -> dict[str, str]:
    """``pins`` of every denoiser file; IntegrityError for a pin that is empty or malformed."""
    return {name: check_sha256(pins.get(name), f"{folder}: pinned sha256 of {name}")
            for name in DENOISER_FILES}


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
    _check_source(block.get("source"), block.get("revision"), where)
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


def _check_source(source: object, revision: object, where: str) -> None:
    """A folder source without a revision, or ``hf://org/name`` with a commit sha."""
    if not isinstance(source, str) or not source.strip():
        raise CardError(f"{where}: field {_FIELD}.source must be a folder relative to the card or "
                        f"hf://org/name, got {source!r}")
    if source.startswith(HF_PREFIX):
        repo_id, at, _ = source[len(HF_PREFIX):].partition("@")
        if not HUB_REPO_ID.fullmatch(repo_id):
            raise CardError(f"{where}: field {_FIELD}.source: bad repo id in {source!r}: expected "
                            f"{HF_PREFIX}org/name, letters, digits, '.', '_' and '-' only")
        if at:
            raise CardError(f"{where}: field {_FIELD}.source {source!r}: give the commit in "
                            f"{_FIELD}.revision, not after '@'")
        if not is_commit_sha(revision):
            raise CardError(f"{where}: field {_FIELD}.revision must be a full commit sha (40 "
                            f"lowercase hex) for a Hub source, got {revision!r}")
    elif revision is not None:
        raise CardError(f"{where}: field {_FIELD}.revision must be null for a folder source "
                        f"({source!r}), got {revision!r}")


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


def nested_folder(block: dict, where: str) -> Path:
    """The folder source of ``block`` as a path inside the card's repository.

    Raises:
        CardError: an absolute path or one that leaves the repository.
    """
    rel = Path(block["source"])
    if rel.is_absolute() or ".." in rel.parts:
        raise CardError(f"{where}: {_FIELD}.source {block['source']!r} must be a folder inside "
                        "the expert's repository (or hf://org/name)")
    return rel
