"""Load a router folder and its experts: every step once, for all of them, in order.

1. **check** the router: its folder's files read once and hashed, its card
   (:class:`~rsrouter.cards.router.RouterCard`) and the card's claim on its weights;
2. **resolve** each expert the card records (:class:`~rsrouter.cards.router.ExpertRef`): its
   folder relative to the router, its registered name, or its pinned remote;
3. **fetch** each (remote commits into their caches);
4. **check** each against the router's record of its hashes and sigma (and its registration);
5. **build** the router, then each expert (weights built once per set of bytes).

Nothing is built until every file has passed its check.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..cards.pins import ArtifactFiles, read_artifact
from ..cards.refs import is_remote_source
from ..cards.router import ExpertRef, RouterCard, router_card
from ..errors import IntegrityError, SigmaNotServedError, UnknownExpertError
from ..models import Trust
from ..models.normalize import feature_split
from ..registry.core import Registry, Verified
from ..registry.entries import user_trusted_modules
from ..registry.expert import Expert
from ..registry.weights import build_network, check_weight_sizes
from ..sources.base import Resolved
from ..urls import public_url
from .routed import RoutedClassifier
from .router import SmoothedRouter


def load_router(folder: str | os.PathLike, *, trust_code: Trust | None = None,
                device: str | torch.device = "cpu", compile: bool = False,
                precision: str = "fp32") -> SmoothedRouter:
    """Load a router folder: read once, check its card and the card's weights hash, build.

    ``trust_code``: True allows a ``module:factory`` architecture; None (default) allows only the
    modules under ``trusted_modules:`` in the user's registry file.

    Raises:
        CardError, IntegrityError, UntrustedCodeError (a ``module:factory`` architecture
        without ``trust_code``).
    """
    if trust_code is None:
        trust_code = user_trusted_modules()
    files = read_artifact(folder)
    return build_router(files, router_card(files), str(folder), trust_code=trust_code,
                        device=device, compile=compile, precision=precision)


def build_router(files: ArtifactFiles, card: RouterCard, source: str, *, trust_code: Trust,
                 device: str | torch.device = "cpu", compile: bool = False,
                 precision: str = "fp32") -> SmoothedRouter:
    """The smoothed router of checked ``files`` (its sizes checked against the weights before
    any network is built); ``source`` is where it was loaded from."""
    check_weight_sizes(card, files, trust_code)
    model = build_network(card, files, trust_code)
    router = SmoothedRouter(model.to(device).eval(), card, source=source, compile=compile,
                            precision=precision)
    router.pin = files.pin()
    return router


def load_routed(folder: str | os.PathLike, *, device: str | torch.device = "cpu",
                registry: Registry | None = None, alpha_split: float | None = None,
                compile: bool = False, precision: str = "fp32",
                trust_code: bool = False) -> RoutedClassifier:
    """The router in ``folder`` with its experts, each checked against the router's record of
    the sha256 of its config.json and weights, and of its sigma. ``alpha_split`` (the router's
    share of alpha): the one the card's certificate records, else 0.5.

    Raises:
        IntegrityError: an expert's bytes or sigma differ from what the router was trained on,
            or a hash is empty.
        UnknownExpertError: an expert cannot be found.
        UntrustedCodeError: a card names Python code without the opt-in (``trust_code``, or
            ``trusted_modules`` in the user's registry file).
    """
    registry = registry or Registry()
    router_dir = Path(folder)
    files = read_artifact(folder)
    card = router_card(files)
    targets = [_target(ref, router_dir, registry) for ref in card.experts]
    resolved = [_resolve(ref, target, router_dir, registry)
                for ref, target in zip(card.experts, targets)]
    fetched = [registry.fetch(r) for r in resolved]
    verified = [_check(ref, r, f, target, router_dir, registry)
                for ref, r, f, target in zip(card.experts, resolved, fetched, targets)]
    kw = dict(device=device, compile=compile, precision=precision)
    router = build_router(files, card, str(folder), trust_code=registry.trust_for(trust_code),
                          **kw)
    experts = [_build(ref, v, router_dir, registry, trust_code, **kw)
               for ref, v in zip(card.experts, verified)]
    if card.shares_forward_with is not None:
        share_trunk(router, experts[[e.name for e in card.experts].index(
            card.shares_forward_with)], str(folder))
    if alpha_split is None:
        alpha_split = float(card.certificate.get("alpha_split", 0.5))
    return RoutedClassifier(router, experts, alpha_split=alpha_split)


def share_trunk(router: SmoothedRouter, expert: Expert, where: str) -> None:
    """Make ``router`` run on ``expert``'s trunk (its card's ``shares_forward_with``): one
    module for both, so that one forward pass gives both votes (same sigma, same noise draw).

    Raises:
        IntegrityError: the router's feature layers are not the expert's, byte for byte, or the
            sigmas differ.
    """
    mine, theirs = feature_split(router.model), feature_split(expert.model)
    if mine is None or theirs is None or router.sigma != expert.sigma:
        raise IntegrityError(f"router {where} says it shares {expert.name}'s forward pass, but "
                             "their networks have no common trunk at one sigma")
    same_input = (str(router.model.resize) == str(expert.model.resize)
                  and torch.equal(router.model.normalize.mean, expert.model.normalize.mean)
                  and torch.equal(router.model.normalize.std, expert.model.normalize.std))
    if not same_input:
        raise IntegrityError(f"router {where} says it shares {expert.name}'s forward pass, but "
                             "their input normalization differs")
    a, b = router.model.net.features.state_dict(), expert.model.net.features.state_dict()
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k].to(a[k].device)) for k in a):
        raise IntegrityError(f"router {where}: its feature layers differ from {expert.name}'s, "
                             "which it says it shares; retrain it with router.frozen")
    if router.card.architecture != expert.card.architecture:
        raise IntegrityError(f"router {where} is {router.card.architecture} and "
                             f"{expert.name} {expert.card.architecture}: no shared trunk")
    probe = torch.rand((4, *router.card.input_size), generator=torch.Generator().manual_seed(0))
    probe = probe.to(router.device)
    with torch.no_grad():
        before = router.model(probe)
        router.model.net.features = expert.model.net.features
        router.trunk_head, expert.trunk_head = feature_split(router.model), theirs
        for model, (trunk, head), want in ((router.model, router.trunk_head, before),
                                           (expert.model, expert.trunk_head, None)):
            got = head(trunk(probe))
            if not torch.equal(got, model(probe) if want is None else want):
                raise IntegrityError(f"router {where}: its network on {expert.name}'s features "
                                     "is not what it computes alone; it cannot share a forward "
                                     "pass")
    router.trunk_owner = expert


def _target(ref: ExpertRef, router_dir: Path, registry: Registry) -> str:
    """What ``ref`` is loaded as: its folder (relative to the router) if there, else its
    registered name; a remote at its commit, or its registration of that very commit (which may
    hold the credentials the record leaves out)."""
    if is_remote_source(ref.source):
        entry = registry.entries().get(ref.name)
        if entry is not None and entry.is_remote and entry.revision == ref.revision \
                and public_url(entry.source) == ref.source:
            return ref.name
        return f"{ref.source}@{ref.revision}"
    folder = Path(ref.source)
    folder = (folder if folder.is_absolute() else router_dir / folder).resolve()
    return str(folder) if folder.is_dir() else ref.name


def _resolve(ref: ExpertRef, target: str, router_dir: Path, registry: Registry) -> Resolved:
    try:
        return registry.resolve(target)
    except UnknownExpertError:
        raise UnknownExpertError(f"router {router_dir}: expert {ref.name!r} is not registered and "
                                 f"its folder {ref.source} (relative to the router) is not there; "
                                 f"register it with `rsrouter experts register SOURCE --name "
                                 f"{ref.name}`") from None


def _check(ref: ExpertRef, resolved: Resolved, folder: Path, target: str, router_dir: Path,
           registry: Registry) -> Verified:
    """The expert's files checked against the router's pin, and its sigma served."""
    verified = registry.check(resolved, folder, pin=ref.pin(str(router_dir)))
    try:
        verified.card.at_sigma(float(ref.sigma))
    except SigmaNotServedError as e:
        served = ", ".join(f"{v:g}" for v in e.served)
        raise IntegrityError(f"router {router_dir} was trained with expert {ref.name!r} at sigma "
                             f"{ref.sigma}, but {target} has sigma {served}") from None
    return verified


def _build(ref: ExpertRef, verified: Verified, router_dir: Path, registry: Registry,
           trust_code: bool, **kw) -> Expert:
    """The expert at the router's sigma, named as the router's records name it."""
    expert = registry.build(verified, sigma=float(ref.sigma), trust_code=trust_code, **kw)
    expert.name = ref.name  # the name the router's records and results use
    if expert.sigma != float(ref.sigma):
        raise IntegrityError(f"router {router_dir} was trained with expert {ref.name!r} at sigma "
                             f"{ref.sigma}, but {expert.uri} has sigma {expert.sigma}")
    return expert
