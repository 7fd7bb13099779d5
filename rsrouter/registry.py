"""The expert registry: names -> pinned, verifiable experts (local folders or Hub revisions).

Two registry files are merged: the project's ``experts/registry.yaml`` (the bundled zoo; sources
relative to it) and the user's ``registry.yaml`` in ``$RSROUTER_CONFIG_DIR`` (default
``$XDG_CONFIG_HOME/rsrouter`` or ``~/.config/rsrouter``). A name in both is an error. Each entry
records where the expert lives, the commit sha it is pinned to (Hub sources) and the sha256 of its
weights at registration: every later load is checked against both the card and that record.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import yaml

from . import hub
from .card import WEIGHTS_FILE, ExpertCard, read_card, verify_folder
from .errors import IntegrityError, RegistryError, UnknownExpertError
from .expert import Expert, load_expert_folder
from .files import atomic_write_text, sha256_file

PROJECT_REGISTRY = Path(__file__).resolve().parents[1] / "experts" / "registry.yaml"


def user_config_dir() -> Path:
    """``$RSROUTER_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/rsrouter``, else ``~/.config/rsrouter``."""
    if os.environ.get("RSROUTER_CONFIG_DIR"):
        return Path(os.environ["RSROUTER_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "rsrouter"


@dataclass
class Entry:
    """One registered expert. ``source`` is a folder or ``hf://org/name``; ``revision`` the sha."""

    name: str
    source: str
    revision: str | None
    weights_sha256: str
    dataset: str
    architecture: str
    sigma: float
    num_classes: int
    registry: str = ""  # the file that lists it (not saved)

    @property
    def is_hub(self) -> bool:
        return self.source.startswith(hub.HF_PREFIX)

    @property
    def uri(self) -> str:
        return f"{self.source}@{self.revision}" if self.is_hub else self.source

    def folder(self) -> Path:
        """The local folder of a folder source (relative paths are relative to the registry)."""
        path = Path(self.source)
        return path if path.is_absolute() else Path(self.registry).parent / path

    def to_yaml(self) -> dict:
        d = asdict(self)
        d.pop("name")
        d.pop("registry")
        return d


def _read(path: Path) -> dict[str, Entry]:
    if not path.is_file():
        return {}
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RegistryError(f"{path} is not valid YAML: {e}") from e
    experts = doc.get("experts") or {}
    if not isinstance(experts, dict):
        raise RegistryError(f"{path}: 'experts' must map names to entries")
    known = {f.name for f in fields(Entry)} - {"name", "registry"}
    out = {}
    for name, raw in experts.items():
        if not isinstance(raw, dict) or not {"source", "weights_sha256"} <= set(raw):
            raise RegistryError(f"{path}: entry {name!r} needs at least source and weights_sha256")
        unknown = set(raw) - known
        if unknown:
            raise RegistryError(f"{path}: entry {name!r} has unknown keys {sorted(unknown)}")
        out[name] = Entry(name=name, registry=str(path), **{k: raw.get(k) for k in known})
    return out


def _write(path: Path, entries: dict[str, Entry]) -> None:
    doc = {"experts": {name: e.to_yaml() for name, e in sorted(entries.items())}}
    header = "# rsrouter expert registry (written by `rsrouter experts register/remove`)\n"
    atomic_write_text(path, header + yaml.safe_dump(doc, sort_keys=False))


