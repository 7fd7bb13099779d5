"""Registrations: the project's and the user's registry files, and the entries they list.

Two registry files are merged by :class:`~rsrouter.registry.core.Registry`: the project's
``experts/registry.yaml`` (the bundled zoo; sources relative to it) and the user's
``registry.yaml`` in ``$RSROUTER_CONFIG_DIR`` (default ``$XDG_CONFIG_HOME/rsrouter`` or
``~/.config/rsrouter``). Each entry records where the expert lives, the commit sha it is pinned
to (remote sources) and the sha256 of the ``config.json`` and weights that registration read;
every later load must match both. The user's file may also list ``trusted_modules:``.
:class:`Catalog` reads them (and what is cached) without loading anything: no torch, no Hub.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from ..cards.expert import ExpertCard, read_card
from ..cards.pins import Pin, check_sha256, is_commit_sha
from ..cards.refs import is_remote_source
from ..errors import IntegrityError, RegistryError, UnknownExpertError
from ..files import atomic_write_text
from ..paths import PROJECT_REGISTRY, user_registry
from ..sources.base import Resolved, Source
from ..sources.schemes import Sources


@dataclass
class Entry:
    """One registered expert. ``source`` is a folder or ``hf://org/name``; ``revision`` the sha."""

    name: str
    source: str
    revision: str | None
    weights_sha256: str
    config_sha256: str
    dataset: str
    architecture: str
    sigma: float | None
    num_classes: int
    sigmas: list[float] | None = None  # weights that serve several sigmas (then sigma is None)
    kind: str | None = None  # "denoised" for a denoiser + classifier (None: gaussian)
    registry: str = ""  # the file that lists it (not saved)

    @property
    def is_remote(self) -> bool:
        return is_remote_source(self.source)

    @property
    def uri(self) -> str:
        return f"{self.source}@{self.revision}" if self.is_remote else self.source

    @property
    def pin(self) -> Pin:
        return Pin(self.weights_sha256, self.config_sha256,
                   f"the registration of {self.name!r} in {self.registry}")

    def folder(self) -> Path:
        """The local folder of a folder source (relative paths are relative to the registry)."""
        path = Path(self.source)
        return path if path.is_absolute() else Path(self.registry).parent / path

    def resolved(self) -> Resolved:
        """Where this entry points, pinned by its registration."""
        if self.is_remote:
            return Resolved(self.name, self.uri, self.pin, source=self.source,
                            revision=self.revision)
        return Resolved(self.name, str(self.folder()), self.pin, folder=self.folder())

    def to_yaml(self) -> dict:
        d = asdict(self)
        d.pop("name")
        d.pop("registry")
        for key in ("sigmas", "kind"):  # written only when set: older files stay as they were
            if d[key] is None:
                d.pop(key)
        return d


_KNOWN = {f.name for f in fields(Entry)} - {"name", "registry"}


def read_registry_file(path: Path, *, user: bool = False) -> tuple[dict[str, Entry], list[str]]:
    """The entries and the trusted modules of one registry file (both empty if it is absent)."""
    if not path.is_file():
        return {}, []
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise RegistryError(f"{path} is not valid YAML: {e}") from e
    if not isinstance(doc, dict) or set(doc) - {"experts", "trusted_modules"}:
        raise RegistryError(f"{path}: the top level holds 'experts:' and, in the user's file, "
                            "'trusted_modules:'")
    trusted = doc.get("trusted_modules") or []
    if trusted and not user:
        raise RegistryError(f"{path}: trusted_modules belongs in the user's registry file "
                            f"({user_registry()}), not in a project file")
    if not isinstance(trusted, list) or not all(isinstance(m, str) and m for m in trusted):
        raise RegistryError(f"{path}: trusted_modules must be a list of module names")
    experts = doc.get("experts") or {}
    if not isinstance(experts, dict):
        raise RegistryError(f"{path}: 'experts' must map names to entries")
    out = {}
    for name, raw in experts.items():
        if not isinstance(raw, dict):
            raise RegistryError(f"{path}: entry {name!r} must be a mapping")
        unknown = set(raw) - _KNOWN
        if unknown:
            raise RegistryError(f"{path}: entry {name!r} has unknown keys {sorted(unknown)}")
        missing = sorted(k for k in ("source", "weights_sha256", "config_sha256")
                         if not raw.get(k))
        if missing:
            again = raw.get("source", "SOURCE") + (f"@{raw['revision']}" if raw.get("revision")
                                                   else "")
            raise RegistryError(
                f"{path}: entry {name!r} has no {', '.join(missing)} (registered by an older "
                "rsrouter, or edited by hand); every byte an expert loads must be pinned. "
                f"Re-register it: rsrouter experts remove {name} && rsrouter experts register "
                f"{again} --name {name}")
        entry = Entry(name=name, registry=str(path), **{k: raw.get(k) for k in _KNOWN})
        try:
            check_sha256(entry.weights_sha256, "weights_sha256")
            check_sha256(entry.config_sha256, "config_sha256")
        except IntegrityError as e:
            raise RegistryError(f"{path}: entry {name!r}: {e}") from None
        if entry.is_remote:
            if not is_commit_sha(entry.revision):
                raise RegistryError(f"{path}: entry {name!r} must pin a full commit sha as "
                                    f"revision, got {entry.revision!r}")
        out[name] = entry
    return out, list(trusted)


