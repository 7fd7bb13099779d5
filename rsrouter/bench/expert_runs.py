"""One expert certified outside a benchmark: loaded at a sigma, checked against the dataset it
is certified on, and its certified accuracy recorded in its card (``rsrouter certify`` and
``rsrouter experts certify-card``)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..cards.expert import read_card, write_card
from ..data import data_identity, load_dataset, subset_indices
from ..errors import RsrouterError, SigmaNotServedError
from ..protocol import CARD_RADII, Protocol
from ..registry.core import Registry
from ..registry.entries import Entry
from ..registry.expert import Expert, load_expert_folder
from ..results.curves import certified_accuracy
from ..results.runs import certify_dataset, run_settings
from ..results.tsv import read_tsv


def load_expert_at_sigma(registry: Registry, ref: str, sigma: float | None,
                         **load) -> tuple[Expert, float | None]:
    """The expert ``ref`` smoothed at ``sigma`` (None: its card's), and the sigma it was trained
    at when that is another one (None otherwise). Weights that serve several sigmas are loaded
    at ``sigma``; a fixed-sigma expert is smoothed at it. ``load``: options of
    :meth:`Registry.load` (device, compile, precision).

    Raises:
        SigmaNotServedError: weights serving several sigmas, ``sigma`` not among them.
    """
    try:
        expert = registry.load(ref, sigma=sigma, **load)
    except SigmaNotServedError as e:
        if sigma is None:
            raise
        try:  # a fixed-sigma expert, smoothed at another sigma
            expert = registry.load(ref, **load)
        except SigmaNotServedError:
            raise e from None  # shared weights: only the sigmas they serve
    trained = None
    if sigma is not None and sigma != expert.sigma:
        trained, expert.sigma = expert.sigma, sigma
    return expert, trained


def check_dataset(expert, dataset) -> None:
    """An expert (or a router's first expert) fits the dataset: its classes and input size.

    Raises:
        RsrouterError: naming both and the dataset the expert was trained on.
    """
    info = dataset.info
    card = expert.card
    if info.num_classes != card.num_classes or tuple(info.input_size) != tuple(card.input_size):
        raise RsrouterError(
            f"dataset {info.name} has {info.num_classes} classes of input size "
            f"{list(info.input_size)} but expert {expert.name} expects {card.num_classes} classes "
            f"of input size {list(card.input_size)} (trained on {card.dataset})")


def every_nth(k: int) -> str:
    """'every test image', 'every 2nd test image', 'every 20th test image'."""
    if k == 1:
        return "every test image"
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"every {k}{suffix} test image"


def certified_record(rows: pd.DataFrame, protocol: Protocol, *, num_inputs: int,
                     step: int) -> dict:
    """What a card records of its certification (``certified``): the accuracy of ``rows`` at
    the standard radii (4 decimals), the protocol and which test inputs were certified."""
    acc = certified_accuracy(rows, CARD_RADII)
    return {"accuracy": {str(r): round(float(a), 4) for r, a in acc.items()},
            "n0": protocol.n0, "n": protocol.n, "alpha": protocol.alpha,
            "num_inputs": num_inputs, "split": "test",
            "inputs": every_nth(step)}


def certify_card(folder: str | os.PathLike, out: str | os.PathLike, protocol: Protocol, *,
                 num: int, data_root: str | None = None, trust_code=None,
                 progress: bool = True) -> pd.Series:
    """Certify the expert in ``folder`` on ``num`` evenly spaced test inputs (rows in ``out``,
    resumable), record the results in its card (config.json and README.md) and return its
    certified accuracy at the standard radii.

    Raises:
        RsrouterError: a card that serves several sigmas (benchmark it instead).
    """
    if read_card(folder).shared:
        raise RsrouterError(f"{folder} serves several sigmas; certify-card writes one "
                            "sigma's results into a card. Benchmark it instead (rsrouter bench "
                            "run, one expert method per REF#sigma=S; docs/benchmarks.md)")
    expert = load_expert_folder(folder, trust_code=trust_code)
    dataset = load_dataset(expert.card.dataset, "test", data_root)
    step = max(1, len(dataset) // num)
    indices = subset_indices(len(dataset), step)[:num]
    settings = run_settings({"expert": expert}, data_identity(dataset), protocol,
                            mode=expert.mode)
    certify_dataset(expert, dataset, indices, out, protocol, settings=settings,
                    progress=progress, desc=f"certify {expert.name}")
    rows = read_tsv(out)
    card = read_card(folder)
    card.certified = certified_record(rows, protocol, num_inputs=len(indices), step=step)
    write_card(folder, card)
    return certified_accuracy(rows, CARD_RADII)


def registrations_of(registry: Registry, folder: str | os.PathLike) -> list[Entry]:
    """The registrations that point at the local ``folder`` (their pins go stale when its card
    changes)."""
    here = Path(folder).resolve()
    return [entry for entry in registry.entries().values()
            if not entry.is_remote and entry.folder().resolve() == here]
