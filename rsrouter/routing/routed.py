"""The routed classifier: a smoothed router and its experts, certified together (Dual RS).

Only the chosen expert is evaluated for the pinned certificate (the router's cost plus one
expert's); the set certificate counts every expert. The router and the experts share their noise
draws (each scaled by its own sigma), so the counts equal those of separate runs and routed
certificates can also be composed from stored counts (:mod:`rsrouter.bench.methods`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import partial

import torch

from ..cards.router import CERTIFICATES, LAZY_KINDS
from ..certify.bounds import ABSTAIN, Counts, check_count, split_alpha
from ..certify.fallback import (
    DEFAULT_SHARE,
    FallbackRoutedCertificate,
    fallback_routed_certificate,
)
from ..certify.lazy_set import LazySetRoutedCertificate, lazy_plan, lazy_set_routed_certificate
from ..certify.routed import RoutedCertificate, routed_certificate
from ..certify.set_certificate import SetRoutedCertificate, set_routed_certificate
from ..certify.smoothing import Smooth, shared_counts
from ..errors import ConfigError
from .router import ROUTER_PREDICT, ROUTER_STAGES


class RoutedClassifier:
    """Router + experts. ``alpha_split`` is the share of alpha given to the router.

    Raises:
        ConfigError: experts that do not fit the router or each other.
    """

    def __init__(self, router: Smooth, experts: Sequence[Smooth],
                 alpha_split: float | None = None) -> None:
        if alpha_split is None:  # the router card's certificate's, else half
            card = getattr(router, "card", None)
            alpha_split = float((getattr(card, "certificate", None) or {}).get("alpha_split",
                                                                              0.5))
        if not 0 < alpha_split < 1:
            raise ConfigError(f"alpha_split must be in (0, 1), got {alpha_split}")
        if router.num_classes != len(experts):
            raise ConfigError(f"the router chooses among {router.num_classes} experts but "
                              f"{len(experts)} were given")
        check_compatible(experts)
        self.router, self.experts, self.alpha_split = router, list(experts), alpha_split
        largest = max(e.sigma for e in experts)
        if router.sigma < largest:
            warnings.warn(f"router sigma {router.sigma} is below the largest expert sigma "
                          f"{largest} (Dual RS uses sigma_r >= max sigma_k)", stacklevel=2)

    def split(self, alpha: float) -> tuple[float, float]:
        """``(alpha_router, alpha_expert)``, summing to ``alpha``."""
        return split_alpha(alpha, self.alpha_split)

    @property
    def names(self) -> list[str]:
        """The experts' names (``expert{k}`` for an expert without one)."""
        return [getattr(e, "name", f"expert{k}") for k, e in enumerate(self.experts)]

    @property
    def mode(self) -> str:
        return self.router.mode

    def _inputs(self, xs, n0, n, batch_size, seed, indices):
        """Checked inputs, their dataset indices and the sampling keywords of a certify call."""
        check_count("n0", n0)
        check_count("n", n)
        indices = list(range(len(xs))) if indices is None else [int(i) for i in indices]
        xs, indices = self.router._check_inputs(xs, indices)
        return xs, indices, dict(batch_size=batch_size, seed=seed, indices=indices)

    @property
    def certificate(self) -> dict:
        """The certificate the router's card names (``{"kind": ..., "margin": ...}``; empty:
        pinned, as for a router without a card)."""
        return dict(getattr(getattr(self.router, "card", None), "certificate", None) or {})

    def certify(self, x: torch.Tensor, n0: int, n: int, alpha: float, *, batch_size: int = 1000,
                seed: int = 0, index: int = 0, certificate: str | None = None,
                margin: float | None = None):
        """Routed CERTIFY of one input ``[C, H, W]`` (see :meth:`certify_batch`)."""
        return self.certify_batch(x.unsqueeze(0), n0, n, alpha, batch_size=batch_size, seed=seed,
                                  indices=[index], certificate=certificate, margin=margin)[0]

    def certify_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                      batch_size: int = 1000, seed: int = 0,
                      indices: Sequence[int] | None = None, certificate: str | None = None,
                      margin: float | None = None) -> list:
        """Routed CERTIFY of each input with ``certificate`` (pinned, set, lazy-set or
        lazy-set+cascade; default: the one the router's card names, else pinned) and, for the
        lazy ones, ``margin`` (default: the card's, else 0). Returns
        :class:`RoutedCertificate` s (pinned), :class:`SetRoutedCertificate` s (set),
        :class:`LazySetRoutedCertificate` s or :class:`FallbackRoutedCertificate` s.

        Raises:
            ValueError: an unknown certificate.
        """
        kind = certificate or self.certificate.get("kind", "pinned")
        if margin is not None and kind not in LAZY_KINDS:
            raise ValueError(f"margin applies to the lazy-set certificates only, not {kind}")
        kw = dict(batch_size=batch_size, seed=seed, indices=indices)
        if kind == "set":
            return self.certify_set_batch(xs, n0, n, alpha, **kw)
        if kind in LAZY_KINDS:
            margin = float(self.certificate.get("margin", 0.0)) if margin is None else margin
        if kind == "lazy-set":
            return self.certify_lazy_batch(xs, n0, n, alpha, margin=margin, **kw)
        if kind == "lazy-set+cascade":
            share = float(self.certificate.get("fallback_share", DEFAULT_SHARE))
            return self.certify_fallback_batch(xs, n0, n, alpha, margin=margin, share=share,
                                               **kw)
        if kind != "pinned":
            raise ValueError(f"certificate: one of {', '.join(CERTIFICATES)}, got {kind!r}")
        return self.certify_pinned_batch(xs, n0, n, alpha, **kw)

    def certify_pinned_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                             batch_size: int = 1000, seed: int = 0,
                             indices: Sequence[int] | None = None) -> list[RoutedCertificate]:
        """Routed CERTIFY of each input; only each input's chosen expert is evaluated, and the
        router and that expert use the same noise draws (each scaled by its own sigma).

        1. the router's ``n0`` selection samples choose the expert ``k``;
        2. expert ``k`` selects its class on the same ``n0`` draws (drawn again: 1% of the work
           at n0 = 100, n = 10,000; with the router, for the expert whose forward pass it
           shares);
        3. ``n`` fresh draws are made once and counted by the router and by expert ``k``.
        The counts equal those of separate runs of the router and of each expert (same
        streams), so routed certificates can also be composed from stored counts.
        """
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        select, estimate = ROUTER_STAGES
        owner = next((k for k, e in enumerate(self.experts) if e is self.router.trunk_owner),
                     None)  # the expert whose forward pass the router shares: select with it
        first = shared_counts([(self.router, None)] + ([] if owner is None else [
            (self.experts[owner], None)]), xs, n0, stage=select, **kw)
        choice = first[0].argmax(dim=1)
        chosen = [k for k in range(len(self.experts)) if bool((choice == k).any())]
        used = [(self.experts[k], choice == k) for k in chosen]
        rest = [(e, m) for (e, m), k in zip(used, chosen) if k != owner]
        rest_select = iter(shared_counts(rest, xs, n0, stage=select, **kw) if rest else [])
        expert_select = [first[1] if k == owner else next(rest_select) for k in chosen]
        counts = shared_counts([(self.router, None), *used], xs, n, stage=estimate, **kw)
        router_counts, expert_counts = counts[0], counts[1:]

        def counts_of(i: int, index: int, k: int) -> Counts:
            """Expert ``k``'s counts on input ``i`` (counted only where the router chose it)."""
            slot = chosen.index(k)
            c_a = int(expert_select[slot][i].argmax())
            return Counts(c_a, int(expert_counts[slot][i, c_a]), n, n0, self.experts[k].sigma,
                          seed, index, self.experts[k].mode)

        levels, names, out = self.split(alpha), self.names, []
        for i, (k, index) in enumerate(zip(choice.tolist(), indices)):
            router = Counts(k, int(router_counts[i, k]), n, n0, self.router.sigma, seed, index,
                            self.router.mode)
            out.append(routed_certificate(router, partial(counts_of, i, index), names, *levels,
                                          alpha=alpha))
        return out

    def certify_set_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                          batch_size: int = 1000, seed: int = 0,
                          indices: Sequence[int] | None = None) -> list[SetRoutedCertificate]:
        """The set certificate (:mod:`rsrouter.certify.set_certificate`) of each input: the router's
        choice need not stay put where the experts it may switch to agree. Every expert is
        counted on every input (on the router's noise draws); the router gets
        ``alpha * alpha_split`` (half to the lower bound on its choice, half over upper bounds
        on the others), the experts the rest (half to the chosen one)."""
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        select, estimate = ROUTER_STAGES
        everyone = [(e, None) for e in self.experts]
        votes = shared_counts([(self.router, None), *everyone], xs, n0, stage=select, **kw)
        choice, expert_select = votes[0].argmax(dim=1), votes[1:]
        counts = shared_counts([(self.router, None), *everyone], xs, n, stage=estimate, **kw)
        levels, names, out = self.split(alpha), self.names, []
        for i, index in enumerate(indices):
            a = int(choice[i])
            experts = []
            for k, e in enumerate(self.experts):
                c_a = int(expert_select[k][i].argmax())
                experts.append(Counts(c_a, int(counts[1 + k][i, c_a]), n, n0, e.sigma, seed,
                                      index, e.mode))
            out.append(set_routed_certificate(
                Counts(a, int(counts[0][i, a]), n, n0, self.router.sigma, seed, index,
                       self.router.mode), counts[0][i].tolist(), experts, names, *levels))
        return out

    def _planned_counts(self, xs: torch.Tensor, n0: int, n: int, margin: float, kw: dict,
                        always: int | None = None):
        """The lazy plan's passes: the router and every expert vote on the ``n0`` selection
        draws; the plan (from those votes alone) says which experts run on the ``n``
        estimation draws, and expert ``always`` runs on every input. Returns ``(router votes,
        each expert's selection class, its votes for that class, the plans, the estimation
        counts: router first, then each expert's)``."""
        select, estimate = ROUTER_STAGES
        everyone = [(self.router, None), *((e, None) for e in self.experts)]
        votes = shared_counts(everyone, xs, n0, stage=select, **kw)
        r_sel, e_sel = votes[0], votes[1:]
        c_a = [sel.argmax(dim=1) for sel in e_sel]
        select_na = [[int(sel[i, int(c[i])]) for sel, c in zip(e_sel, c_a)]
                     for i in range(len(xs))]
        c_a = [[int(c[i]) for c in c_a] for i in range(len(xs))]
        sigmas = [e.sigma for e in self.experts]
        plans = [lazy_plan(r_sel[i].tolist(), c_a[i], select_na[i], n0, self.router.sigma,
                           sigmas, margin) for i in range(len(xs))]
        masks = [torch.tensor([p[k] or k == always for p in plans])
                 for k in range(len(self.experts))]
        counts = shared_counts([(self.router, None), *zip(self.experts, masks)], xs, n,
                               stage=estimate, **kw)
        return r_sel, c_a, select_na, plans, counts

    def certify_lazy_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                           margin: float = 0.0, batch_size: int = 1000, seed: int = 0,
                           indices: Sequence[int] | None = None
                           ) -> list[LazySetRoutedCertificate]:
        """The lazy set certificate (:mod:`rsrouter.certify.lazy_set`) of each input: the router
        and every expert vote on the ``n0`` selection draws; the plan (from those votes alone,
        with ``margin``) says which experts run on the ``n`` estimation draws: the router's
        choice and the others that can raise the radius. A router that shares an expert's
        forward pass (its card's ``shares_forward_with``) needs no trunk pass where that expert
        runs."""
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        r_sel, c_a, select_na, plans, counts = self._planned_counts(xs, n0, n, margin, kw)
        levels, names, out = self.split(alpha), self.names, []
        for i, index in enumerate(indices):
            a = int(r_sel[i].argmax())
            experts = [Counts(c_a[i][k], int(counts[1 + k][i, c_a[i][k]]), n, n0, e.sigma, seed,
                              index, e.mode) if plans[i][k] else None
                       for k, e in enumerate(self.experts)]
            out.append(lazy_set_routed_certificate(
                Counts(a, int(counts[0][i, a]), n, n0, self.router.sigma, seed, index,
                       self.router.mode), counts[0][i].tolist(), r_sel[i].tolist(), c_a[i],
                select_na[i], experts, [e.sigma for e in self.experts], names, *levels,
                margin=margin))
        return out

    def certify_fallback_batch(self, xs: torch.Tensor, n0: int, n: int, alpha: float, *,
                               margin: float = 0.0, share: float = DEFAULT_SHARE,
                               batch_size: int = 1000, seed: int = 0,
                               indices: Sequence[int] | None = None
                               ) -> list[FallbackRoutedCertificate]:
        """Router, then cascade (:mod:`rsrouter.certify.fallback`): the lazy set certificate's
        passes, and where it abstains the cascade over every expert, largest sigma first; an
        expert the plan did not run is run on that input's ``n`` estimation draws only when
        the cascade reaches it (the same draws a full pass would give it). The expert whose
        forward pass the router shares is counted on the router's pass on every input (no
        forward more), so the cascade finds its counts there."""
        xs, indices, kw = self._inputs(xs, n0, n, batch_size, seed, indices)
        owner = next((k for k, e in enumerate(self.experts) if e is self.router.trunk_owner),
                     None)
        r_sel, c_a, select_na, plans, counts = self._planned_counts(xs, n0, n, margin, kw,
                                                                    always=owner)
        names, out = self.names, []

        def counts_of(i: int, k: int):
            if plans[i][k] or k == owner:
                return counts[1 + k][i].numpy()
            one = dict(kw, indices=[indices[i]])
            return shared_counts([(self.experts[k], None)], xs[i:i + 1], n,
                                 stage=ROUTER_STAGES[1], **one)[0][0].numpy()

        for i, index in enumerate(indices):
            a = int(r_sel[i].argmax())
            out.append(fallback_routed_certificate(
                Counts(a, int(counts[0][i, a]), n, n0, self.router.sigma, seed, index,
                       self.router.mode), counts[0][i].tolist(), r_sel[i].tolist(), c_a[i],
                select_na[i], partial(counts_of, i), [e.sigma for e in self.experts], names,
                alpha, self.alpha_split, margin, share, self.experts[0].num_classes))
        return out

    def predict(self, x: torch.Tensor, n: int, alpha: float, *, batch_size: int = 1000,
                seed: int = 0, index: int = 0) -> int:
        """Router PREDICT at alpha_r, then the chosen expert's PREDICT at alpha_e."""
        alpha_r, alpha_e = self.split(alpha)
        k = self.router.predict_batch(x.unsqueeze(0), n, alpha_r, batch_size=batch_size,
                                      seed=seed, indices=[index], stage=ROUTER_PREDICT)[0]
        if k == ABSTAIN:
            return ABSTAIN
        return self.experts[k].predict(x, n, alpha_e, batch_size=batch_size, seed=seed,
                                       index=index)


def check_compatible(experts: Sequence[Smooth]) -> None:
    """Experts must share class count, input shape and (when carded) dataset."""
    if len(experts) < 2:
        raise ConfigError(f"routing needs at least 2 experts, got {len(experts)}")
    first = experts[0]
    for e in experts[1:]:
        for what, a, b in (("class count", first.num_classes, e.num_classes),
                           ("input size", first.input_shape, e.input_shape),
                           ("dataset", getattr(getattr(first, "card", None), "dataset", None),
                            getattr(getattr(e, "card", None), "dataset", None))):
            if a != b:
                raise ConfigError(f"experts: {_label(first)} and {_label(e)} differ in {what} "
                                  f"({a} vs {b}); a router chooses among experts of one task")


def _label(expert: Smooth) -> str:
    return getattr(expert, "name", None) or f"sigma={expert.sigma}"