def write_registry_file(path: Path, entries: dict[str, Entry], trusted: list[str]) -> None:
    """Write ``entries`` and ``trusted`` modules to the registry file ``path``."""
    doc: dict = {"experts": {name: e.to_yaml() for name, e in sorted(entries.items())}}
    if trusted:
        doc["trusted_modules"] = trusted
    header = "# rsrouter expert registry (written by `rsrouter experts register/remove`)\n"
    atomic_write_text(path, header + yaml.safe_dump(doc, sort_keys=False))


class Catalog:
    """The experts registered in the project's and the user's files, as listed: reading them,
    and the cards already cached, loads nothing (:class:`~rsrouter.registry.core.Registry`
    loads).

    Args: as :class:`~rsrouter.registry.core.Registry` (without ``trust_code``).
    """

    def __init__(self, project_file: str | os.PathLike | None = None,
                 user_file: str | os.PathLike | None = None, *, endpoint: str | None = None,
                 cache_dir: str | os.PathLike | None = None, offline: bool | None = None) -> None:
        self.project_file = Path(project_file) if project_file else PROJECT_REGISTRY
        self.user_file = Path(user_file) if user_file else user_registry()
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        self.offline = offline

    @property
    def sources(self) -> Sources:
        """Where these experts are fetched from (the endpoint, cache and offline mode)."""
        return Sources(self.endpoint, self.cache_dir, self.offline)

    def entries(self) -> dict[str, Entry]:
        """All entries, merged. Raises RegistryError on a name listed in both files."""
        project, _ = read_registry_file(self.project_file)
        user, _ = read_registry_file(self.user_file, user=True)
        both = sorted(set(project) & set(user))
        if both:
            raise RegistryError(f"expert name(s) {both} are registered both in {self.project_file} "
                                f"and in {self.user_file}; remove one (`rsrouter experts remove`)")
        return {**project, **user}

    def trusted_modules(self) -> frozenset[str]:
        """The modules listed under ``trusted_modules:`` in the user's file."""
        return frozenset(read_registry_file(self.user_file, user=True)[1])

    def get(self, name: str) -> Entry:
        """The entry for ``name``. Raises UnknownExpertError listing the known names."""
        entries = self.entries()
        if name not in entries:
            known = ", ".join(sorted(entries)) or "(none)"
            raise UnknownExpertError(f"unknown expert {name!r}; registered: {known}. Register "
                                     "one with `rsrouter experts register SOURCE --name NAME`")
        return entries[name]

    def cached_folder(self, entry: Entry) -> Path | None:
        """The local folder of ``entry`` if its files are on disk (no request, no check)."""
        resolved = entry.resolved()
        return self._source(resolved).cached_folder(resolved)

    def is_cached(self, entry: Entry) -> bool:
        return self.cached_folder(entry) is not None

    def show(self, entry: Entry) -> ExpertCard | None:
        """The card of ``entry`` if cached (read for display: no hash check), else None."""
        folder = self.cached_folder(entry)
        return read_card(folder) if folder is not None else None

    def _source(self, resolved: Resolved) -> Source:
        return self.sources.for_ref(resolved.source or "")


def user_trusted_modules(user_file: str | os.PathLike | None = None) -> frozenset[str]:
    """The modules listed under ``trusted_modules:`` in the user's registry file."""
    path = Path(user_file) if user_file else user_registry()
    return frozenset(read_registry_file(path, user=True)[1])
