"""The expert registry: names -> pinned, verifiable experts (local folders or Hub revisions).

Two registry files are merged: the project's ``experts/registry.yaml`` (the bundled zoo; sources
relative to it) and the user's ``registry.yaml`` in ``$RSROUTER_CONFIG_DIR`` (default
``$XDG_CONFIG_HOME/rsrouter`` or ``~/.config/rsrouter``). A name in both is an error. Each entry
records where the expert lives, the commit sha it is pinned to (Hub sources) and the sha256 of the
``config.json`` and weights that registration read; every later load must match both.

Every load takes one path: **resolve** (a registered name, ``hf://org/name[@rev]`` or a folder)
-> **fetch** (the Hub cache, for Hub sources) -> **verify** (read each file once, hash those bytes,
compare with the pin and the card's claim) -> **build** (architecture, then weights parsed from
the very bytes that were hashed). Nothing named by a card is imported without the user's opt-in:
``trust_code=True`` or the module listed under ``trusted_modules:`` in the user's registry file.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ..cards.card import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ExpertCard,
    Pin,
    check_pin,
    check_sha256,
    is_commit_sha,
    read_artifact,
    read_card,
)
from ..errors import CardError, IntegrityError, RegistryError, UnknownExpertError
from ..files import atomic_write_text
from ..paths import PROJECT_REGISTRY, user_config_dir, user_registry
from ..sources.git import GIT_PREFIX
from ..urls import public_url

if TYPE_CHECKING:
    import torch

    from ..models import Trust
    from .expert import Expert

__all__ = ["Entry", "Registry", "Resolved", "load_expert", "user_config_dir", "PROJECT_REGISTRY"]

HF_PREFIX = "hf://"
_SIGMA_SUFFIX = re.compile(r"#sigma=([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)$")


def split_sigma(ref: str) -> tuple[str, float | None]:
    """``(reference, sigma)`` of ``REF#sigma=S`` (sigma None without the suffix): how one expert
    of weights that serve several sigmas is named (``fm-dualrs#sigma=0.5``)."""
    match = _SIGMA_SUFFIX.search(ref)
    if match is None:
        if "#sigma" in ref:
            raise UnknownExpertError(f"{ref!r}: write the sigma as REF#sigma=0.5 (a number in "
                                     "pixel units)")
        return ref, None
    return ref[:match.start()], float(match.group(1))


def sigma_ref(ref: str, sigma: float) -> str:
    """``ref`` naming its expert at ``sigma`` (exact: the shortest repr of the float)."""
    return f"{split_sigma(ref)[0]}#sigma={float(sigma)!r}"


def sigma_label(sigma: float) -> str:
    """``0.25`` -> ``"0.25"``, ``1.0`` -> ``"1.00"`` (as the zoo's names), other values exact."""
    return f"{sigma:.2f}" if round(sigma, 2) == sigma else repr(float(sigma))


def is_remote_source(ref: str) -> bool:
    """Whether ``ref`` names a Hub repo (``hf://``) or a git remote (``git+``)."""
    return ref.startswith((HF_PREFIX, GIT_PREFIX))


def split_remote(ref: str) -> tuple[str, str | None]:
    """``(source, revision)`` of ``hf://org/name[@rev]`` or ``git+URL[@rev]``; ValueError if bad."""
    if ref.startswith(HF_PREFIX):
        from ..sources import hub

        parsed = hub.parse_hf_uri(ref)
        return f"{HF_PREFIX}{parsed.repo_id}", parsed.revision
    from ..sources import git as gitremote

    parsed = gitremote.parse_git_uri(ref)
    return f"{GIT_PREFIX}{parsed.url}", parsed.revision


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

    def to_yaml(self) -> dict:
        d = asdict(self)
        d.pop("name")
        d.pop("registry")
        for key in ("sigmas", "kind"):  # written only when set: older files stay as they were
            if d[key] is None:
                d.pop(key)
        return d


@dataclass(frozen=True)
class Resolved:
    """Where a reference points: a local folder, or a remote (Hub repo or git remote) at a
    commit sha; and its pin."""

    name: str  # the registered name ("" otherwise: the card's name is used)
    uri: str  # pinned: the folder, or "<source>@<commit sha>"
    pin: Pin | None = None
    folder: Path | None = None
    source: str | None = None  # hf://org/name or git+URL (remotes only)
    revision: str | None = None  # the commit sha (remotes only)

    @property
    def is_remote(self) -> bool:
        return self.source is not None


_KNOWN = {f.name for f in fields(Entry)} - {"name", "registry"}


def _read(path: Path, *, user: bool = False) -> tuple[dict[str, Entry], list[str]]:
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


def _write(path: Path, entries: dict[str, Entry], trusted: list[str]) -> None:
    doc: dict = {"experts": {name: e.to_yaml() for name, e in sorted(entries.items())}}
    if trusted:
        doc["trusted_modules"] = trusted
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
        trust_code: allow cards whose architecture is ``module:factory`` (imports and runs that
            module). Without it only the modules under ``trusted_modules:`` in the user file are.
    """

    def __init__(self, project_file: str | os.PathLike | None = None,
                 user_file: str | os.PathLike | None = None, *, endpoint: str | None = None,
                 cache_dir: str | os.PathLike | None = None, offline: bool | None = None,
                 trust_code: bool = False) -> None:
        self.project_file = Path(project_file) if project_file else PROJECT_REGISTRY
        self.user_file = Path(user_file) if user_file else user_registry()
        self.endpoint = endpoint
        self.cache_dir = cache_dir
        self.offline = offline
        self.trust_code = trust_code
        self._bases: dict[tuple, object] = {}  # built weights, by the sha256 of their bytes

    # ---- reading --------------------------------------------------------------------------

    def entries(self) -> dict[str, Entry]:
        """All entries, merged. Raises RegistryError on a name listed in both files."""
        project, _ = _read(self.project_file)
        user, _ = _read(self.user_file, user=True)
        both = sorted(set(project) & set(user))
        if both:
            raise RegistryError(f"expert name(s) {both} are registered both in {self.project_file} "
                                f"and in {self.user_file}; remove one (`rsrouter experts remove`)")
        return {**project, **user}

    @property
    def trust(self) -> Trust:
        """What code cards may name: True (``trust_code``) or the user's trusted modules."""
        return self.trust_for(False)

    def trust_for(self, trust_code: bool) -> Trust:
        """The trust of one call: True if it or the registry opts in, else the trusted modules."""
        if trust_code or self.trust_code:
            return True
        return frozenset(_read(self.user_file, user=True)[1])

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
        if not entry.is_remote:
            folder = entry.folder()
            return folder if (folder / WEIGHTS_FILE).is_file() else None
        if entry.source.startswith(HF_PREFIX):
            from ..sources import hub

            repo_id = entry.source[len(HF_PREFIX):]
            if not hub.is_cached(repo_id, entry.revision, cache_dir=self.cache_dir):
                return None
            return hub.snapshot_folder(repo_id, entry.revision, cache_dir=self.cache_dir)
        from ..sources import git as gitremote

        url = entry.source[len(GIT_PREFIX):]
        if not gitremote.is_cached(url, entry.revision):
            return None
        return gitremote.cached_folder(url, entry.revision)

    def is_cached(self, entry: Entry) -> bool:
        return self.cached_folder(entry) is not None

    # ---- the load path: resolve -> fetch -> verify -> build ------------------------------

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
            try:
                source, revision = split_remote(ref)
            except ValueError as e:
                raise UnknownExpertError(str(e)) from None
            sha = self._resolve_revision(source, revision)
            return Resolved("", f"{source}@{sha}", source=source, revision=sha)
        entries = self.entries()
        if ref in entries:
            entry = entries[ref]
            if entry.is_remote:
                return Resolved(entry.name, entry.uri, entry.pin, source=entry.source,
                                revision=entry.revision)
            return Resolved(entry.name, str(entry.folder()), entry.pin, folder=entry.folder())
        path = Path(ref).expanduser()
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        if path.is_dir():
            if not (path / CONFIG_FILE).is_file() and _is_git_repository(path):
                raise UnknownExpertError(
                    f"{ref} is a git repository, not an expert folder; register the commit you "
                    f"mean: rsrouter experts register git+{path.resolve().as_uri()}@<sha> "
                    "--name NAME")
            return Resolved("", str(path), folder=path)
        known = ", ".join(sorted(entries)) or "(none)"
        raise UnknownExpertError(
            f"{ref!r} is neither a registered expert name (registered: {known}) nor an expert "
            f"folder{f' (looked in {path})' if base is not None else ''} nor an hf://org/name or "
            "git+URL source")

    def _resolve_revision(self, source: str, revision: str | None) -> str:
        if source.startswith(HF_PREFIX):
            from ..sources import hub

            return hub.resolve_revision(source[len(HF_PREFIX):], revision or "main",
                                        endpoint=self.endpoint, offline=self.offline)
        from ..sources import git as gitremote

        return gitremote.resolve_revision(source[len(GIT_PREFIX):], revision,
                                          offline=self.offline)

    def fetch(self, resolved: Resolved) -> Path:
        """The local folder of ``resolved``: a remote commit is downloaded into a cache (the Hub
        cache, or rsrouter's for git remotes; no request when cached). Raises HubError."""
        if not resolved.is_remote:
            return resolved.folder
        if resolved.source.startswith(HF_PREFIX):
            from ..sources import hub

            return hub.download_files(resolved.source[len(HF_PREFIX):], resolved.revision,
                                      endpoint=self.endpoint, cache_dir=self.cache_dir,
                                      offline=self.offline)
        from ..sources import git as gitremote

        return gitremote.fetch_files(resolved.source[len(GIT_PREFIX):], resolved.revision,
                                     offline=self.offline)

    @contextmanager
    def _discarding(self, resolved: Resolved):
        """On an IntegrityError, delete a remote's cached copy and say so."""
        try:
            yield
        except IntegrityError as e:
            if not resolved.is_remote:
                raise
            self._discard(resolved)
            raise IntegrityError(f"{resolved.uri}: {e}; the cached copy was deleted") from e

    def _discard(self, resolved: Resolved) -> None:
        """Delete the cached copy of a remote commit whose bytes failed verification."""
        if resolved.source.startswith(HF_PREFIX):
            from ..sources import hub

            for filename in (WEIGHTS_FILE, CONFIG_FILE):
                hub.discard_cached(resolved.source[len(HF_PREFIX):], resolved.revision, filename,
                                   cache_dir=self.cache_dir)
            return
        from ..sources import git as gitremote

        gitremote.discard_cached(resolved.source[len(GIT_PREFIX):], resolved.revision)

    def load(self, ref: str, *, pin: Pin | None = None, base: str | os.PathLike | None = None,
             trust_code: bool = False, device: str | torch.device = "cpu",
             compile: bool = False, precision: str = "fp32", sigma: float | None = None) -> Expert:
        """A ready smoothed expert from a registered name, an ``hf://``/``git+`` source or a
        folder.

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

    def _load(self, resolved: Resolved, pin: Pin | None = None, *, trust_code: bool = False,
              sigma: float | None = None, device: str | torch.device = "cpu", **kw) -> Expert:
        """fetch -> verify (the registration's pin and the card's claim, then ``pin``) -> build
        (weights built once per registry: every sigma they serve shares them)."""
        from .expert import build_base, build_expert, expert_card

        folder = self.fetch(resolved)
        with self._discarding(resolved):  # bytes that fail the registration: never reuse them
            files = read_artifact(folder, *([resolved.pin] if resolved.pin else []))
        if pin is not None:  # a router's record: a mismatch says nothing about the cache
            check_pin(files, pin)
        with self._discarding(resolved):  # bytes that fail their own card
            card = expert_card(files)
        where = str(files.folder / CONFIG_FILE)
        card = card.at_sigma(sigma, where)
        trust = self.trust_for(trust_code)
        key = (files.weights_sha256, files.config_sha256, str(device), repr(trust))
        if key not in self._bases:  # the hashed bytes are the key: the same bytes, one build
            beside = resolved.is_remote and card.kind == "denoised" and self._fetch_denoiser(
                resolved, card)
            # a denoiser that fails its pins is never reused: one fetched beside the card goes
            # with the card's cached copy; a Hub denoiser's own block deletes its files
            with self._discarding(resolved) if beside else nullcontext():
                self._bases[key] = build_base(files, card, trust_code=trust, device=device,
                                              endpoint=self.endpoint, cache_dir=self.cache_dir,
                                              offline=self.offline)
        name = resolved.name
        if name and card.shared:  # a registered name: one expert per sigma of its weights
            name = f"{name}-sigma{sigma_label(card.sigma)}"
        return build_expert(files, card=card, uri=resolved.uri, name=name,
                            base=self._bases[key], device=device, **kw)

    def _fetch_denoiser(self, resolved: Resolved, card: ExpertCard) -> bool:
        """The denoiser files of a remote denoised card whose denoiser lives in the same
        repository (a folder source): fetched beside the card, at the card's commit. Returns
        whether they were (False: a Hub denoiser, fetched and pinned by its own block)."""
        from .denoised import DENOISER_FILES, check_denoiser_block

        check_denoiser_block(card.denoiser, f"{resolved.uri}: {CONFIG_FILE}")
        source = card.denoiser["source"]
        if source.startswith(HF_PREFIX):
            return False
        rel = Path(source)
        if rel.is_absolute() or ".." in rel.parts:
            raise CardError(f"{resolved.uri}: rs_expert.denoiser.source {source!r} must be a "
                            "folder inside the expert's repository (or hf://org/name)")
        names = [f"{rel.as_posix()}/{f}" for f in DENOISER_FILES]
        if resolved.source.startswith(HF_PREFIX):
            from ..sources import hub

            hub.download_files(resolved.source[len(HF_PREFIX):], resolved.revision, names,
                               endpoint=self.endpoint, cache_dir=self.cache_dir,
                               offline=self.offline)
        else:
            from ..sources import git as gitremote

            gitremote.fetch_files(resolved.source[len(GIT_PREFIX):], resolved.revision, names,
                                  offline=self.offline)
        return True

    # ---- writing --------------------------------------------------------------------------

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
        own, trusted = _read(target, user=not project)
        own[name] = entry
        _write(target, own, trusted)
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
        own, trusted = _read(path, user=path == self.user_file)
        own.pop(name)
        _write(path, own, trusted)
        return entry

    # ---- convenience ----------------------------------------------------------------------

    def pull(self, ref: str) -> Path:
        """Download (or find in the cache) and verify (hashes, strict load); returns the folder."""
        resolved = self.resolve(split_sigma(ref)[0])
        self._load_every_sigma(resolved)
        return self.fetch(resolved)

    def _load_every_sigma(self, resolved: Resolved) -> Expert:
        """Verify and build ``resolved`` at every sigma its card serves; returns the first."""
        from .expert import expert_card

        folder = self.fetch(resolved)
        with self._discarding(resolved):
            files = read_artifact(folder, *([resolved.pin] if resolved.pin else []))
            sigmas = expert_card(files).served_sigmas
        return [self._load(resolved, sigma=s) for s in sigmas][0]

    def verify(self, name: str) -> ExpertCard:
        """Check card schema, sha256 (card and registration) and strict loading of ``name`` (at
        every sigma it serves)."""
        return self._load_every_sigma(self.resolve(split_sigma(name)[0])).card

    def show(self, entry: Entry) -> ExpertCard | None:
        """The card of ``entry`` if cached (read for display: no hash check), else None."""
        folder = self.cached_folder(entry)
        return read_card(folder) if folder is not None else None


def _pins(entry: Entry) -> tuple[str, str]:
    return entry.weights_sha256, entry.config_sha256


def _is_git_repository(path: Path) -> bool:
    return (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())


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


def user_trusted_modules(user_file: str | os.PathLike | None = None) -> frozenset[str]:
    """The modules listed under ``trusted_modules:`` in the user's registry file."""
    return frozenset(_read(Path(user_file) if user_file else user_registry(), user=True)[1])
