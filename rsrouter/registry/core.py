"""The expert registry: names -> pinned, verifiable experts (local folders or remote commits).

Registered names come from two files (:mod:`.entries`): the project's ``experts/registry.yaml``
and the user's ``registry.yaml``. Every load takes one path, one step after the other:

1. **resolve** (:meth:`Registry.resolve`): a registered name (its entry), a reference of a
   source's scheme (``hf://``, ``git+``: a branch or tag becomes a commit sha) or a folder;
2. **fetch** (:meth:`Registry.fetch`): the source's files into its cache (no request when
   cached; a folder is its own);
3. **check** (:meth:`Registry.check`): read each file once, hash those bytes, compare with the
   registration's pin, a router's record and the card's claim; parse the card;
4. **build** (:meth:`Registry.build`): architecture, then weights parsed from the very bytes that
   were hashed, made the base of the card's kind (:mod:`.kinds`) once for every sigma.

Nothing named by a card is imported without the user's opt-in: ``trust_code=True`` or the module
listed under ``trusted_modules:`` in the user's registry file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cards.expert import ExpertCard, expert_card
from ..cards.pins import (
    ARTIFACT_FILES,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ArtifactFiles,
    Pin,
    check_pin,
    read_artifact,
)
from ..cards.refs import is_remote_source, sigma_label, split_sigma
from ..errors import IntegrityError, RegistryError, UnknownExpertError
from ..models import Trust
from ..paths import PROJECT_REGISTRY, ZOO_INSTALLED
from ..sources.base import Resolved
from ..sources.folder import FolderSource, folder_path
from ..urls import public_url
from .entries import Catalog, Entry, read_registry_file, write_registry_file
from .expert import Expert, build_base, build_expert


@dataclass(frozen=True)
class Verified:
    """An expert's files after the check step: read once, hashed and pinned, its card parsed
    (every sigma it serves; :meth:`Registry.build` chooses one)."""

    resolved: Resolved
    files: ArtifactFiles
    card: ExpertCard


class Registry(Catalog):
    """Registered experts from the project file and the user file (merged; conflicts raise),
    and the one load path of every expert.

    Args:
        project_file: the project registry (default: ``experts/registry.yaml`` of this checkout).
        user_file: the user registry (default: ``user_config_dir() / "registry.yaml"``).
        endpoint: Hub endpoint for hf:// sources (default ``HF_ENDPOINT`` or huggingface.co).
        cache_dir: Hub cache folder (default the standard HF cache).
        offline: force offline mode (default: ``HF_HUB_OFFLINE``).
        trust_code: allow cards whose architecture is ``module:factory`` (imports and runs that
            module). Without it only the modules under ``trusted_modules:`` in the user file are.
    """

    def __init__(self, project_file: str | os.PathLike | None = None,
                 user_file: str | os.PathLike | None = None, *, endpoint: str | None = None,
                 cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                 trust_code: bool = False) -> None:
        super().__init__(project_file, user_file, endpoint=endpoint, cache_dir=cache_dir,
                         offline=offline)
        self.trust_code = trust_code
        self._bases: dict[tuple, object] = {}  # built weights, by the sha256 of their bytes

    @property
    def trust(self) -> Trust:
        """What code cards may name: True (``trust_code``) or the user's trusted modules."""
        return self.trust_for(False)

    def trust_for(self, trust_code: bool) -> Trust:
        """The trust of one call: True if it or the registry opts in, else the trusted modules."""
        if trust_code or self.trust_code:
            return True
        return self.trusted_modules()

    # ---- the load path: resolve -> fetch -> check -> build -------------------------------

    def resolve(self, ref: str, *, base: str | os.PathLike | None = None) -> Resolved:
        """Where ``ref`` points, pinned.

        ``ref`` is ``hf://org/name[@rev]`` or ``git+URL[@rev]`` (a branch or tag is resolved to
        its commit sha), a registered name (registered names win over a folder of the same name:
        write ``./name`` for the folder), or a folder (relative to ``base`` when given).

        Raises:
            UnknownExpertError: none of these.
            HubError: the revision cannot be resolved.
        """
        if is_remote_source(ref):
            return self.sources.for_ref(ref).resolve(ref)
        entries = self.entries()
        if ref in entries:
            return entries[ref].resolved()
        path = folder_path(ref, base)
        if path.is_dir():
            return FolderSource().resolve(str(path))
        known = ", ".join(sorted(entries)) or "(none)"
        raise UnknownExpertError(
            f"{ref!r} is neither a registered expert name (registered: {known}) nor an expert "
            f"folder{f' (looked in {path})' if base is not None else ''} nor an hf://org/name or "
            "git+URL source")

    def fetch(self, resolved: Resolved, filenames: Sequence[str] = ARTIFACT_FILES) -> Path:
        """The local folder of ``resolved``: a remote commit is downloaded into a cache (the Hub
        cache, or rsrouter's for git remotes; no request when cached). Raises HubError."""
        return self._source(resolved).fetch(resolved, filenames)

    def check(self, resolved: Resolved, folder: Path, *, pin: Pin | None = None) -> Verified:
        """Read the expert in the fetched ``folder`` once: its hashes must match the
        registration's pin and ``pin`` (a router's record), its card the schema and its own
        weights hash.

        Raises:
            CardError, IntegrityError (bytes that fail the registration or their own card: a
            remote's cached copy is deleted).
        """
        with self._discarding(resolved):  # bytes that fail the registration: never reuse them
            files = read_artifact(folder, *([resolved.pin] if resolved.pin else []))
        if pin is not None:  # a router's record: a mismatch says nothing about the cache
            check_pin(files, pin)
        with self._discarding(resolved):  # bytes that fail their own card
            card = expert_card(files)
        return Verified(resolved, files, card)

    def build(self, verified: Verified, *, sigma: float | None = None, trust_code: bool = False,
              device: str | torch.device = "cpu", **kw) -> Expert:
        """The expert at ``sigma`` (None: the card's only one) of checked files; their weights
        are built once per registry, device and trust, however many of their sigmas are loaded
        (``kw``: compile, precision).

        Raises:
            SigmaNotServedError (before anything is built), CardError, UntrustedCodeError,
            IntegrityError (a denoiser's files, see
            :func:`~rsrouter.registry.denoised.load_denoiser`).
        """
        files, resolved = verified.files, verified.resolved
        card = verified.card.at_sigma(sigma, str(files.folder / CONFIG_FILE))
        trust = self.trust_for(trust_code)
        key = (files.weights_sha256, files.config_sha256, str(device), repr(trust))
        if key not in self._bases:  # the hashed bytes are the key: the same bytes, one build
            self._bases[key] = build_base(files, card, trust_code=trust, device=device,
                                          endpoint=self.endpoint, cache_dir=self.cache_dir,
                                          offline=self.offline,
                                          origin=resolved if resolved.is_remote else None)
        name = resolved.name
        if name and card.shared:  # a registered name: one expert per sigma of its weights
            name = f"{name}-sigma{sigma_label(card.sigma)}"
        return build_expert(files, card=card, uri=resolved.uri, name=name,
                            base=self._bases[key], device=device, **kw)

    def load(self, ref: str, *, pin: Pin | None = None, base: str | os.PathLike | None = None,
             trust_code: bool = False, device: str | torch.device = "cpu",
             compile: bool = False, precision: str = "fp32", sigma: float | None = None) -> Expert:
        """A ready smoothed expert from a registered name, an ``hf://``/``git+`` source or a
        folder: resolve -> fetch -> check -> build.

        Weights that serve several sigmas (a classifier trained across sigmas, a denoiser +
        classifier) are one expert per sigma: name it ``REF#sigma=0.5`` or pass ``sigma``. The
        weights are built once per registry and device, however many of their experts are
        loaded. ``pin`` (a router's record) is checked in addition to the registration's pin.
        ``trust_code=True`` allows, for this call, a card whose architecture is ``module:factory``.

        Raises:
            UnknownExpertError, HubError, CardError, UntrustedCodeError, IntegrityError (a
            hash that differs or is empty: nothing is loaded; a remote copy whose bytes fail the
            registration or the card is deleted from the cache).
        """
        ref, suffix = split_sigma(ref)
        if sigma is not None and suffix is not None and float(sigma) != suffix:
            raise UnknownExpertError(f"{ref}#sigma={suffix:g} names sigma {suffix:g} but sigma="
                                     f"{sigma} was passed too; give one")
        return self._load(self.resolve(ref, base=base), pin, trust_code=trust_code,
                          device=device, compile=compile, precision=precision,
                          sigma=suffix if sigma is None else float(sigma))

    def _load(self, resolved: Resolved, pin: Pin | None = None, **kw) -> Expert:
        """fetch -> check -> build of a resolved reference (``kw``: as :meth:`build`)."""
        return self.build(self.check(resolved, self.fetch(resolved), pin=pin), **kw)

    @contextmanager
    def _discarding(self, resolved: Resolved) -> Iterator[None]:
        """On an IntegrityError, delete a remote's cached copy and say so."""
        try:
            yield
        except IntegrityError as e:
            if not resolved.is_remote:
                raise
            self._source(resolved).discard(resolved, (WEIGHTS_FILE, CONFIG_FILE))
            raise IntegrityError(f"{resolved.uri}: {e}; the cached copy was deleted") from e

    # ---- writing --------------------------------------------------------------------------

    def _check_project_writable(self) -> None:
        """Raises RegistryError when the project file is the zoo of an installed rsrouter: it
        lives inside the installed package, and a reinstall would replace it."""
        if ZOO_INSTALLED and self.project_file == PROJECT_REGISTRY:
            raise RegistryError(f"{self.project_file} is the bundled zoo of an installed rsrouter "
                                "(inside the package; a reinstall replaces it): register in your "
                                "own registry (drop --project), or work in a checkout")

    def register(self, source: str, name: str, *, project: bool = False,
                 replace: bool = False) -> Entry:
        """Verify ``source`` (a folder, ``hf://org/name[@rev]`` or ``git+URL[@rev]``) and record
        it under ``name``; returns the entry now listed.

        A branch or tag is resolved to its commit sha. The card's ``weights_sha256`` must match
        its weights; the entry records the sha256 of the config.json and weights that were read,
        which every later load must match. ``source`` is never read as a registered name: a
        folder named like one is that folder.

        A name registered again with the same pins (the sha256 of both files: the same bytes
        load) is no error, so a script that registers can run twice: the entry is kept, and
        points at ``source`` from now on when that moved (a folder rebuilt elsewhere, a commit
        pushed again). Other pins under a taken name are refused unless ``replace``; an entry of
        the other registry file (user or project) is never changed here.

        Raises:
            RegistryError: a bad name, or one taken with other pins (without ``replace``) or in
            the other file; CardError / IntegrityError / HubError / UntrustedCodeError from the
            checks.
        """
        if not name or any(c in name for c in " /@:") or name.startswith("."):
            raise RegistryError(f"expert name {name!r} must be non-empty, not start with '.', "
                                "and have no ' /@:'")
        entries = self.entries()
        if source in entries and not is_remote_source(source):
            if not Path(source).expanduser().is_dir():
                raise RegistryError(f"{source!r} is a registered name, not a folder; register a "
                                    "folder, an hf://org/name or a git+URL source")
            source = f"./{source}"  # the folder (a name has no '/')
        target = self.project_file if project else self.user_file
        if project:
            self._check_project_writable()
        if split_sigma(source)[1] is not None:
            raise RegistryError(f"register the weights ({split_sigma(source)[0]}), not one of "
                                "their sigmas: every sigma the card serves is registered with it")
        resolved = self.resolve(source)
        expert = self._load_every_sigma(resolved)
        if resolved.is_remote:  # the project's file is shared: no credentials in it
            stored_source = public_url(resolved.source) if project else resolved.source
            revision = resolved.revision
        else:
            stored_source, revision = _relative_to(resolved.folder.resolve(), target.parent), None
        card = expert.card
        entry = Entry(name=name, source=stored_source, revision=revision,
                      weights_sha256=expert.pin.weights_sha256,
                      config_sha256=expert.pin.config_sha256, dataset=card.dataset,
                      architecture=card.architecture,
                      sigma=None if card.shared else card.sigma,
                      num_classes=card.num_classes,
                      sigmas=list(card.served_sigmas) if card.shared else None,
                      kind=None if card.kind == "gaussian" else card.kind, registry=str(target))
        old = entries.get(name)
        if old is not None:
            same = _pins(entry) == _pins(old)
            if Path(old.registry) != target:
                if same:
                    return old
                raise RegistryError(f"expert {name!r} is registered in {old.registry} with other "
                                    "pins; remove it there first (rsrouter experts remove "
                                    f"{name}{'' if project else ' --project'}) or choose "
                                    "another name")
            if not same and not replace:
                raise RegistryError(
                    f"expert {name!r} is already registered ({old.registry}) with other pins: "
                    f"weights sha256 {old.weights_sha256[:12]}..., config sha256 "
                    f"{old.config_sha256[:12]}... there, {entry.weights_sha256[:12]}... and "
                    f"{entry.config_sha256[:12]}... in {source}; pass --replace (replace=True) to "
                    "replace it, or choose another name")
            if same and (old.source, old.revision) == (entry.source, entry.revision):
                return old
        own, trusted = read_registry_file(target, user=not project)
        own[name] = entry
        write_registry_file(target, own, trusted)
        return entry

    def remove(self, name: str, *, project: bool = False) -> Entry:
        """Remove ``name`` from the file that lists it; returns the removed entry.

        As with :meth:`register`, an entry of the project's file (the bundled zoo) is removed
        only with ``project=True``.

        Raises:
            UnknownExpertError: no such name. RegistryError: a project entry without ``project``.
        """
        entry = self.get(name)
        path = Path(entry.registry)
        if path == self.project_file and not project:
            raise RegistryError(f"{name!r} is listed in the project's registry {path} (the bundled "
                                "zoo), not in yours; pass --project (project=True) to remove it "
                                "from there")
        if path == self.project_file:
            self._check_project_writable()
        own, trusted = read_registry_file(path, user=path == self.user_file)
        own.pop(name)
        write_registry_file(path, own, trusted)
        return entry

    # ---- convenience ----------------------------------------------------------------------

    def pull(self, ref: str) -> Path:
        """Download (or find in the cache) and verify (hashes, strict load); returns the folder."""
        resolved = self.resolve(split_sigma(ref)[0])
        self._load_every_sigma(resolved)
        return self.fetch(resolved)

    def _load_every_sigma(self, resolved: Resolved) -> Expert:
        """Check ``resolved`` and build it at every sigma its card serves; returns the first."""
        verified = self.check(resolved, self.fetch(resolved))
        return [self.build(verified, sigma=s) for s in verified.card.served_sigmas][0]

    def verify(self, name: str) -> ExpertCard:
        """Check card schema, sha256 (card and registration) and strict loading of ``name`` (at
        every sigma it serves)."""
        return self._load_every_sigma(self.resolve(split_sigma(name)[0])).card


def _pins(entry: Entry) -> tuple[str, str]:
    return entry.weights_sha256, entry.config_sha256


def _relative_to(folder: Path, base: Path) -> str:
    try:
        return str(folder.relative_to(base.resolve()))
    except ValueError:
        return str(folder)


def load_expert(name_or_path: str, *, device: str | torch.device = "cpu", compile: bool = False,
                precision: str = "fp32", trust_code: bool = False,
                registry: Registry | None = None) -> Expert:
    """A ready smoothed expert: model in eval mode with its normalization, sigma and card.

    ``name_or_path``: a registered name, an expert folder, or ``hf://org/name[@revision]``.
    ``trust_code=True`` allows a card whose architecture is ``module:factory`` (runs that code).
    """
    return (registry or Registry()).load(name_or_path, trust_code=trust_code, device=device,
                                         compile=compile, precision=precision)