class Registry:
    """Registered experts from the project file and the user file (merged; conflicts raise).

    Args:
        project_file: the project registry (default: ``experts/registry.yaml`` of this checkout).
        user_file: the user registry (default: ``user_config_dir() / "registry.yaml"``).
        endpoint: Hub endpoint for hf:// sources (default ``HF_ENDPOINT`` or huggingface.co).
        cache_dir: Hub cache folder (default the standard HF cache).
        offline: force offline mode (default: ``HF_HUB_OFFLINE``).
    """

    def __init__(self, project_file: str | os.PathLike | None = None,
                 user_file: str | os.PathLike | None = None, *, endpoint: str | None = None,
                 cache_dir: str | os.PathLike | None = None, offline: bool | None = None) -> None:
        self.project_file = Path(project_file) if project_file else PROJECT_REGISTRY
        self.user_file = Path(user_file) if user_file else user_config_dir() / "registry.yaml"
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        self.offline = offline

    # ---- reading --------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        """All entries, merged. Raises RegistryError on a name listed in both files."""
        project, user = _read(self.project_file), _read(self.user_file)
        both = sorted(set(project) & set(user))
        if both:
            raise RegistryError(f"expert name(s) {both} are registered both in {self.project_file} "
                                f"and in {self.user_file}; remove one (`rsrouter experts remove`)")
        return {**project, **user}

    def get(self, name: str) -> Entry:
        """The entry for ``name``. Raises UnknownExpertError listing the known names."""
        entries = self.entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "(none)"
            raise UnknownExpertError(f"unknown expert {name!r}; registered: {known}. Register "
                                     "one with `rsrouter experts register SOURCE --name NAME`")
        return entries[name]

    def is_cached(self, entry: Entry) -> bool:
        if not entry.is_hub:
            return (entry.folder() / WEIGHTS_FILE).is_file()
        return hub.is_cached(hub.parse_hf_uri(entry.source).repo_id, entry.revision,
                             cache_dir=self.cache_dir)

    # ---- writing --------------------------------------------------------------------------

    def register(self, source: str, name: str, *, project: bool = False) -> Entry:
        """Verify ``source`` (folder or ``hf://org/name[@rev]``) and record it under ``name``.

        A Hub branch or tag is resolved to its commit sha; the files are downloaded and the
        weights' sha256 must equal the card's ``weights_sha256`` (else the revision is refused).

        Raises:
            RegistryError: the name exists; CardError / IntegrityError / HubError from checks.
        """
        if not name or any(c in name for c in " /@:"):
            raise RegistryError(f"expert name {name!r} must be non-empty without ' /@:'")
        if name in self.entries():
            raise RegistryError(f"expert {name!r} is already registered "
                                f"({self.entries()[name].registry}); remove it first")
        target = self.project_file if project else self.user_file
        if source.startswith(hub.HF_PREFIX):
            ref = hub.parse_hf_uri(source)
            sha = hub.resolve_revision(ref.repo_id, ref.revision or "main", endpoint=self.endpoint,
                                       offline=self.offline)
            folder = self._download(ref.repo_id, sha)
            card = self._verified_card(folder, ref.repo_id, sha, expected=None)
            stored_source, revision = f"{hub.HF_PREFIX}{ref.repo_id}", sha
        else:
            folder = Path(source).resolve()
            card = verify_folder(folder)
            stored_source, revision = _relative_to(folder, target.parent), None
        if not card.weights_sha256:
            raise IntegrityError(f"{source}: config.json has no rs_expert.weights_sha256; an "
                                 "expert must pin its weights (rsrouter's cards always do)")
        entry = Entry(name=name, source=stored_source, revision=revision,
                      weights_sha256=card.weights_sha256, dataset=card.dataset,
                      architecture=card.architecture, sigma=card.sigma,
                      num_classes=card.num_classes, registry=str(target))
        entries = _read(target)
        entries[name] = entry
        _write(target, entries)
        return entry

    def remove(self, name: str) -> Entry:
        """Remove ``name`` from the file that lists it; returns the removed entry."""
        entry = self.get(name)
        path = Path(entry.registry)
        entries = _read(path)
        entries.pop(name)
        _write(path, entries)
        return entry

    # ---- fetching and loading -------------------------------------------------------------

    def pull(self, name_or_uri: str) -> Path:
        """Download (or find in the cache) and verify; returns the local folder."""
        if name_or_uri.startswith(hub.HF_PREFIX):
            ref = hub.parse_hf_uri(name_or_uri)
            sha = hub.resolve_revision(ref.repo_id, ref.revision or "main", endpoint=self.endpoint,
                                       offline=self.offline)
            folder = self._download(ref.repo_id, sha)
            self._verified_card(folder, ref.repo_id, sha, expected=None)
            return folder
        entry = self.get(name_or_uri)
        return self.local_folder(entry)

    def local_folder(self, entry: Entry) -> Path:
        """The verified local folder of ``entry`` (downloads a Hub entry at its pinned sha)."""
        if entry.is_hub:
            repo_id = hub.parse_hf_uri(entry.source).repo_id
            folder = self._download(repo_id, entry.revision)
            self._verified_card(folder, repo_id, entry.revision, expected=entry.weights_sha256)
            return folder
        folder = entry.folder()
        verify_folder(folder, expected_sha256=entry.weights_sha256)
        return folder

    def verify(self, name: str) -> ExpertCard:
        """Check card schema, sha256 (card and registration) and strict loading of ``name``."""
        return read_card(self.local_folder(self.get(name)))

    def load(self, name_or_path: str, *, device: str | torch.device = "cpu",
             compile: bool = False, precision: str = "fp32") -> Expert:
        """A ready smoothed expert from a registered name, a folder or an ``hf://`` URI."""
        kw = dict(device=device, compile=compile, precision=precision)
        if name_or_path.startswith(hub.HF_PREFIX):
            expert = load_expert_folder(self.pull(name_or_path), **kw)
            expert.source = name_or_path
            return expert
        if Path(name_or_path).is_dir():
            return load_expert_folder(name_or_path, **kw)
        if name_or_path not in self.entries():
            known = ", ".join(sorted(self.entries())) or "(none)"
            raise UnknownExpertError(
                f"{name_or_path!r} is neither an expert folder nor a registered expert name "
                f"(registered: {known}) nor an hf://org/name URI")
        entry = self.get(name_or_path)
        expert = load_expert_folder(self.local_folder(entry), expected_sha256=entry.weights_sha256,
                                    **kw)
        expert.card.name = entry.name
        expert.source = entry.uri
        return expert

    def _download(self, repo_id: str, sha: str) -> Path:
        return hub.download_files(repo_id, sha, endpoint=self.endpoint, cache_dir=self.cache_dir,
                                  offline=self.offline)

    def _verified_card(self, folder: Path, repo_id: str, sha: str,
                       expected: str | None) -> ExpertCard:
        """Check a downloaded folder; on a hash mismatch discard the cached weights and raise."""
        try:
            return verify_folder(folder, expected_sha256=expected)
        except IntegrityError as e:
            actual = sha256_file(folder / WEIGHTS_FILE) if (folder / WEIGHTS_FILE).exists() else ""
            hub.discard_cached(repo_id, sha, WEIGHTS_FILE, cache_dir=self.cache_dir)
            raise IntegrityError(f"hf://{repo_id}@{sha}: {e} (sha256 of the served "
                                 f"{WEIGHTS_FILE}: {actual}); the cached copy was deleted") from e


def _relative_to(folder: Path, base: Path) -> str:
    try:
        return str(folder.relative_to(base.resolve()))
    except ValueError:
        return str(folder)


def load_expert(name_or_path: str, *, device: str | torch.device = "cpu", compile: bool = False,
                precision: str = "fp32", registry: Registry | None = None) -> Expert:
    """A ready smoothed expert: model in eval mode with its normalization, sigma and card.

    ``name_or_path``: a registered name, an expert folder, or ``hf://org/name[@revision]``.
    """
    return (registry or Registry()).load(name_or_path, device=device, compile=compile,
                                         precision=precision)
